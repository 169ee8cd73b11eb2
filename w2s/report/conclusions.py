"""Conclusions across pairs and datasets: what a sweep says as a whole, beside the per-pair summary.

- `pair_conclusions` (conclusions.csv/.md): per experiment, dataset and loss, the reference
  notebook's summary, the median PGR over the valid (weak, strong) pairs, and beside it w2s's pooled
  PGR (PGR of the mean weak, ceiling and student scores over those pairs) with a 95% interval from
  the same resamples as the summary's intervals;
- `paired_comparisons` (comparisons.csv/.md): two levels of a column (by default two losses) on the
  same pairs, the mean PGR difference with a bootstrap interval over the pairs and a Wilcoxon
  signed-rank test, per dataset and over all datasets of an experiment.

Both read the summary table (`tables.summary_rows`), so a report's numbers agree with each other.
No torch here, and no matplotlib.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from w2s.report.misfit import bound_columns
from w2s.report.tables import stage_ids, with_group_defaults
from w2s.scoring.metrics import CONFIDENCE, aggregate_seeds, percentile_interval
from w2s.scoring.pgr import pgr, pgr_interval, unbounded_note, undefined_note

PAIR_GROUPS = ["experiment", "dataset", "loss"]
# group columns the summary may carry (a sweep over label selection or gold fractions): grouped by when present
OPTIONAL_GROUPS = ["select", "gold_frac", "gold_n", "gold_select"]
CONCLUSION_COLUMNS = [
    "metric",
    "n_pairs",
    "n_valid_pairs",
    "median_pgr",
    "pooled_pgr",
    "pooled_pgr_low",
    "pooled_pgr_high",
    "note",
]
COMPARISON_COLUMNS = [
    "experiment",
    "dataset",
    "compared",
    "a",
    "b",
    "metric",
    "units",
    "n_units",
    "mean_difference",
    "mean_difference_low",
    "mean_difference_high",
    "wilcoxon_statistic",
    "wilcoxon_p",
    "note",
]
ALL = "all"  # the dataset of a comparison pooled over an experiment's datasets
UNIT_RESAMPLES = 10_000  # resamples of the units for the mean difference's interval
UNIT_SEED = 0  # a fixed random state: the same summary gives the same interval
ZERO = 1e-12  # a PGR difference smaller than this is float noise on equal PGRs: no difference


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def _key(values) -> tuple:
    """Group values that compare equal whether a missing one is None or NaN (NaN != NaN)."""
    return tuple(None if _missing(v) else v for v in values)


def summary_groups(summary: pd.DataFrame) -> list[str]:
    """The columns a summary was grouped by: those before n_seeds (`tables.summary_columns`)."""
    columns = list(summary.columns)
    return columns[: columns.index("n_seeds")]


def default_pair_groups(summary: pd.DataFrame) -> list[str]:
    """experiment, dataset, loss, and select / gold_frac where the summary has them."""
    return PAIR_GROUPS + [c for c in OPTIONAL_GROUPS if c in summary.columns]


# ---------------------------------------------------------------------------------------------
# conclusions over the pairs of a dataset


def valid_pairs(frame: pd.DataFrame, metric: str) -> pd.Series:
    """The rows the reference notebook summarises: a weak and a strong model that differ, all three
    scores present, and the weak model below the strong model's ceiling (else there is no gap to
    recover)."""
    weak, ceiling, student = (frame[f"{who}_{metric}"].astype(float) for who in ("weak", "ceiling", "test"))
    return (frame["weak_model"] != frame["model"]) & student.notna() & (weak < ceiling)


def median_pgr(frame: pd.DataFrame, metric: str) -> float | None:
    """The reference notebook's summary of valid pairs: the median of each pair's PGR, computed from its
    seed-mean scores as the notebook does (without w2s's minimum gap: the median shrugs off the huge
    ratio of a tiny gap)."""
    if frame.empty:
        return None
    weak, ceiling, student = (frame[f"{who}_{metric}"].astype(float) for who in ("weak", "ceiling", "test"))
    return float(((student - weak) / (ceiling - weak)).median())


def pair_seed_keys(per_seed: pd.DataFrame, groups: list[str]) -> dict[tuple, list[tuple[str, str]]]:
    """Each summary row's stages (its seeds, as `stage_ids`), by its group values."""
    return {
        _key(values if isinstance(values, tuple) else (values,)): stage_ids(frame)
        for values, frame in with_group_defaults(per_seed, groups).groupby(groups, sort=False, dropna=False)
    }


