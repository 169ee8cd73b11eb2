"""Tables: one row per transfer stage and seed, the seed-mean summary with its intervals, the
ground-truth ceiling per model, their markdown, and the provenance line under each table.

Columns are the result rows' (w2s/scoring/rows.py): the student's own scores are test_accuracy,
test_auroc, ece, its size non_embedding_parameters; the report adds intervals (`*_low`, `*_high`),
student_minus_weak and the weak model's size.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from w2s.errors import first_line
from w2s.experiment.kinds import kind_of
from w2s.report.records import link_references, stage_id
from w2s.scoring.metrics import (
    CONFIDENCE,
    PGR_METRICS,
    PREDICTION_COLUMN,
    SCORE_COLUMNS,
    accuracy,
    aggregate_seeds,
    bootstrap_seed,
    expected_calibration_error,
    percentile_interval,
    transfer_diagnostics,
)
from w2s.scoring.pgr import difference_interval, pgr, pgr_interval, unbounded_note, undefined_note
from w2s.scoring.predictions import read_split_probabilities, rule_file
from w2s.scoring.rows import (
    AGREEMENT_SPLIT,
    ERROR_METRICS,
    LENGTH_METRICS,
    PROBE_METRICS,
    PROVENANCE_COLUMNS,
    WEAK_LABEL_METRICS,
    reference_score,
    with_references,
)

# each PGR metric's weak, ceiling and student scores
SCORES = [f"{who}_{metric}" for metric in PGR_METRICS for who in ("weak", "ceiling", "test")]
# the student's other scores (ece, and any metric added to the result row), as its row has them
OTHER_SCORES = [c for c in SCORE_COLUMNS if c not in SCORES]


# the scores, PGR and what explains it: the per-seed table's and the summary's columns after their own
def _score_columns(counts: list[str], intervals: list[str], seed_pgr: list[str]) -> list[str]:
    return [
        "weak_non_embedding_parameters",
        "non_embedding_parameters",
        *counts,
        *SCORES,
        "metric",
        *intervals,
        "pgr",
        "pgr_low",
        "pgr_high",
        *seed_pgr,
        "pgr_note",
        "student_minus_weak",
        "student_minus_weak_low",
        "student_minus_weak_high",
        "agreement",
        *AGREEMENT_SPLIT,
        "supervisor_accuracy",
        *ERROR_METRICS,
        *WEAK_LABEL_METRICS,
        *OTHER_SCORES,
        *PROBE_METRICS,
        *LENGTH_METRICS,
    ]


# select: the chain's selection rule (w2s/experiment/selection.py); gold_frac / gold_n: the share or number
# of ground-truth labels mixed in, gold_select: which rows (w2s/experiment/gold.py)
GOLD_COLUMNS = ["gold_frac", "gold_n", "gold_select"]
GROUP_DEFAULTS = {"select": "final", "gold_frac": 0.0, "gold_n": 0, "gold_select": "random"}  # where unrecorded
GROUP_COLUMNS = ["experiment", "dataset", "kind", "chain", "weak_model", "model", "loss", "select", *GOLD_COLUMNS]
SEED_COLUMNS = [
    *GROUP_COLUMNS,
    "seed",
    *_score_columns(["n_train", "n_test"], [], []),
    *PROVENANCE_COLUMNS,
    "stage",
    "key",
]
SEED_ORDER = [  # the per-seed table's rows: by experiment, dataset, the pair's sizes, then the rest
    "experiment",
    "dataset",
    "weak_non_embedding_parameters",
    "non_embedding_parameters",
    "chain",
    "loss",
    "select",
    *GOLD_COLUMNS,
    "seed",
]
# sizes stay integers even when one is missing
_INTEGERS = {"weak_non_embedding_parameters": "Int64", "non_embedding_parameters": "Int64"}


def summary_columns(metric: str = "accuracy", by: list[str] = GROUP_COLUMNS) -> list[str]:
    """The summary's columns: the groups `by`, how many seeds and transfer stages each holds, the
    seed-mean of each per-seed score, the intervals of the weak model's, the ceiling's and the
    student's `<metric>` (weak_<metric>_low, ..., test_<metric>_high), PGR of the means with its
    interval, and the mean of the stages' own PGRs."""
    intervals = [f"{who}_{metric}_{end}" for who in ("weak", "ceiling", "test") for end in ("low", "high")]
    columns = _score_columns(["n_train"], intervals, ["mean_seed_pgr"])
    at = columns.index(AGREEMENT_SPLIT[-1]) + 1  # each agreement split's interval and count after it
    return [*by, "n_seeds", "n_transfers", *columns[:at], *AGREEMENT_INTERVALS, *columns[at:]]


