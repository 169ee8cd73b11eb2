"""Which of a student's weak labels are replaced by ground truth: how many (`Gold.rows`: a share,
`train.gold_frac`, or a count, `train.gold_n`) and which rows (`train.gold_select`): at random, or the
supervisor's least confident first.

Both choices are one order of half B's rows, and an amount takes its first rows, so a smaller
amount's rows are among a larger one's: a sweep over amounts adds ground truth, it never redraws it.
No torch here: the planner, the pre-run check and the stages read it.
"""

from __future__ import annotations

import random

import numpy as np

from w2s.spec.training import Gold


def gold_order(ids: list[str], confidence: np.ndarray, select: str, seed: int) -> list[int]:
    """The row indices in the order they get ground truth: a seeded permutation of the ids (sorted
    first, so it does not depend on the rows' order); for `least_confident`, ordered by the
    supervisor's confidence (its top probability), least confident first, the seeded permutation
    breaking ties (a supervisor of hard labels: all tied, so at random)."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    random.Random(f"{seed}:gold").shuffle(order)
    if select == "least_confident":
        order.sort(key=lambda i: float(confidence[i]))  # stable: tied rows keep the seeded order
    return order


def choose_gold(ids: list[str], confidence: np.ndarray, gold: Gold, seed: int) -> tuple[list[int], dict]:
    """The indices (ascending) of the rows that get ground truth, and what to record of the choice:
    the seed, and for least_confident the confidence at the cut and how many rows tie with it (of
    which the seeded order took `tied_chosen`)."""
    n = gold.rows(len(ids))
    order = gold_order(ids, confidence, gold.select, seed)
    chosen = sorted(order[:n])
    record = {"seed": seed, "gold_select": gold.select, "n_gold": n, "n_rows": len(ids)}
    if gold.select == "least_confident" and n:
        cut = float(confidence[order[n - 1]])
        tied = [i for i in range(len(ids)) if float(confidence[i]) == cut]
        record.update(confidence_cut=cut, tied_at_cut=len(tied), tied_chosen=len(set(tied) & set(chosen)))
    return chosen, record