def pair_draws(keys: list[tuple[str, str]], draws: dict[tuple[str, str], np.ndarray]) -> np.ndarray | None:
    """A pair's resampled seed-mean (weak, ceiling, student), as the summary's interval resamples
    them (`aggregate_seeds`); None when a seed has no draws, or one seed has only its point values."""
    seed_draws = [draws[k] for k in keys if k in draws]
    if not keys or len(seed_draws) != len(keys) or (len(keys) == 1 and seed_draws[0].shape[1] < 2):
        return None
    return aggregate_seeds(seed_draws)


def pooled_pgr(frame: pd.DataFrame, metric: str, resamples: list[np.ndarray | None]) -> dict:
    """PGR of the mean weak, ceiling and student scores over the valid pairs `frame`, with Fieller's
    interval over the mean of the pairs' resamples. The resamples share their random state
    (w2s.scoring.metrics.SEED), so draw j picks the same seeds and test examples in every pair of a dataset:
    pooling them resamples the sweep jointly, as its pairs share test sets and ground-truth stages."""
    weak, ceiling, student = (
        float(frame[f"{who}_{metric}"].astype(float).mean()) for who in ("weak", "ceiling", "test")
    )
    value = pgr(student, weak, ceiling)
    row = {"pooled_pgr": value, "pooled_pgr_low": None, "pooled_pgr_high": None}
    if value is None:
        return row | {"note": undefined_note(weak, ceiling, student)}
    lacking = sum(r is None for r in resamples)
    if lacking:
        return row | {"note": f"no resamples for {lacking} of {len(resamples)} valid pairs: no interval"}
    low, high = pgr_interval(np.mean(resamples, axis=0), weak, ceiling, student)
    note = "the resamples do not vary: no interval" if low is None else unbounded_note(low, None)
    return row | {"pooled_pgr_low": low, "pooled_pgr_high": high, "note": note}


def pair_conclusions(
    summary: pd.DataFrame,
    per_seed: pd.DataFrame | None = None,
    draws: dict[str, np.ndarray] | None = None,
    metric: str = "accuracy",
    by: list[str] | None = None,
) -> pd.DataFrame:
    """Per group `by` (default: experiment, dataset, loss, and select / gold_frac when present), over the
    direct transfers of the summary: the median PGR over valid pairs (`valid_pairs`), the reference
    notebook's summary, beside w2s's pooled PGR and its interval. The interval resamples each valid
    pair's seeds as `per_seed` and `draws` (`tables.seed_rows`) give them; without them (None) it
    is left empty and the note says why."""
    by = default_pair_groups(summary) if by is None else list(by)
    columns = [*by, *CONCLUSION_COLUMNS]
    direct = summary[summary["kind"] == "transfer"]
    groups = summary_groups(summary)
    keys = pair_seed_keys(per_seed, groups) if per_seed is not None and draws is not None else {}
    rows = []
    for values, frame in direct.groupby(by, sort=False, dropna=False):
        valid = frame[valid_pairs(frame, metric)]
        row = dict(zip(by, values), metric=metric, n_pairs=len(frame), n_valid_pairs=len(valid))
        row["median_pgr"] = median_pgr(valid, metric)
        if valid.empty:
            rows.append(row | {"note": "no valid pair: none has its weak model below its ceiling"})
            continue
        resamples = [pair_draws(keys.get(_key(r), []), draws or {}) for r in valid[groups].itertuples(index=False)]
        rows.append(row | pooled_pgr(valid, metric, resamples))
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------
# paired comparisons of two levels of a column