# the agreement splits' 95% intervals (Wilson's, over the test examples of all the group's stages) and
# how many examples each split holds (`_agreement_intervals`)
AGREEMENT_INTERVALS = [
    *(f"{split}_{end}" for split in AGREEMENT_SPLIT for end in ("low", "high")),
    "n_supervisor_right",
    "n_supervisor_wrong",
]


SUMMARY_COLUMNS = summary_columns()  # with the default --metric accuracy


def _test_predictions(record: dict | None, cache: dict, rule: str | None = None) -> pd.DataFrame | None:
    """A stage's test predictions indexed by example id: hard_label, predicted (the top class) and
    p_pos (two classes; NaN with more): its result, or with `rule` the checkpoint that rule chose
    where the stage kept it apart (w2s/experiment/selection.py; a student under `oracle` keeps its
    final one apart, so its own result is read without a rule). None without a folder or file. A
    gzipped file (predictions.jsonl.gz, as a run folder compacted to be shared holds them) is read as well."""
    folder = record and record.get("folder")
    if folder is None:
        return None
    names = dict.fromkeys((rule_file("predictions.jsonl", rule), "predictions.jsonl"))  # rule None: the result alone
    path = next((folder / f"{n}{gz}" for n in names for gz in ("", ".gz") if (folder / f"{n}{gz}").is_file()), None)
    if path is None:
        return None
    if path not in cache:
        try:
            frame = pd.read_json(path, lines=True, dtype={"id": str})
            frame = frame[frame["split"] == "test"].set_index("id")
            if "hard_label" not in frame or ("p_pos" not in frame and "predicted" not in frame):
                raise ValueError("no hard_label, predicted or p_pos column")
        except (OSError, ValueError, KeyError) as err:  # damaged: the stage's points are still reported
            print(
                f"warning: {path} is damaged ({first_line(err)[:80]}); the intervals "
                "that need it are left out (w2s run --force on its stage rewrites it)"
            )
            cache[path] = None
            return None
        if "p_pos" not in frame:
            frame["p_pos"] = np.nan
        if "predicted" not in frame:  # written before k classes: binary, p_pos > 0.5
            frame["predicted"] = (frame["p_pos"] > 0.5).astype(int)
        cache[path] = frame[["hard_label", "predicted", "p_pos"]]
    return cache[path]


def _diagnostics(student: dict, supervisor: dict | None, rule: str) -> dict:
    """ERROR_METRICS and the weak labels' accuracy and ECE of a transfer whose metrics.json predates
    them, from its and its supervisor's predictions (nothing retrains; such a stage held out no
    validation rows, so it trained on all of half B); {} where either is missing or unreadable."""
    folders = (student.get("folder"), supervisor and supervisor.get("folder"))
    if None in folders:
        return {}
    try:
        mine = read_split_probabilities(folders[0], ("test", "train_b"))
        theirs = read_split_probabilities(folders[1], ("test", "train_b"), rule)
        truth = pd.read_json(folders[0] / "predictions.jsonl", lines=True, dtype={"id": str})
    except (OSError, ValueError, KeyError):
        return {}
    test, half_b = (truth[truth["split"] == split] for split in ("test", "train_b"))
    diagnostics = transfer_diagnostics(mine, theirs, dict(zip(test["id"], test["hard_label"])))
    out = {k: diagnostics[k] for k in ERROR_METRICS}
    if student.get("weak_label_accuracy") is None:
        labels = dict(zip(half_b["id"], half_b["hard_label"]))
        ids, probs = theirs["train_b"]
        rows = [i for i, id_ in enumerate(ids) if id_ in labels]
        y = np.array([labels[ids[i]] for i in rows])
        if rows:
            out["weak_label_accuracy"] = accuracy(probs[rows], y)
            out["weak_label_ece"] = expected_calibration_error(probs[rows], y)
    return out


