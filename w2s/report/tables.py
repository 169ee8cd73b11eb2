"""Tables: one row per transfer stage and seed, the seed-mean summary with its intervals, the
ground-truth ceiling per model, and their markdown."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from w2s.errors import first_line
from w2s.report.records import AGREEMENT_SPLIT, TRANSFER_KINDS, _link
from w2s.report.stats import (
    _interval, _undefined_reason, aggregate_seeds, bootstrap_seed, difference_interval, pgr_interval,
)
from w2s.results import LENGTH_METRICS, OWN_KINDS, PROBE_METRICS, pgr

# Columns are named as in results.jsonl (w2s.results.stage_row) wherever they are the same quantity:
# the student's own scores are test_accuracy, test_auroc, ece; its size non_embedding_parameters.
SEED_COLUMNS = [
    "experiment", "dataset", "kind", "chain", "weak_model", "model", "loss", "seed",
    "weak_non_embedding_parameters", "non_embedding_parameters", "n_test",
    "weak_accuracy", "ceiling_accuracy", "test_accuracy", "weak_auroc", "ceiling_auroc", "test_auroc",
    "metric", "pgr", "pgr_low", "pgr_high", "pgr_note",
    "student_minus_weak", "student_minus_weak_low", "student_minus_weak_high",
    "agreement", *AGREEMENT_SPLIT, "supervisor_accuracy", "ece",
    *PROBE_METRICS, *LENGTH_METRICS, "stage", "key",
]
# sizes stay integers even when one is missing
_INTEGERS = {"weak_non_embedding_parameters": "Int64", "non_embedding_parameters": "Int64"}
GROUP_COLUMNS = ["experiment", "dataset", "kind", "chain", "weak_model", "model", "loss"]


def summary_columns(metric: str = "accuracy") -> list[str]:
    """The summary's columns: the seed-mean of each per-seed score, and the interval of the
    student's `test_<metric>` as test_<metric>_low / _high."""
    return GROUP_COLUMNS + [
        "n_seeds", "weak_non_embedding_parameters", "non_embedding_parameters",
        "weak_accuracy", "ceiling_accuracy", "test_accuracy", "weak_auroc", "ceiling_auroc", "test_auroc",
        "metric", f"test_{metric}_low", f"test_{metric}_high", "pgr", "pgr_low", "pgr_high", "pgr_note",
        "student_minus_weak", "student_minus_weak_low", "student_minus_weak_high",
        "agreement", *AGREEMENT_SPLIT, "supervisor_accuracy", "ece",
        *PROBE_METRICS, *LENGTH_METRICS,
    ]


SUMMARY_COLUMNS = summary_columns()  # with the default --metric accuracy


def _test_predictions(record: dict | None, cache: dict) -> pd.DataFrame | None:
    """A stage's test predictions indexed by example id: hard_label, predicted (the top class) and
    p_pos (two classes; NaN with more). None without a folder or file."""
    folder = record and record.get("folder")
    if folder is None or not (folder / "predictions.jsonl").is_file():
        return None
    if folder not in cache:
        try:
            frame = pd.read_json(folder / "predictions.jsonl", lines=True, dtype={"id": str})
            frame = frame[frame["split"] == "test"].set_index("id")
            if "hard_label" not in frame or ("p_pos" not in frame and "predicted" not in frame):
                raise ValueError("no hard_label, predicted or p_pos column")
        except (OSError, ValueError, KeyError) as err:  # damaged: the stage's points are still reported
            print(f"warning: {folder / 'predictions.jsonl'} is damaged ({first_line(err)[:80]}); the intervals "
                  "that need it are left out (w2s run --force on its stage rewrites it)")
            cache[folder] = None
            return None
        if "p_pos" not in frame:
            frame["p_pos"] = np.nan
        if "predicted" not in frame:  # written before k classes: binary, p_pos > 0.5
            frame["predicted"] = (frame["p_pos"] > 0.5).astype(int)
        cache[folder] = frame[["hard_label", "predicted", "p_pos"]]
    return cache[folder]


def _agreement_split(student: pd.DataFrame, supervisor: pd.DataFrame) -> tuple[float | None, float | None]:
    """Agreement on the test examples the supervisor got right, and on those it got wrong: for
    stage folders written before metrics.json held this split (their records lack its keys)."""
    both = student.join(supervisor, rsuffix="_sup", how="inner")
    if both.empty:
        return None, None
    agree = both["predicted"] == both["predicted_sup"]
    right = both["predicted_sup"] == both["hard_label"]
    return tuple(float(agree[mask].mean()) if mask.any() else None for mask in (right, ~right))