def mean_difference_interval(differences: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    """95% percentile interval of the mean difference, resampling the units (a fixed random state)."""
    if differences.size < 2:
        return None, None
    rng = np.random.default_rng(UNIT_SEED)
    picks = rng.integers(differences.size, size=(UNIT_RESAMPLES, differences.size))
    return percentile_interval(differences[picks].mean(axis=1))


def signed_rank_test(differences: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """Wilcoxon's signed-rank test of the differences (scipy: two-sided, zeros dropped, exact for small
    samples): statistic, p-value and a note; no test with fewer than 2 units or no difference at all.
    With few non-zero differences the exact test cannot reach small p-values: the note says how small."""
    from scipy import stats

    if differences.size < 2:
        return None, None, f"{differences.size} unit{'' if differences.size == 1 else 's'}: no interval or test"
    nonzero = int(np.count_nonzero(differences))
    if nonzero == 0:
        return None, None, "all differences are zero: no test"
    result = stats.wilcoxon(differences)
    note = None
    if nonzero < 6:  # 2 / 2^n, the exact two-sided test's smallest p, is above 0.05 below 6
        note = f"{nonzero} non-zero differences: p cannot go below {2 / 2**nonzero:.3g}"
    return float(result.statistic), float(result.pvalue), note


def compare_units(units: pd.DataFrame) -> dict:
    """The statistics of matched units (columns a, b: each level's PGR)."""
    differences = (units["b"] - units["a"]).to_numpy(dtype=float, copy=True)
    differences[np.abs(differences) < ZERO] = 0.0
    if differences.size == 0:
        return {"n_units": 0, "note": "no pair has a PGR at both levels"}
    low, high = mean_difference_interval(differences)
    statistic, p, note = signed_rank_test(differences)
    return {
        "n_units": int(differences.size),
        "mean_difference": float(differences.mean()),
        "mean_difference_low": low,
        "mean_difference_high": high,
        "wilcoxon_statistic": statistic,
        "wilcoxon_p": p,
        "note": note,
    }


def matched_units(summary: pd.DataFrame, column: str, a, b, match: list[str]) -> pd.DataFrame:
    """The units of a comparison: the groups `match` present at both levels a and b of `column` with a
    PGR, one row each, with their `match` values and each level's PGR as columns a and b."""
    with_pgr = summary[summary["pgr"].notna()]

    def level(value) -> dict[tuple, tuple[dict, float]]:
        rows = with_pgr[with_pgr[column] == value]
        return {_key(v): (dict(zip(match, v)), p) for v, p in zip(rows[match].itertuples(index=False), rows["pgr"])}

    left, right = level(a), level(b)
    units = [{**named, "a": pgr_a, "b": right[key][1]} for key, (named, pgr_a) in left.items() if key in right]
    return pd.DataFrame(units, columns=[*match, "a", "b"])


def scopes(summary: pd.DataFrame) -> list[tuple]:
    """(experiment, dataset) of each dataset of the summary, then (experiment, "all") per experiment:
    where a comparison is made, whether or not it has units there."""
    named = list(dict.fromkeys(_key(v) for v in summary[["experiment", "dataset"]].itertuples(index=False)))
    experiments = list(dict.fromkeys(experiment for experiment, _ in named))
    return named + [(experiment, ALL) for experiment in experiments]


def in_scope(units: pd.DataFrame, experiment, dataset) -> pd.DataFrame:
    """The units of one experiment, and of one of its datasets unless `dataset` is "all"."""

    def equal(column: str, value) -> np.ndarray:
        return np.array([_key((v,)) == (value,) for v in units[column]], dtype=bool)

    keep = equal("experiment", experiment)
    if dataset != ALL:
        keep &= equal("dataset", dataset)
    return units[keep]


def level_pairs(summary: pd.DataFrame, column: str, levels: list | None = None) -> list[tuple]:
    """Every two levels of `column` (`levels`, or those of the frame in its order), the earlier one
    first: the first level (the baseline) against each other, then the others among themselves."""
    if levels is None:
        levels = list(dict.fromkeys(v for v in summary[column] if not _missing(v)))
    return [(a, b) for i, a in enumerate(levels) for b in levels[i + 1 :]]


def paired_comparisons(
    summary: pd.DataFrame,
    column: str = "loss",
    metric: str = "accuracy",
    levels: list | None = None,
    units: str = "pairs",
) -> pd.DataFrame:
    """For every two levels a, b of `column` (`level_pairs`: `levels` in their order, by default the
    frame's, so the first is the baseline b is compared with), matched on the summary's other group
    columns (experiment, dataset, kind, chain, and select / gold_frac when present): the mean PGR
    difference b - a over the units present at both, its bootstrap interval over units and the
    Wilcoxon signed-rank test, per dataset and over all an experiment's datasets (dataset "all").
    A single level gives no rows, only the columns: readers always find the file.

    `units="seeds"`: `summary` is the per-seed table instead, and a unit is a pair and seed (matched
    on the seed too): for levels compared within the same trained weak models and ceilings, such as
    selection rules, where one pair has several seeds."""
    if column in ("experiment", "dataset"):
        raise ValueError(f"paired_comparisons: {column!r} is where comparisons are made; compare another column")
    if units == "seeds":
        columns = list(summary.columns)
        match = [c for c in columns[: columns.index("seed") + 1] if c != column]
    else:
        match = [c for c in summary_groups(summary) if c != column]
    rows = []
    for a, b in level_pairs(summary, column, levels):
        matched = matched_units(summary, column, a, b, match)
        for experiment, dataset in scopes(summary):
            name = dict(experiment=experiment, dataset=dataset, compared=column, a=a, b=b, metric=metric, units=units)
            rows.append(name | compare_units(in_scope(matched, experiment, dataset)))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


# ---------------------------------------------------------------------------------------------
# markdown


def _number(value) -> str:
    if _missing(value):
        return "–"
    return "−∞" if value == -math.inf else "∞" if value == math.inf else f"{value:.3f}"


def _with_interval(value, low, high) -> str:
    if _missing(value):
        return "n/a"
    return _number(value) + ("" if _missing(low) else f" [{_number(low)}, {_number(high)}]")


def _p_value(p) -> str:
    return "–" if _missing(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _table(header: list[str], rows: list[list], empty: str, provenance_line: str | None) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if _missing(c) else str(c) for c in cells) + " |" for cells in rows]
    if not rows:
        lines += ["", empty]
    for line in (provenance_line or "").splitlines():  # a paragraph per experiment
        lines += ["", line]
    return "\n".join(lines) + "\n"


def conclusions_markdown(frame: pd.DataFrame, provenance_line: str | None = None) -> str:
    """The conclusions table: the median beside the pooled PGR and its interval, 3 decimals."""
    by = list(frame.columns[: list(frame.columns).index("metric")])
    by = [c for c in by if c not in OPTIONAL_GROUPS or frame[c].nunique() > 1]  # the defaults alone: not shown
    header = [*by, "valid pairs", "median PGR", "pooled PGR [95% CI]", "note"]
    rows = [
        [
            *(r[c] for c in by),
            f"{r['n_valid_pairs']} of {r['n_pairs']}",
            _number(r["median_pgr"]),
            _with_interval(r["pooled_pgr"], r["pooled_pgr_low"], r["pooled_pgr_high"]),
            r["note"],
        ]
        for _, r in frame.iterrows()
    ]
    return _table(header, rows, "No direct transfers to conclude on.", provenance_line)


def comparisons_markdown(frame: pd.DataFrame, provenance_line: str | None = None) -> str:
    """The comparisons table: PGR(b) - PGR(a) with its interval and the signed-rank test, 3 decimals."""
    header = ["experiment", "dataset", "b − a", "units", "mean PGR difference [95% CI]", "Wilcoxon W", "p", "note"]
    rows = [
        [
            r["experiment"],
            r["dataset"],
            f"{r['compared']}: {r['b']} − {r['a']}",
            f"{r['n_units']} {r['units']}",
            _with_interval(r["mean_difference"], r["mean_difference_low"], r["mean_difference_high"]),
            "–" if _missing(r["wilcoxon_statistic"]) else f"{r['wilcoxon_statistic']:g}",
            _p_value(r["wilcoxon_p"]),
            r["note"],
        ]
        for _, r in frame.iterrows()
    ]
    return _table(header, rows, "Fewer than two levels to compare: no comparisons.", provenance_line)


# ---------------------------------------------------------------------------------------------
# diagnostics: how each student relates to its supervisor, and misfit against gain across pairs

DIAGNOSTIC_COLUMNS = [
    "weak_label_accuracy",
    "weak_label_ece",
    "agreement",
    "error_inheritance",
    "error_correction",
    "misfit",
    "misfit_disagreement",
    "student_minus_weak",
    "misfit_test",
    "brier_gain",
    "bound_slack",
    "bound_slack_se",
    "bound_slack_low",
    "bound_slack_high",
    "bound",
]


def diagnostics(summary: pd.DataFrame) -> pd.DataFrame:
    """diagnostics.csv: per direct transfer of the summary (seed means), the weak labels' quality on
    the rows it trained on, how it treats the supervisor's test errors (inherits or corrects them),
    its misfit on its weak labels and its gain over the weak model, side by side."""
    direct = summary[summary["kind"] == "transfer"]
    if "bound_slack" in direct:  # Charikar et al.'s bound, checked on test (w2s/report/misfit.py)
        direct = direct.join(bound_columns(direct))
    groups = summary_groups(summary)
    return direct[[*groups, "n_seeds", *(c for c in DIAGNOSTIC_COLUMNS if c in direct)]].reset_index(drop=True)


def misfit_correlation(frame: pd.DataFrame) -> dict:
    """Across the transfers of `diagnostics` (seed means): the Pearson and Spearman correlation of the
    misfit with the student's gain over its weak model (Charikar et al. 2024: the gain is at least
    the misfit, for squared loss in their setting), with two-sided p-values and the number of
    transfers, and Pearson's 95% interval (Fisher's z); None where fewer than three have both or
    either does not vary (the interval: fewer than four)."""
    from scipy import stats

    both = frame[["misfit", "student_minus_weak"]].dropna().astype(float)
    out = dict.fromkeys(("pearson", "pearson_p", "pearson_low", "pearson_high", "spearman", "spearman_p"))
    out["n"] = len(both)
    if len(both) < 3 or both.nunique().min() < 2:
        return out
    pearson = stats.pearsonr(both["misfit"], both["student_minus_weak"])
    spearman = stats.spearmanr(both["misfit"], both["student_minus_weak"])
    out.update(
        pearson=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
        spearman=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
    )
    if len(both) > 3:
        interval = pearson.confidence_interval(CONFIDENCE)
        out.update(pearson_low=float(interval.low), pearson_high=float(interval.high))
    return out


def diagnostics_markdown(frame: pd.DataFrame, provenance_line: str | None = None, more: str = "") -> str:
    """The diagnostics table (3 decimals) and, under it, the misfit-gain correlation across its rows,
    `more` (what choosing supervisors by misfit did: w2s/report/misfit.py) and the provenance."""
    skip = ("experiment", "kind", "weak_model", "model")  # the chain names both models
    by = [c for c in frame.columns[: list(frame.columns).index("n_seeds")] if c not in skip]
    by = [c for c in by if c not in OPTIONAL_GROUPS or frame[c].nunique() > 1]  # the defaults alone: not shown
    labels = {
        "weak_label_accuracy": "weak label accuracy",
        "weak_label_ece": "weak label ECE",
        "error_inheritance": "errors inherited",
        "error_correction": "errors corrected",
        "misfit_disagreement": "misfit (classes)",
        "student_minus_weak": "student − weak",
        "misfit_test": "misfit (test)",
        "brier_gain": "gain (Brier)",
        "bound_slack": "gain − misfit [95% CI]",
        "bound": "gain ≥ misfit",
    }
    hidden = ("bound_slack_se", "bound_slack_low", "bound_slack_high")  # in the gain − misfit cell
    shown = [c for c in DIAGNOSTIC_COLUMNS if c in frame and c not in hidden]
    header = [*by, "seeds", *(labels.get(c, c) for c in shown)]

    def cell(r, c):
        if c == "bound":
            return r[c]
        if c == "bound_slack":
            return _with_interval(r[c], r["bound_slack_low"], r["bound_slack_high"])
        return _number(r[c])

    rows = [[*(r[c] for c in by), r["n_seeds"], *(cell(r, c) for c in shown)] for _, r in frame.iterrows()]
    text = _table(header, rows, "No direct transfers.", None)
    c = misfit_correlation(frame)
    if c["pearson"] is not None:
        text += (
            f"\nmisfit against student − weak over {c['n']} transfers: Pearson r = {c['pearson']:.3f} "
            f"(p {_p_value(c['pearson_p'])}), Spearman ρ = {c['spearman']:.3f} (p {_p_value(c['spearman_p'])})\n"
        )
    else:
        text += f"\nmisfit against student − weak: {c['n']} transfers with both, too few or constant to correlate\n"
    text += more
    for line in (provenance_line or "").splitlines():
        text += f"\n{line}\n"
    return text