def _agreement_split(student: pd.DataFrame, supervisor: pd.DataFrame) -> tuple[float | None, float | None]:
    """Agreement on the test examples the supervisor got right, and on those it got wrong: for
    stage folders written before metrics.json held this split (their rows lack its keys)."""
    both = student.join(supervisor, rsuffix="_sup", how="inner")
    if both.empty:
        return None, None
    agree = both["predicted"] == both["predicted_sup"]
    right = both["predicted_sup"] == both["hard_label"]
    return tuple(float(agree[mask].mean()) if mask.any() else None for mask in (right, ~right))


def seed_rows(records: list[dict], metric: str = "accuracy") -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row per transfer stage (dataset x weak x strong x loss x seed), and per stage key the
    3 x N test-set resamples of (weak, ceiling, student) metric for the aggregate, by `stage_id`."""
    by_key = link_references(records)
    rows, draws, cache = [], {}, {}
    for r in records:
        if not kind_of(r["kind"]).is_transfer or r.get("superseded"):
            continue
        row, resamples = _seed_row(r, by_key, cache, metric)
        if resamples is not None:
            draws[stage_id(r)] = resamples
        rows.append(row)
    frame = pd.DataFrame(rows, columns=SEED_COLUMNS).astype(_INTEGERS)
    return frame.sort_values(SEED_ORDER, kind="stable").reset_index(drop=True), draws


def _seed_row(r: dict, by_key: dict, cache: dict, metric: str) -> tuple[dict, np.ndarray | None]:
    """A transfer's row: its scores beside its weak model's and ceiling's at the checkpoints its chain's
    rule chose, PGR and student - weak with their intervals, and the diagnostics its folder predates;
    and its test-set resamples (None without predictions or scores)."""
    weak, ceiling = _reference(by_key, r, "weak"), _reference(by_key, r, "ceiling")
    row = with_references({k: r.get(k) for k in SEED_COLUMNS}, weak, ceiling, metric)
    rule = r.get("select") or "final"  # the weak model's and ceiling's checkpoints under the chain's rule
    frames = [
        _test_predictions(weak, cache, rule),
        _test_predictions(ceiling, cache, rule),
        _test_predictions(r, cache),
    ]
    intervals, resamples = _intervals(row, frames, metric)
    row.update(
        _recomputed(r, by_key, cache, rule, frames[2]),
        weak_non_embedding_parameters=weak and weak["non_embedding_parameters"],
        metric=metric,
        **intervals,
    )
    return row, resamples


def _intervals(row: dict, frames: list, metric: str) -> tuple[dict, np.ndarray | None]:
    """PGR's and student - weak's intervals from a joint bootstrap of the three stages' test predictions
    (w2s/scoring/pgr.py), and the resamples; without predictions, the point scores stand for them."""
    point = [row[f"{who}_{metric}"] for who in ("weak", "ceiling", "test")]
    low = high = diff_low = diff_high = resamples = None
    note = row["pgr_note"]
    column = PREDICTION_COLUMN[metric]
    if all(f is not None and f[column].notna().all() for f in frames):
        joined = frames[0].join(frames[1], rsuffix="_c", how="inner").join(frames[2], rsuffix="_s", how="inner")
        resamples = bootstrap_seed(
            joined["hard_label"], joined[column], joined[f"{column}_c"], joined[f"{column}_s"], metric
        ).bootstrap_distribution
        diff_low, diff_high = difference_interval(resamples)
        if row["pgr"] is not None:
            low, high = pgr_interval(resamples, *point)
            note = unbounded_note(low, note)
    elif None not in point:
        resamples = np.array(point, dtype=float)[:, None]
    return {
        "pgr_low": low,
        "pgr_high": high,
        "pgr_note": note,
        "student_minus_weak": None if None in point[::2] else point[2] - point[0],
        "student_minus_weak_low": diff_low,
        "student_minus_weak_high": diff_high,
    }, resamples


def _reference(by_key: dict, record: dict, role: str) -> dict | None:
    """A transfer's weak model, ceiling or supervisor (`role`) among the records of its experiment."""
    return by_key.get((record["experiment"], record[f"{role}_key"]))


