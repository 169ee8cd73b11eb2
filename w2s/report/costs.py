"""Label costs (`w2s report --cost weak=1,gold=C`): what each student's training labels cost, and the
frontier, the best student at each budget (Mallen & Belrose 2024, "Balancing label quantity and
quality for scalable elicitation").

A student's cost counts the labels it trains on: `weak` per weak label (rows of half B trained on
the supervisor's label) and `gold` per ground-truth label (`train.gold_frac` / `gold_n`; a gold-only
stage, `train.gold_only`, has only those). The supervisor's own training labels (half A) are the same
for every student of a pair, so they are left out. Three families: weak only (no gold), mixed, gold
only. The frontier, per pair, selection rule and cost setting: the points no cheaper (or equally
cheap) point matches in the metric. A pair whose students all train on weak labels alone has no
budget to balance (one point, its own frontier), so it is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from w2s.errors import SpecError

# a student's pair and setting: the points one frontier is drawn over
FRONTIER_GROUPS = ["experiment", "dataset", "weak_model", "model", "select", "weak_cost", "gold_cost"]
COST_COLUMNS = [
    "experiment",
    "dataset",
    "weak_model",
    "model",
    "select",
    "weak_cost",
    "gold_cost",
    "family",
    "kind",
    "loss",
    "gold_frac",
    "gold_n",
    "gold_select",
    "n_seeds",
    "n_weak",
    "n_gold",
    "cost",
    "score",
    "score_low",
    "score_high",
    "pgr",
    "on_frontier",
]


def parse_costs(texts: list[str]) -> list[tuple[float, float]]:
    """`--cost weak=1,gold=10` (repeatable) -> [(1.0, 10.0)]: the price of one weak and one gold label."""
    out = []
    for text in texts:
        parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
        try:
            weak, gold = float(parts["weak"]), float(parts["gold"])
        except (KeyError, ValueError):
            raise SpecError(f"report: --cost {text!r}: give weak=PRICE,gold=PRICE, e.g. weak=1,gold=10") from None
        if len(parts) != 2 or text.count("=") != 2 or min(weak, gold) < 0 or not np.isfinite([weak, gold]).all():
            raise SpecError(
                f"report: --cost {text!r}: give weak=PRICE,gold=PRICE with prices >= 0, e.g. weak=1,gold=10"
            )
        out.append((weak, gold))
    return out


def frontier(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Which points are on the frontier: better in `score` than every point that costs as much or
    less (of equal points, the first in cost order)."""
    on = np.zeros(len(cost), dtype=bool)
    best = -np.inf
    for i in np.lexsort((-score, cost)):  # by cost, the best first among equal costs
        if score[i] > best:
            on[i], best = True, score[i]
    return on


def cost_rows(summary: pd.DataFrame, costs: list[tuple[float, float]], metric: str = "accuracy") -> pd.DataFrame:
    """cost.csv: every direct student and gold-only row of the summary, at each (weak, gold) price,
    of the pairs with a student that has gold labels: its labels, their cost, its score
    (test_<metric> with its interval) and PGR, and whether it is on its pair's frontier."""
    rows = summary[summary["kind"].isin(["transfer", "gold_only"])].copy()
    has_gold = (rows["kind"] == "gold_only") | (pd.to_numeric(rows.get("n_gold"), errors="coerce") > 0)
    pair = [c for c in FRONTIER_GROUPS if c in rows and c not in ("weak_cost", "gold_cost")]
    if len(rows):
        rows = rows.groupby(pair, sort=False, dropna=False).filter(lambda students: has_gold[students.index].any())
    if rows.empty or not costs:
        return pd.DataFrame(columns=COST_COLUMNS)
    only = rows["kind"] == "gold_only"
    n_gold = pd.to_numeric(rows.get("n_gold"), errors="coerce").fillna(0)
    n_train = pd.to_numeric(rows["n_train"], errors="coerce")
    rows["n_gold"] = n_gold.where(~only, n_train)
    rows["n_weak"] = (n_train - n_gold).where(~only, 0)
    rows["family"] = np.where(only, "gold only", np.where(rows["n_gold"] > 0, "mixed", "weak only"))
    rows["score"] = rows[f"test_{metric}"]
    rows["score_low"], rows["score_high"] = rows.get(f"test_{metric}_low"), rows.get(f"test_{metric}_high")
    out = []
    for weak, gold in costs:
        priced = rows.assign(weak_cost=weak, gold_cost=gold)
        priced["cost"] = weak * priced["n_weak"] + gold * priced["n_gold"]
        priced["on_frontier"] = False
        for _, group in priced.groupby([c for c in FRONTIER_GROUPS if c in priced], sort=False, dropna=False):
            scored = group.dropna(subset=["cost", "score"])
            on = frontier(scored["cost"].to_numpy(float), scored["score"].to_numpy(float))
            priced.loc[scored.index[on], "on_frontier"] = True
        out.append(priced)
    frame = pd.concat(out, ignore_index=True)
    return frame.reindex(columns=COST_COLUMNS).sort_values(["weak_cost", "gold_cost", "cost"], kind="stable")


def cost_markdown(frame: pd.DataFrame, metric: str, provenance_line: str | None = None) -> str:
    """The frontier of each pair and price, cheapest first, then the points off it."""
    header = ["pair", "weak : gold", "family", "loss", "weak labels", "gold labels", "cost", metric, "PGR", "frontier"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    several_rules = frame["gold_select"].nunique() > 1  # random and least_confident gold side by side
    for _, r in frame.sort_values(["weak_cost", "gold_cost", "on_frontier", "cost"], ascending=[1, 1, 0, 1]).iterrows():
        low, high = r["score_low"], r["score_high"]
        score = f"{r['score']:.3f}" + ("" if pd.isna(low) else f" [{low:.3f}, {high:.3f}]")
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{r['weak_model']}->{r['model']}",
                    f"{r['weak_cost']:g} : {r['gold_cost']:g}",
                    r["family"] + (f" ({r['gold_select']})" if several_rules and r["n_gold"] else ""),
                    "xent (gold)" if r["family"] == "gold only" else str(r["loss"]),
                    f"{r['n_weak']:g}",
                    f"{r['n_gold']:g}",
                    f"{r['cost']:g}",
                    score,
                    "–" if pd.isna(r["pgr"]) else f"{r['pgr']:.3f}",
                    "yes" if r["on_frontier"] else "",
                ]
            )
            + " |"
        )
    text = "\n".join(lines) + "\n"
    for line in (provenance_line or "").splitlines():
        text += f"\n{line}\n"
    return text