def seed_rows(records: list[dict], metric: str = "accuracy") -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row per transfer stage (dataset x weak x strong x loss x seed), and per stage key the
    3 x N test-set resamples of (weak, ceiling, student) metric for the aggregate."""
    by_key = _link(records)
    rows, draws, cache = [], {}, {}
    for r in records:
        if r["kind"] not in TRANSFER_KINDS or r.get("superseded"):
            continue
        weak, ceiling = by_key.get(r["weak_key"]), by_key.get(r["ceiling_key"])
        point = [x[metric] if x else None for x in (weak, ceiling, r)]
        value = pgr(point[2], point[0], point[1])
        note = None if value is not None else _undefined_reason(*point)
        low = high = diff_low = diff_high = None
        frames = [_test_predictions(x, cache) for x in (weak, ceiling, r)]
        column = "predicted" if metric == "accuracy" else "p_pos"  # AUROC: two classes only
        if all(f is not None and f[column].notna().all() for f in frames):
            joined = frames[0].join(frames[1], rsuffix="_c", how="inner").join(frames[2], rsuffix="_s", how="inner")
            result = bootstrap_seed(joined["hard_label"], joined[column], joined[f"{column}_c"], joined[f"{column}_s"],
                                    metric)
            draws[r["key"]] = result.bootstrap_distribution
            diff_low, diff_high = difference_interval(result.bootstrap_distribution)
            if value is not None:
                low, high = pgr_interval(result.bootstrap_distribution, *point)
                note = _unbounded_note(low, note)
        elif None not in point:
            draws[r["key"]] = np.array(point, dtype=float)[:, None]
        right, wrong = (r.get(k) for k in AGREEMENT_SPLIT)  # as the run wrote them into metrics.json
        if not any(k in r for k in AGREEMENT_SPLIT):
            supervisor = _test_predictions(by_key.get(r["supervisor_key"]), cache)
            if frames[2] is not None and supervisor is not None:
                right, wrong = _agreement_split(frames[2], supervisor)
        rows.append({
            "experiment": r["experiment"], "dataset": r["dataset"], "kind": r["kind"], "chain": "->".join(r["chain"]),
            "weak_model": r["chain"][0], "model": r["model"], "loss": r["loss"], "seed": r["seed"],
            "weak_non_embedding_parameters": weak and weak["params"], "non_embedding_parameters": r["params"],
            "n_test": r["n_test"],
            "weak_accuracy": weak and weak["accuracy"], "ceiling_accuracy": ceiling and ceiling["accuracy"],
            "test_accuracy": r["accuracy"], "weak_auroc": weak and weak["auroc"],
            "ceiling_auroc": ceiling and ceiling["auroc"], "test_auroc": r["auroc"],
            "metric": metric, "pgr": value, "pgr_low": low, "pgr_high": high, "pgr_note": note,
            "student_minus_weak": None if None in point[::2] else point[2] - point[0],
            "student_minus_weak_low": diff_low, "student_minus_weak_high": diff_high,
            "agreement": r["agreement"], "agreement_supervisor_right": right, "agreement_supervisor_wrong": wrong,
            "supervisor_accuracy": r["supervisor_accuracy"], "ece": r.get("ece"),
            **{k: r.get(k) for k in PROBE_METRICS + LENGTH_METRICS}, "stage": r["stage"], "key": r["key"],
        })
    frame = pd.DataFrame(rows, columns=SEED_COLUMNS).astype(_INTEGERS)
    order = ["experiment", "dataset", "weak_non_embedding_parameters", "non_embedding_parameters", "chain", "loss",
             "seed"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True), draws


def _unbounded_note(low: float | None, note: str | None) -> str | None:
    if low is not None and math.isinf(low):
        return "CI unbounded: ceiling - weak is within noise of 0 (see student_minus_weak)"
    return note


def summary_rows(per_seed: pd.DataFrame, draws: dict[str, np.ndarray], metric: str = "accuracy") -> pd.DataFrame:
    """Mean over seeds per dataset x chain x loss; PGR of the seed-mean metrics with its interval."""
    rows, columns = [], summary_columns(metric)
    for group, frame in per_seed.groupby(GROUP_COLUMNS, sort=False, dropna=False):
        means = frame.drop(columns=GROUP_COLUMNS).mean(numeric_only=True)
        row = dict(zip(GROUP_COLUMNS, group), n_seeds=len(frame), metric=metric)
        for column in columns:
            if column in means.index and column not in ("seed", "pgr", "pgr_low", "pgr_high"):
                row[column] = None if pd.isna(means[column]) else float(means[column])
        scores = [f"{who}_{metric}" for who in ("weak", "ceiling", "test")]  # the student's is test_<metric>
        weak, ceiling, student = (row.get(c) for c in scores)
        complete = frame[scores].notna().all(axis=None)
        value = pgr(student, weak, ceiling) if complete else None
        row["pgr"], row["pgr_note"] = value, None
        if value is None:
            row["pgr_note"] = _undefined_reason(weak, ceiling, student) if complete else "PGR undefined: a seed lacks a score"
        row["student_minus_weak"] = None if None in (weak, student) else student - weak
        seed_draws = [draws[k] for k in frame["key"] if k in draws]
        if len(seed_draws) == len(frame) and (len(frame) > 1 or seed_draws[0].shape[1] > 1):
            means = aggregate_seeds(seed_draws)
            row[f"test_{metric}_low"], row[f"test_{metric}_high"] = _interval(means[2])
            row["student_minus_weak_low"], row["student_minus_weak_high"] = difference_interval(means)
            if value is not None:
                row["pgr_low"], row["pgr_high"] = pgr_interval(means, weak, ceiling, student)
                row["pgr_note"] = _unbounded_note(row["pgr_low"], row["pgr_note"])
        rows.append(row)
    return pd.DataFrame(rows, columns=columns).astype(_INTEGERS)


def ground_truth_rows(records: list[dict]) -> pd.DataFrame:
    """Ground-truth accuracy per dataset and model, mean over seeds: the ceiling curve, and the weak
    models' own scores. `train_split` is the half a ground-truth stage trained on (train_b: the
    ceilings of `ceiling: half_b`; zero-shot models: None); `ceiling` marks the rows that are the
    models' ceilings (train_b where a model has one, else its half-A stage)."""
    columns = ["experiment", "dataset", "model", "train_split", "seed", "params", "accuracy", "auroc"]
    frame = pd.DataFrame(
        [{k: r[k] for k in columns} for r in records if r["kind"] in OWN_KINDS and not r.get("superseded")],
        columns=columns,
    )
    frame = frame.groupby(["experiment", "dataset", "model", "train_split"], sort=False, as_index=False,
                          dropna=False).agg(params=("params", "first"), accuracy=("accuracy", "mean"),
                                            auroc=("auroc", "mean"))
    on_b = frame.groupby(["experiment", "dataset", "model"])["train_split"].transform(lambda s: (s == "train_b").any())
    frame["ceiling"] = (frame["train_split"] == "train_b") | ~on_b.astype(bool)
    return frame