def stage_ids(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The rows' `stage_id`s: what the resamples of `seed_rows` are found by."""
    return list(zip(frame["experiment"], frame["key"]))


def _recomputed(r: dict, by_key: dict, cache: dict, rule: str, student: pd.DataFrame | None) -> dict:
    """The agreement split and the diagnostics as the run wrote them into metrics.json, or, for folders
    from before them, recomputed from the predictions."""
    split = {k: r[k] for k in AGREEMENT_SPLIT if k in r}
    if not split:
        supervisor = _test_predictions(_reference(by_key, r, "supervisor"), cache, rule)
        if student is not None and supervisor is not None:
            split = dict(zip(AGREEMENT_SPLIT, _agreement_split(student, supervisor)))
    if any(r.get(k) is None for k in (*ERROR_METRICS, "weak_label_accuracy")):
        split.update(_diagnostics(r, _reference(by_key, r, "supervisor"), rule))
    return split


def with_group_defaults(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """`frame` with each group of `by` it lacks (a per-seed table of an older version lacks the newer
    ones: gold_n, gold_select) at its default."""
    return frame.assign(**{c: d for c, d in GROUP_DEFAULTS.items() if c in by and c not in frame})


def summary_rows(
    per_seed: pd.DataFrame, draws: dict[tuple, np.ndarray], metric: str = "accuracy", by: list[str] = GROUP_COLUMNS
) -> pd.DataFrame:
    """Per group (by default dataset x chain x loss, in each experiment) the mean of each score over
    its transfer stages, and two PGRs: `pgr`, the PGR of the mean weak, ceiling and student scores
    (the paper's: the mean of seeds, then the ratio), with its interval over the seeds and test
    examples of the group's stages; and `mean_seed_pgr`, the mean of the stages' own PGRs (missing
    where one is). They differ where seeds' gaps differ: a seed with a small gap weighs as much as
    any other in the mean of ratios. `n_seeds` counts distinct seeds, `n_transfers` the stages (a
    group that pools pairs has more stages than seeds)."""
    by = list(by)
    per_seed = with_group_defaults(per_seed, by)
    rows, columns = [], summary_columns(metric, by)
    derived = ("seed", "pgr", "pgr_low", "pgr_high", "mean_seed_pgr")  # not means of the per-seed column
    for group, frame in per_seed.groupby(by, sort=False, dropna=False):
        means = frame.drop(columns=by).mean(numeric_only=True)
        row = dict(zip(by, group), n_seeds=frame["seed"].nunique(), n_transfers=len(frame), metric=metric)
        for column in columns:
            if column in by:
                continue
            if column in _INTEGERS and column in frame:  # a size: the group's, if it has one size
                sizes = frame[column].dropna().unique()
                row[column] = int(sizes[0]) if len(sizes) == 1 else None
            elif column.endswith("_se") and column in frame:  # the standard error of the seeds' mean
                errors = frame[column].astype(float)
                row[column] = None if errors.isna().any() else float(np.sqrt((errors**2).sum()) / len(errors))
            elif column in means.index and column not in derived:
                row[column] = None if pd.isna(means[column]) else float(means[column])
        scores = [f"{who}_{metric}" for who in ("weak", "ceiling", "test")]  # the student's is test_<metric>
        weak, ceiling, student = (row.get(c) for c in scores)
        complete = frame[scores].notna().all(axis=None)
        value = pgr(student, weak, ceiling) if complete else None
        row["pgr"], row["pgr_note"] = value, None
        if value is None:
            row["pgr_note"] = undefined_note(weak, ceiling, student) if complete else "a seed lacks a score"
        seed_pgrs = [
            pgr(*(None if pd.isna(v) else float(v) for v in r)) for r in frame[[scores[2], *scores[:2]]].to_numpy()
        ]
        row["mean_seed_pgr"] = None if None in seed_pgrs else float(np.mean(seed_pgrs))
        row["student_minus_weak"] = None if None in (weak, student) else student - weak
        row.update(_agreement_intervals(frame))
        seed_draws = [draws[k] for k in stage_ids(frame) if k in draws]
        if len(seed_draws) == len(frame) and (len(frame) > 1 or seed_draws[0].shape[1] > 1):
            means = aggregate_seeds(seed_draws)
            for who, resampled in zip(("weak", "ceiling", "test"), means):
                row[f"{who}_{metric}_low"], row[f"{who}_{metric}_high"] = percentile_interval(resampled)
            row["student_minus_weak_low"], row["student_minus_weak_high"] = difference_interval(means)
            if value is not None:
                row["pgr_low"], row["pgr_high"] = pgr_interval(means, weak, ceiling, student)
                row["pgr_note"] = unbounded_note(row["pgr_low"], row["pgr_note"])
        rows.append(row)
    counts = {"n_supervisor_right": "Int64", "n_supervisor_wrong": "Int64"}
    return pd.DataFrame(rows, columns=columns).astype(_INTEGERS | counts)


def _agreement_intervals(frame: pd.DataFrame) -> dict:
    """AGREEMENT_INTERVALS of a group's stages: the examples where the supervisor was right (wrong)
    and those of them where the student agreed, counted back from each stage's shares and pooled,
    with Wilson's interval for the pooled share (it ignores seed-to-seed variation: with 3 seeds there
    is too little of it to resample)."""
    from scipy.stats import binomtest

    columns = ["n_test", "supervisor_accuracy", *AGREEMENT_SPLIT]
    shares = frame.reindex(columns=columns).astype(float)  # a column missing: no interval
    out = dict.fromkeys(AGREEMENT_INTERVALS)
    if shares.isna().any(axis=None):
        return out
    right = (shares["n_test"] * shares["supervisor_accuracy"]).round()
    for split, examples in zip(AGREEMENT_SPLIT, (right, shares["n_test"] - right)):
        n, k = int(examples.sum()), int((examples * shares[split]).round().sum())
        out["n_" + split.removeprefix("agreement_")] = n
        if n:
            interval = binomtest(k, n).proportion_ci(CONFIDENCE, method="wilson")
            out[f"{split}_low"], out[f"{split}_high"] = float(interval.low), float(interval.high)
    return out


CURVE_COLUMNS = [
    "experiment",
    "dataset",
    "chain",
    "loss",
    "select",
    *GOLD_COLUMNS,
    "seed",
    "step",
    "progress",
    "validation_accuracy",
    "test_accuracy",
    "weak_accuracy",
    "ceiling_accuracy",
    "pgr",
    "chosen",
    "key",
]


def curve_rows(records: list[dict]) -> pd.DataFrame:
    """curves.csv: every evaluation point of every direct transfer that evaluated during training
    (`train.eval_every`), with its PGR had training stopped there, against the weak model and ceiling
    its selection rule chose; `chosen` marks the point the rule chose for the student."""
    by_key = link_references(records)
    rows = []
    for r in records:
        if r["kind"] != "transfer" or r.get("superseded") or not r.get("curve"):
            continue
        rule = r.get("select") or "final"
        weak, ceiling = _reference(by_key, r, "weak"), _reference(by_key, r, "ceiling")
        scores = [reference_score(ref, rule, "test_accuracy") for ref in (weak, ceiling)]
        for point in r["curve"]:
            rows.append(
                {
                    **{k: r.get(k) for k in ("experiment", "dataset", "chain", "loss", "select", *GOLD_COLUMNS)},
                    **{k: point.get(k) for k in ("step", "progress", "validation_accuracy", "test_accuracy")},
                    "seed": r["seed"],
                    "weak_accuracy": scores[0],
                    "ceiling_accuracy": scores[1],
                    "pgr": pgr(point.get("test_accuracy"), *scores),
                    "chosen": point.get("step") == r.get(f"{rule}_step"),
                    "key": r["key"],
                }
            )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def ground_truth_rows(records: list[dict]) -> pd.DataFrame:
    """Ground-truth scores per dataset and model, mean over seeds: the ceiling curve, and the weak
    models' own scores. `train_split` is the half a ground-truth stage trained on (train_b: the
    ceilings of `ceiling: half_b`; zero-shot models: None); `ceiling` marks the rows that are the
    models' ceilings (train_b where a model has one, else its half-A stage)."""
    scores = [f"test_{metric}" for metric in PGR_METRICS]
    columns = ["experiment", "dataset", "model", "train_split", "seed", "non_embedding_parameters", *scores]
    frame = pd.DataFrame(
        [
            {k: r.get(k) for k in columns}
            for r in records
            if kind_of(r["kind"]).is_baseline
            and not kind_of(r["kind"]).several_models  # an ensemble: no point of one model's curve
            and not r.get("superseded")
            and not r.get("member")
        ],
        columns=columns,
    )
    frame = frame.groupby(
        ["experiment", "dataset", "model", "train_split"], sort=False, as_index=False, dropna=False
    ).agg(non_embedding_parameters=("non_embedding_parameters", "first"), **{s: (s, "mean") for s in scores})
    on_b = frame.groupby(["experiment", "dataset", "model"])["train_split"].transform(lambda s: (s == "train_b").any())
    frame["ceiling"] = (frame["train_split"] == "train_b") | ~on_b.astype(bool)
    return frame


def ground_truth_from_per_seed(per_seed: pd.DataFrame) -> pd.DataFrame:
    """`ground_truth_rows` as far as a per-seed table (per_seed.csv) knows it, for redrawing a report
    without its stage folders: each model's scores as a weak model and as a ceiling, mean over seeds.
    Where a model's ceiling scores differ from its weak ones in a seed, the ceiling trained on half B
    (`ceiling: half_b`) and the two are separate rows."""
    scores = [f"test_{metric}" for metric in PGR_METRICS]
    rows = []
    for (experiment, dataset), frame in per_seed.groupby(["experiment", "dataset"], sort=False):
        roles = {}
        for role, model_column, size_column in (
            ("weak", "weak_model", "weak_non_embedding_parameters"),
            ("ceiling", "model", "non_embedding_parameters"),
        ):
            columns = [f"{role}_{metric}" for metric in PGR_METRICS]
            per_model_seed = frame.drop_duplicates([model_column, "seed"])
            for model, seeds in per_model_seed.groupby(model_column, sort=False):
                roles[(role, model)] = (seeds[size_column].iloc[0], seeds[columns].astype(float).to_numpy())
        for model in dict.fromkeys(m for _, m in roles):
            weak, ceiling = roles.get(("weak", model)), roles.get(("ceiling", model))
            same = weak is not None and ceiling is not None and np.allclose(weak[1], ceiling[1], equal_nan=True)
            for role, found in (("weak", weak), ("ceiling", ceiling)):
                if found is None or (role == "ceiling" and same):
                    continue
                split = "train_b" if role == "ceiling" and weak is not None else "train_a"
                row = dict(experiment=experiment, dataset=dataset, model=model, train_split=split)
                row |= dict(non_embedding_parameters=found[0], **dict(zip(scores, np.nanmean(found[1], axis=0))))
                rows.append(row | {"ceiling": role == "ceiling" or same or ceiling is None})
    return pd.DataFrame(
        rows, columns=["experiment", "dataset", "model", "train_split", "non_embedding_parameters", *scores, "ceiling"]
    )


def provenance(records: list[dict]) -> str:
    """Where the reported stages came from, a line per experiment: w2s version, KEY_VERSION, machine,
    precision, seeds and their summed wall time, so that a stale table shows itself."""
    used = [r for r in records if not r.get("superseded")]
    experiments = list(dict.fromkeys(r["experiment"] for r in used))
    if len(experiments) > 1:
        return "\n".join(
            f"{name}: " + _provenance([r for r in used if r["experiment"] == name]) for name in experiments
        )
    return _provenance(used)


def _provenance(used: list[dict]) -> str:

    def counted(column: str) -> str:
        counts = Counter("unrecorded" if r.get(column) is None else str(r[column]) for r in used)
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{value} ({n})" for value, n in sorted(counts.items()))

    seconds = sum(r.get("seconds") or 0 for r in used)
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in used if r.get("seed") is not None}))
    return (
        f"w2s {counted('w2s_version')} · KEY_VERSION {counted('key_version')} · machine: {counted('machine')} · "
        f"precision: {counted('mixed_precision')} · seeds {seeds} · {len(used)} stages, "
        f"{seconds / 60:.1f} min of stage wall time"
    )


