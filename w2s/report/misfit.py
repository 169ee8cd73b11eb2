"""Misfit as an instrument: the student's misfit on its supervisor needs no ground truth, so it can
predict a student's gain before any gold label is spent (Charikar, Pabbaraju & Shiragur, NeurIPS
2024: for squared loss and a realisable, convex strong class, gain >= misfit; Mulgund & Pabbaraju
2025 extend it to cross-entropy).

- `bound_columns`: each transfer's check of the bound in the loss it is stated in (squared distance
  of the probability vectors, on test): gain in Brier score - misfit, with its interval, and whether
  the bound holds, is violated, or cannot be told from noise (diagnostics.csv);
- `supervisor_choice` (supervisor_choice.csv): for a student trained on the labels of several
  supervisors, per seed and loss, the rank correlation of misfit (on half B, the rows it trained on)
  with its realised gain over its supervisor, and a rule that picks the supervisor of largest
  misfit, with how often it picks the largest gain and what it loses in student accuracy.

No torch here, and no matplotlib.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from w2s.scoring.metrics import CONFIDENCE

# the student trained on several supervisors' labels, once per setting and seed
STUDENT_GROUPS = ["experiment", "dataset", "model", "loss", "select", "gold_frac", "gold_n", "gold_select", "seed"]
CHOICE_COLUMNS = [
    *STUDENT_GROUPS,
    "n_supervisors",
    "spearman",
    "picked",
    "best_gain",
    "picks_best_gain",
    "best_student",
    "picked_accuracy",
    "best_accuracy",
    "regret",
]


def bound_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """bound_slack's interval (normal, from bound_slack_se: over the test rows, and over the seeds of
    a summary row) and its verdict: `holds` (the interval above 0), `violated` (below 0), or
    `within noise`; empty where a row has no slack."""
    z = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    slack, se = (pd.to_numeric(frame.get(c), errors="coerce") for c in ("bound_slack", "bound_slack_se"))
    low, high = slack - z * se, slack + z * se
    verdict = np.select([low > 0, high < 0, slack.notna() & se.notna()], ["holds", "violated", "within noise"], "")
    return pd.DataFrame({"bound_slack_low": low, "bound_slack_high": high, "bound": verdict}, index=frame.index)


def supervisor_choice(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per student setting and seed with two or more supervisors (direct transfers): Spearman's rank
    correlation of misfit with the student's gain over its supervisor (student - weak), the
    supervisor of largest misfit (the rule's pick), whether it is the one of largest gain, and the
    student accuracy it gives against the best supervisor's (regret)."""
    direct = per_seed[per_seed["kind"] == "transfer"].dropna(subset=["misfit", "student_minus_weak", "test_accuracy"])
    by = [c for c in STUDENT_GROUPS if c in direct]
    rows = []
    for group, frame in direct.groupby(by, sort=False, dropna=False):
        if frame["weak_model"].nunique() < 2 or len(frame) != frame["weak_model"].nunique():
            continue
        frame = frame.reset_index(drop=True)
        picked = frame.loc[frame["misfit"].idxmax()]
        best_gain = frame.loc[frame["student_minus_weak"].idxmax()]
        best_student = frame.loc[frame["test_accuracy"].idxmax()]
        rho = stats.spearmanr(frame["misfit"], frame["student_minus_weak"]).statistic if len(frame) > 2 else None
        if len(frame) == 2:  # two supervisors: the rank correlation is +1 or -1 (or 0 on a tie)
            rho = float(np.sign(np.diff(frame["misfit"]))[0] * np.sign(np.diff(frame["student_minus_weak"]))[0])
        rows.append(
            {
                **dict(zip(by, group)),
                "n_supervisors": len(frame),
                "spearman": None if rho is None or pd.isna(rho) else float(rho),
                "picked": picked["weak_model"],
                "best_gain": best_gain["weak_model"],
                "picks_best_gain": bool(picked["weak_model"] == best_gain["weak_model"]),
                "best_student": best_student["weak_model"],
                "picked_accuracy": float(picked["test_accuracy"]),
                "best_accuracy": float(best_student["test_accuracy"]),
                "regret": float(best_student["test_accuracy"] - picked["test_accuracy"]),
            }
        )
    return pd.DataFrame(rows, columns=CHOICE_COLUMNS)


def choice_markdown(frame: pd.DataFrame) -> str:
    """What the rule did over every student setting and seed, in a few lines under the diagnostics."""
    if frame.empty:
        return "\nchoosing a supervisor by misfit: no student was trained on two or more supervisors' labels\n"
    hits, n = int(frame["picks_best_gain"].sum()), len(frame)
    chance = float((1 / frame["n_supervisors"]).mean())
    rho = frame["spearman"].dropna()
    fewest, most = frame["n_supervisors"].min(), frame["n_supervisors"].max()
    supervisors = f"{most}" if fewest == most else f"{fewest}-{most}"
    students = "1 student (a setting and seed)" if n == 1 else f"{n} students (settings x seeds)"
    return (
        f"\nchoosing a supervisor by misfit alone (the largest; supervisor_choice.csv), over {students} "
        f"with {supervisors} supervisors each: it picks the largest gain "
        f"over the supervisor in {hits} of {n} (chance {chance * n:.2f} of {n}), the best student in "
        f"{int((frame['picked'] == frame['best_student']).sum())} of {n}; mean regret in student accuracy "
        f"{frame['regret'].mean():.3f}; mean Spearman ρ of misfit with gain {rho.mean():.3f} over {len(rho)}\n"
    )