def markdown(frame: pd.DataFrame, metric: str, per_seed: bool) -> str:
    """A readable subset of the table: metrics to 3 places, PGR with its interval in brackets."""

    def num(v):
        return "–" if v is None or pd.isna(v) else f"{v:.3f}"

    def bound(v):
        return "−∞" if v == -math.inf else "∞" if v == math.inf else num(v)

    def with_ci(r, column="pgr"):
        if r[column] is None or pd.isna(r[column]):
            return "n/a"
        low, high = r[f"{column}_low"], r[f"{column}_high"]
        return num(r[column]) + ("" if pd.isna(low) else f" [{bound(low)}, {bound(high)}]")

    def lengths(r):
        """Over-long examples of the student's splits: shortened (decisive part cut), dropped."""
        parts = [f"{r['shortened']:.3g} ({r['decisive_cut']:.3g} cut)" if r["shortened"] else "",
                 f"{r['dropped']:.3g} dropped" if r["dropped"] else ""]
        return ", ".join(p for p in parts if p)

    header = ["dataset", "chain", "loss", "seed" if per_seed else "seeds", f"weak {metric}", f"ceiling {metric}",
              f"student {metric}", "PGR [95% CI]", "student − weak [95% CI]", "agreement", "ECE", "note"]
    long = bool(frame[["shortened", "dropped"]].fillna(0).to_numpy().any())  # only then the column shows
    if long:
        header.insert(-1, "over max_ctx")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    several = frame["experiment"].nunique() > 1
    for _, r in frame.iterrows():
        cells = [f"{r['experiment']}/{r['dataset']}" if several else r["dataset"], r["chain"], r["loss"], r["seed"] if per_seed else r["n_seeds"],
                 num(r[f"weak_{metric}"]), num(r[f"ceiling_{metric}"]), num(r[f"test_{metric}"]),
                 with_ci(r), with_ci(r, "student_minus_weak"), num(r["agreement"]), num(r["ece"]),
                 "" if pd.isna(r["pgr_note"]) else r["pgr_note"]]
        if long:
            cells.insert(-1, lengths(r.fillna(0)))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