def markdown(frame: pd.DataFrame, metric: str, per_seed: bool, provenance_line: str | None = None) -> str:
    """A readable subset of the table: metrics to 3 places, PGR with its interval in brackets (the
    summary: PGR of the seed-mean scores, and beside it the mean of the seeds' PGRs); the provenance
    line under it. The selection rule, the gold share and over-long examples show only
    where a table has more than the defaults."""
    long = bool(frame[["shortened", "dropped"]].fillna(0).to_numpy().any())
    rules = "select" in frame and bool((frame["select"].fillna("final") != "final").any())
    gold = any(c in frame and bool(frame[c].fillna(0).astype(float).any()) for c in ("gold_frac", "gold_n"))
    extra = [name for name, shown in (("select", rules), ("gold", gold)) if shown]
    header = [
        "dataset",
        "chain",
        "loss",
        *extra,
        "seed" if per_seed else "seeds",
        f"weak {metric}",
        f"ceiling {metric}",
        f"student {metric}",
        "PGR [95% CI]" if per_seed else "PGR of the means [95% CI]",
        *([] if per_seed else ["mean of seed PGRs"]),
        "student − weak [95% CI]",
        "agreement",
        "ECE",
        *(["over max_ctx"] if long else []),
        "note",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    several = frame["experiment"].nunique() > 1
    for _, r in frame.iterrows():
        cells = [
            f"{r['experiment']}/{r['dataset']}" if several else r["dataset"],
            r["chain"],
            "gold only" if r["kind"] == "gold_only" else r["loss"],
            *[_rule(r["select"]) if name == "select" else gold_label(r) for name in extra],
            r["seed"] if per_seed else r["n_seeds"],
            *(_number(r[f"{who}_{metric}"]) for who in ("weak", "ceiling", "test")),
            _with_interval(r),
            *([] if per_seed else [_number(r["mean_seed_pgr"])]),
            _with_interval(r, "student_minus_weak"),
            _number(r["agreement"]),
            _number(r["ece"]),
            *([_lengths(r.fillna(0))] if long else []),
            "" if pd.isna(r["pgr_note"]) else r["pgr_note"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for line in (provenance_line or "").splitlines():  # a paragraph per experiment
        lines += ["", line]
    return "\n".join(lines) + "\n"


def _number(v) -> str:
    return "–" if v is None or pd.isna(v) else f"{v:.3f}"


def _with_interval(r, column: str = "pgr") -> str:
    """A value and its interval in brackets, infinite bounds as such; n/a where it has none."""
    if r[column] is None or pd.isna(r[column]):
        return "n/a"
    low, high = r[f"{column}_low"], r[f"{column}_high"]
    bound = lambda v: "−∞" if v == -np.inf else "∞" if v == np.inf else _number(v)  # noqa: E731
    return _number(r[column]) + ("" if pd.isna(low) else f" [{bound(low)}, {bound(high)}]")


def _lengths(r) -> str:
    """Over-long examples of the student's splits: shortened (decisive part cut), dropped."""
    parts = [
        f"{r['shortened']:.3g} ({r['decisive_cut']:.3g} cut)" if r["shortened"] else "",
        f"{r['dropped']:.3g} dropped" if r["dropped"] else "",
    ]
    return ", ".join(p for p in parts if p)


def gold_label(row) -> str:
    """A row's gold labels as tables show them: 0.25 (a share), n50 (a count), with the rule that chose
    them where it is not random."""
    n = row.get("gold_n")
    amount = f"n{int(n)}" if n and not pd.isna(n) else f"{float(row.get('gold_frac') or 0):g}"
    select = row.get("gold_select")
    return amount + (f" {select}" if isinstance(select, str) and select != "random" else "")


def _rule(rule: str) -> str:
    """A selection rule as the tables name it: oracle is an upper bound only (w2s/experiment/selection.py)."""
    return "oracle (upper bound)" if rule == "oracle" else rule
