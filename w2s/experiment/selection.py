"""Model selection without ground truth: when a stage evaluates, which checkpoint becomes its result.

A stage with `train.eval_every` evaluates at evenly spaced optimizer steps (and always at the last)
on a validation split held out of half B and on test, and records the curve. Each selection rule
picks one of those points:

- `final`: the last step (what a fixed number of epochs gives; the paper's students);
- `weak_validation`: the best accuracy on the validation split against the labels the stage trains
  on (ground truth for ground-truth stages, the supervisor's labels for students): legitimate in
  the weak-to-strong setting, where nobody has the strong ground truth;
- `oracle`: the best test accuracy (what picking checkpoints on test, as some code does, gives): an
  upper bound only, labelled as such in every table.

Ties go to the earlier step. Under a rule the whole chain selects by it: a student trains on its
supervisor's labels from the supervisor's checkpoint under the same rule (w2s/experiment/plan.py).
When a stage evaluates is the loop's (`w2s.training.loop.evaluation_steps`). No torch here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from w2s.spec import SELECTION_RULES

RULES = SELECTION_RULES  # final, weak_validation, oracle: the names a spec's `train.select` takes
# the score each rule maximises, as a curve point names it (final: none, the last point)
RULE_SCORES = {"weak_validation": "validation_accuracy", "oracle": "test_accuracy"}


def improves(rule: str, point: dict, best: dict | None) -> bool:
    """Whether `point` replaces `best` as the rule's choice (strictly better: ties keep the earlier)."""
    if rule == "final" or best is None:
        return True
    return point[RULE_SCORES[rule]] > best[RULE_SCORES[rule]]


def choose(curve: Sequence[dict], rule: str) -> int:
    """The index of the point of `curve` that `rule` selects."""
    best = None
    for i, point in enumerate(curve):
        if best is None or improves(rule, point, curve[best]):
            best = i
    if best is None:
        raise ValueError("an empty curve has no checkpoint to select")
    return best


def validation_ids(rows: Sequence[dict], frac: float, seed: int) -> set[str]:
    """The ids of half B's rows held out for validation: a seeded `frac` of them (at least one when
    frac > 0), the same for every stage of the (dataset, seed), so students and supervisors agree."""
    if frac <= 0:
        return set()
    ids = sorted(r["id"] for r in rows)
    random.Random(f"{seed}:validation").shuffle(ids)
    return set(ids[: max(1, round(frac * len(ids)))])
