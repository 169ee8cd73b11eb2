"""Reports: PGR with confidence intervals, tidy tables and paper-style figures.

The report is rebuilt from the finished stage folders (config.json, metrics.json,
predictions.jsonl), never from results.jsonl, so it is right even when that file is stale; or,
with `--wandb`, from the runs a project logged (points only: W&B holds no per-example
predictions, so its intervals come from seeds alone).

Uncertainty has two sources and the intervals cover both:
- within a seed, the test set is a sample: `scipy.stats.bootstrap` resamples test examples
  jointly for the weak model, the ceiling and the student (matched by example id), so the
  three accuracies move together, as they do in reality;
- across seeds, training is noisy: the aggregate resamples seeds, and within each drawn seed
  one of its test-set resamples, then takes PGR of the averaged metrics.

PGR is (student - weak) / (ceiling - weak). When the ceiling beats the weak model by less than
`results.MIN_GAP`, the ratio is noise divided by almost nothing, so it is reported as missing
with the reason; the same goes for an interval when that happens in any resample.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from w2s.results import MIN_GAP, PROBE_METRICS, pgr
from w2s.spec import SpecError, loss_label

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0  # fixed random state: the same stages give the same intervals
TRANSFER_KINDS = ("transfer", "bootstrap", "strong_to_strong")
METRICS = ("accuracy", "auroc")

SEED_COLUMNS = [
    "experiment", "dataset", "kind", "chain", "weak", "strong", "loss", "seed",
    "weak_params", "strong_params", "n_test",
    "weak_accuracy", "ceiling_accuracy", "student_accuracy", "weak_auroc", "ceiling_auroc", "student_auroc",
    "metric", "pgr", "pgr_low", "pgr_high", "pgr_note",
    "agreement", "agreement_supervisor_right", "agreement_supervisor_wrong", "supervisor_accuracy", "student_ece",
    *PROBE_METRICS, "stage", "key",
]  # fmt: skip
_INTEGERS = {"weak_params": "Int64", "strong_params": "Int64"}  # sizes stay integers even when one is missing
GROUP_COLUMNS = ["experiment", "dataset", "kind", "chain", "weak", "strong", "loss"]
SUMMARY_COLUMNS = GROUP_COLUMNS + [
    "n_seeds", "weak_params", "strong_params",
    "weak_accuracy", "ceiling_accuracy", "student_accuracy", "weak_auroc", "ceiling_auroc", "student_auroc",
    "metric", "student_low", "student_high", "pgr", "pgr_low", "pgr_high", "pgr_note",
    "agreement", "agreement_supervisor_right", "agreement_supervisor_wrong", "supervisor_accuracy", "student_ece",
    *PROBE_METRICS,
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# reading stages: one record per finished stage, the same shape from folders and from W&B


def find_experiments(paths: list[str | Path]) -> list[Path]:
    """Experiment folders (those holding `stages/`): each path is one, or a parent of several."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise SpecError(f"report: no such folder: {path}")
        if (path / "stages").is_dir():
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if (p / "stages").is_dir())
        if not children:
            raise SpecError(f"report: {path} is not an experiment folder (no stages/) and holds none")
        found.extend(children)
    return found


def _label(value, kind: str) -> str | None:
    """The display label of a dataset, model or loss, given its spec as a dict or already as a string."""
    if value is None or isinstance(value, str):
        return value
    if kind == "loss":
        return loss_label(value)
    if value.get("label") or value.get("id"):
        return value.get("label") or value.get("id")
    name = value.get("name")
    if kind == "model" and value.get("num_layers"):
        return f"{name}@{value['num_layers']}L"
    return name


def _chain(value) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(value.split("->")) if isinstance(value, str) else tuple(value)


def _record(experiment: str, config: dict, metrics: dict, kind: str | None = None, folder: Path | None = None) -> dict:
    kind = config.get("kind") or kind
    model = _label(config.get("model"), "model")
    chain = _chain(config.get("chain"))
    if kind in TRANSFER_KINDS and not chain:
        chain = (config.get("weak_model") or model, model)
    return {
        "experiment": experiment,
        "key": config.get("stage_key") or config.get("key"),
        "stage": config.get("stage"),
        "kind": kind,
        "dataset": _label(config.get("dataset"), "dataset"),
        "model": model,
        "seed": config.get("seed"),
        "loss": _label(config.get("loss"), "loss") if kind in TRANSFER_KINDS else None,
        "chain": chain,
        "weak_key": config.get("weak"),
        "ceiling_key": config.get("ceiling"),
        "supervisor_key": config.get("supervisor"),
        "accuracy": metrics.get("test_accuracy"),
        "auroc": metrics.get("test_auroc"),
        "agreement": metrics.get("agreement"),
        "supervisor_accuracy": metrics.get("supervisor_accuracy"),
        "ece": metrics.get("ece"),
        **{k: metrics.get(k) for k in PROBE_METRICS},
        "params": metrics.get("non_embedding_parameters"),
        "n_test": metrics.get("n_test"),
        "folder": folder,
        "finished_at": (folder / "metrics.json").stat().st_mtime if folder else 0.0,
    }


def load_records(root: Path, echo=print) -> list[dict]:
    """The finished stages of one experiment folder (metrics.json marks a stage finished), one per
    dataset x models x loss x seed (see `current`)."""
    records = []
    for folder in sorted((root / "stages").iterdir()):
        if folder.name.startswith(".") or not (folder / "metrics.json").is_file():
            continue  # a stage being written, or left behind by a killed run
        try:
            config = json.loads((folder / "config.json").read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
        except (OSError, ValueError):
            echo(f"warning: {folder}: unreadable config.json or metrics.json; left out (w2s run reruns it)")
            continue
        if config.get("kind") in ("features", "lm_finetune"):
            continue  # inputs of other stages: no predictions to report
        records.append(_record(root.name, config, metrics, folder=folder))
    n_old = mark_superseded(records, _listed_keys(root / "results.jsonl", echo))
    if n_old:
        echo(f"{root.name}: left out {n_old} superseded stage folders (same slot, older settings)")
    return records


def _listed_keys(path: Path, echo) -> set[str]:
    """The stage keys results.jsonl lists (the last run's plan). It is derived data: a damaged file
    is ignored with one warning, and the tables are built from the stage folders all the same."""
    if not path.is_file():
        return set()
    try:
        return {json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()}
    except (OSError, ValueError, KeyError, TypeError):
        echo(f"warning: {path} is damaged; ignored (the report reads the stage folders; w2s run rewrites it)")
        return set()


def mark_superseded(records: list[dict], listed: set[str] = frozenset()) -> int:
    """Keep one stage per dataset x models x loss x seed in the tables; returns how many it left out.

    Stage folders stay cached when the spec changes, so a folder can hold an old and a new stage
    for the same slot; averaging both would mix settings. The one results.jsonl lists (the last
    run's plan) wins, else the most recently finished. Left-out stages still serve as the weak
    model or ceiling of a transfer that was trained against them.
    """
    best = {}
    for r in records:
        slot = (r["experiment"], r["kind"], r["dataset"], r["chain"] or (r["model"],), r["loss"], r["seed"])
        rank = (r["key"] in listed, r["finished_at"])
        if slot not in best or rank >= best[slot][0]:  # a tie: the later one read
            best[slot] = (rank, r)
    keep = {id(r) for _, r in best.values()}
    for r in records:
        r["superseded"] = id(r) not in keep
    return len(records) - len(keep)


def record_from_wandb(run) -> dict | None:
    """One W&B run (a public-API Run, or a dict with the same fields) as a stage record; None if it
    is not a finished stage. Tolerant: labels may be strings or spec dicts, chains lists or 'a->b'."""

    def get(name):
        return run.get(name) if isinstance(run, dict) else getattr(run, name, None)

    config = dict(get("config") or {})
    if isinstance(config.get("stage"), dict):  # stage parameters nested under `stage`, keys as *_key
        stage = config.pop("stage")
        config = {**config, **stage, "stage": stage.get("name")}
    for who in ("weak", "ceiling", "supervisor"):
        config.setdefault(who, config.get(f"{who}_key"))
    summary = get("summary_metrics") if not isinstance(run, dict) else None
    summary = summary or get("summary") or {}
    summary = dict(getattr(summary, "_json_dict", summary))
    kind = config.get("kind") or get("job_type")
    if kind not in ("ground_truth",) + TRANSFER_KINDS or summary.get("test_accuracy") is None:
        return None
    config.setdefault("stage_key", get("id"))
    experiment = get("group") or config.get("experiment") or "wandb"
    return _record(experiment, config, summary, kind=kind)


def wandb_records(path: str, group: str | None = None) -> list[dict]:
    """The finished stages logged to a W&B project (ENTITY/PROJECT), optionally one group."""
    import wandb

    filters = {"state": "finished", **({"group": group} if group else {})}
    try:
        runs = list(wandb.Api().runs(path, filters=filters))
    except Exception as err:  # network, credentials, unknown project: all one line for the user
        raise SpecError(f"report: cannot read W&B runs of {path}: {str(err).splitlines()[0]}") from None
    records = [r for r in map(record_from_wandb, runs) if r is not None]
    mark_superseded(records)  # a stage run twice (e.g. resumed): the later run counts
    return records


def _link(records: list[dict]) -> dict[str, dict]:
    """Fill each transfer's weak / ceiling / supervisor keys from its ground-truth stages when the
    source did not name them (W&B), matching by experiment, dataset, model and seed."""
    by_key = {r["key"]: r for r in records}
    truth = {}
    for r in records:
        if r["kind"] == "ground_truth" and not r.get("superseded"):
            truth.setdefault((r["experiment"], r["dataset"], r["model"], r["seed"]), r)
    for r in records:
        if r["kind"] not in TRANSFER_KINDS or r["folder"] is not None:  # a stage folder names its own
            continue
        where = (r["experiment"], r["dataset"])
        if r["weak_key"] not in by_key and (weak := truth.get((*where, r["chain"][0], r["seed"]))):
            r["weak_key"] = weak["key"]
        if r["ceiling_key"] not in by_key and (ceiling := truth.get((*where, r["model"], r["seed"]))):
            r["ceiling_key"] = ceiling["key"]
        if r["supervisor_key"] is None and r["kind"] == "transfer":
            r["supervisor_key"] = r["weak_key"]
    return by_key


# ---------------------------------------------------------------------------------------------
# statistics


def metric_values(y: np.ndarray, p: np.ndarray, metric: str, counts: np.ndarray | None = None) -> np.ndarray:
    """Accuracy or AUROC of scores `p` on labels `y`, each example weighted by how often a resample
    drew it (`counts`, shape (..., n); all ones: the plain metric).

    Working from counts keeps a resample O(n): no per-resample sort. AUROC counts, for each
    positive, the negatives scored lower plus half the tied ones (as sklearn does); NaN when a
    resample holds one class only.
    """
    y, p = np.asarray(y) == 1, np.asarray(p, dtype=float)
    counts = np.ones_like(p) if counts is None else counts
    if metric == "accuracy":
        return (counts * ((p > 0.5) == y)).sum(axis=-1) / counts.sum(axis=-1)
    order = np.argsort(p, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(p[order]) != 0])  # first example of each distinct score
    ranked = counts[..., order]
    pos = np.add.reduceat(ranked * y[order], starts, axis=-1)  # weight per distinct score
    neg = np.add.reduceat(ranked * ~y[order], starts, axis=-1)
    below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + neg / 2)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))


def _pgr_array(student, weak, ceiling) -> np.ndarray:
    """PGR elementwise; NaN where the ceiling does not beat the weak model by MIN_GAP."""
    gap = ceiling - weak
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap >= MIN_GAP, (student - weak) / gap, np.nan)


def bootstrap_seed(y, weak, ceiling, student, metric: str = "accuracy"):
    """Resample test examples jointly for the three models of one seed: scipy resamples example
    indices, so one draw is the same examples for weak, ceiling and student (a paired bootstrap).

    Returns scipy's BootstrapResult for the statistic [weak, ceiling, student, pgr]: its
    `bootstrap_distribution` (4 x N_RESAMPLES) feeds the across-seed aggregate. Percentile
    intervals, since a ratio's distribution is skewed and BCa's jackknife costs n fits more.
    """
    y, scores = np.asarray(y), [np.asarray(p, dtype=float) for p in (weak, ceiling, student)]
    n = len(y)

    def statistic(index, axis=-1):
        """Resampled example indices (..., n) -> how often each example was drawn -> the metrics."""
        rows = index.reshape(-1, n)
        flat = (np.arange(len(rows))[:, None] * n + rows).ravel()
        counts = np.bincount(flat, minlength=rows.size).reshape(rows.shape)
        w, c, s = (metric_values(y, p, metric, counts) for p in scores)
        return np.stack([w, c, s, _pgr_array(s, w, c)]).reshape((4,) + index.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # NaN intervals are handled by the caller
        return stats.bootstrap(
            (np.arange(n),), statistic, vectorized=True, n_resamples=N_RESAMPLES, batch=500,
            method="percentile", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED),
        )  # fmt: skip


def aggregate_seeds(draws: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two-level resampling over seeds: each draw picks seeds with replacement and, for every picked
    seed, one of its test-set resamples (rows weak, ceiling, student), then averages them.

    Returns (mean metrics over the draws' seeds as a 3 x N array, PGR of those means, length N).
    A seed without predictions contributes its point values (a 3 x 1 array).
    """
    rng = np.random.default_rng(SEED)
    k = len(draws)
    stacked = np.stack([np.broadcast_to(d, (3, N_RESAMPLES)) for d in draws])  # a 3 x 1 point repeats
    seed_pick = rng.integers(k, size=(N_RESAMPLES, k))
    draw_pick = rng.integers(N_RESAMPLES, size=(N_RESAMPLES, k))
    means = stacked[seed_pick, :, draw_pick].mean(axis=1).T  # (3, N)
    return means, _pgr_array(means[2], means[0], means[1])


def _interval(values: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    if np.isnan(values).any():
        return None, None
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def _undefined_reason(weak, ceiling, student) -> str:
    """Why `results.pgr` gave None: a missing number, or too small a gap."""
    values = {"weak": weak, "ceiling": ceiling, "student": student}
    missing = [who for who, v in values.items() if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        return f"PGR undefined: no score for {', '.join(missing)} (stage not finished, or AUROC on one class)"
    return f"PGR undefined: ceiling - weak = {ceiling - weak:.3f} < {MIN_GAP}"


# ---------------------------------------------------------------------------------------------
# tables


def _test_predictions(record: dict | None, cache: dict) -> pd.DataFrame | None:
    """A stage's test predictions indexed by example id (None without a folder or file)."""
    folder = record and record.get("folder")
    if folder is None or not (folder / "predictions.jsonl").is_file():
        return None
    if folder not in cache:
        frame = pd.read_json(folder / "predictions.jsonl", lines=True, dtype={"id": str})
        cache[folder] = frame[frame["split"] == "test"].set_index("id")[["hard_label", "p_pos"]]
    return cache[folder]


def _agreement_split(student: pd.DataFrame, supervisor: pd.DataFrame) -> tuple[float | None, float | None]:
    """Agreement on the test examples the supervisor got right, and on those it got wrong."""
    both = student.join(supervisor, rsuffix="_sup", how="inner")
    if both.empty:
        return None, None
    agree = (both["p_pos"] > 0.5) == (both["p_pos_sup"] > 0.5)
    right = (both["p_pos_sup"] > 0.5) == (both["hard_label"] == 1)
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
        low = high = None
        frames = [_test_predictions(x, cache) for x in (weak, ceiling, r)]
        if all(f is not None for f in frames):
            joined = frames[0].join(frames[1], rsuffix="_c", how="inner").join(frames[2], rsuffix="_s", how="inner")
            result = bootstrap_seed(joined["hard_label"], joined["p_pos"], joined["p_pos_c"], joined["p_pos_s"], metric)
            draws[r["key"]] = result.bootstrap_distribution[:3]
            if value is not None:
                low, high = _interval(result.bootstrap_distribution[3])
                if low is None:
                    note = f"CI undefined: PGR undefined (ceiling - weak < {MIN_GAP}) in some test-set resamples"
        elif None not in point:
            draws[r["key"]] = np.array(point, dtype=float)[:, None]
        right = wrong = None
        supervisor = _test_predictions(by_key.get(r["supervisor_key"]), cache)
        if frames[2] is not None and supervisor is not None:
            right, wrong = _agreement_split(frames[2], supervisor)
        rows.append({
            "experiment": r["experiment"], "dataset": r["dataset"], "kind": r["kind"], "chain": "->".join(r["chain"]),
            "weak": r["chain"][0], "strong": r["model"], "loss": r["loss"], "seed": r["seed"],
            "weak_params": weak and weak["params"], "strong_params": r["params"], "n_test": r["n_test"],
            "weak_accuracy": weak and weak["accuracy"], "ceiling_accuracy": ceiling and ceiling["accuracy"],
            "student_accuracy": r["accuracy"], "weak_auroc": weak and weak["auroc"],
            "ceiling_auroc": ceiling and ceiling["auroc"], "student_auroc": r["auroc"],
            "metric": metric, "pgr": value, "pgr_low": low, "pgr_high": high, "pgr_note": note,
            "agreement": r["agreement"], "agreement_supervisor_right": right, "agreement_supervisor_wrong": wrong,
            "supervisor_accuracy": r["supervisor_accuracy"], "student_ece": r.get("ece"),
            **{k: r.get(k) for k in PROBE_METRICS}, "stage": r["stage"], "key": r["key"],
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=SEED_COLUMNS).astype(_INTEGERS)
    order = ["experiment", "dataset", "weak_params", "strong_params", "chain", "loss", "seed"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True), draws


def summary_rows(per_seed: pd.DataFrame, draws: dict[str, np.ndarray], metric: str = "accuracy") -> pd.DataFrame:
    """Mean over seeds per dataset x chain x loss; PGR of the seed-mean metrics with its interval."""
    rows = []
    for group, frame in per_seed.groupby(GROUP_COLUMNS, sort=False, dropna=False):
        means = frame.drop(columns=GROUP_COLUMNS).mean(numeric_only=True)
        row = dict(zip(GROUP_COLUMNS, group), n_seeds=len(frame), metric=metric)
        for column in SUMMARY_COLUMNS:
            if column in means.index and column not in ("seed", "pgr", "pgr_low", "pgr_high"):
                row[column] = None if pd.isna(means[column]) else float(means[column])
        weak, ceiling, student = (row.get(f"{who}_{metric}") for who in ("weak", "ceiling", "student"))
        complete = frame[[f"{who}_{metric}" for who in ("weak", "ceiling", "student")]].notna().all(axis=None)
        value = pgr(student, weak, ceiling) if complete else None
        row["pgr"], row["pgr_note"] = value, None
        if value is None:
            row["pgr_note"] = _undefined_reason(weak, ceiling, student) if complete else "PGR undefined: a seed lacks a score"
        seed_draws = [draws[k] for k in frame["key"] if k in draws]
        if len(seed_draws) == len(frame) and (len(frame) > 1 or seed_draws[0].shape[1] > 1):
            metric_means, pgr_draws = aggregate_seeds(seed_draws)
            row["student_low"], row["student_high"] = _interval(metric_means[2])
            if value is not None:
                row["pgr_low"], row["pgr_high"] = _interval(pgr_draws)
                if row["pgr_low"] is None:
                    row["pgr_note"] = f"CI undefined: PGR undefined (ceiling - weak < {MIN_GAP}) in some resamples"
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype(_INTEGERS)


def ground_truth_rows(records: list[dict]) -> pd.DataFrame:
    """Ground-truth accuracy per dataset and model, mean over seeds: the ceiling curve."""
    frame = pd.DataFrame(
        [{k: r[k] for k in ("experiment", "dataset", "model", "seed", "params", "accuracy", "auroc")}
         for r in records if r["kind"] == "ground_truth" and not r.get("superseded")],
        columns=["experiment", "dataset", "model", "seed", "params", "accuracy", "auroc"],
    )  # fmt: skip
    return frame.groupby(["experiment", "dataset", "model"], sort=False, as_index=False).agg(
        params=("params", "first"), accuracy=("accuracy", "mean"), auroc=("auroc", "mean")
    )


def markdown(frame: pd.DataFrame, metric: str, per_seed: bool) -> str:
    """A readable subset of the table: metrics to 3 places, PGR with its interval in brackets."""

    def num(v):
        return "–" if v is None or pd.isna(v) else f"{v:.3f}"

    def with_ci(r):
        if r["pgr"] is None or pd.isna(r["pgr"]):
            return "n/a"
        return num(r["pgr"]) + ("" if pd.isna(r["pgr_low"]) else f" [{num(r['pgr_low'])}, {num(r['pgr_high'])}]")

    header = ["dataset", "chain", "loss", "seed" if per_seed else "seeds", f"weak {metric}", f"ceiling {metric}",
              f"student {metric}", "PGR [95% CI]", "agreement", "ECE", "note"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    several = frame["experiment"].nunique() > 1
    for _, r in frame.iterrows():
        cells = [f"{r['experiment']}/{r['dataset']}" if several else r["dataset"], r["chain"], r["loss"], r["seed"] if per_seed else r["n_seeds"],
                 num(r[f"weak_{metric}"]), num(r[f"ceiling_{metric}"]), num(r[f"student_{metric}"]),
                 with_ci(r), num(r["agreement"]), num(r["student_ece"]), "" if pd.isna(r["pgr_note"]) else r["pgr_note"]]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# figures (paper column: ~3.4 in per panel, 8 pt text)


STYLE = {
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 7, "legend.title_fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 4,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.dpi": 300, "pdf.fonttype": 42,
}  # fmt: skip
PANEL = (3.4, 2.5)


def _figure(n_rows: int, n_cols: int, width: float | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = (width or PANEL[0] * n_cols, PANEL[1] * n_rows + 0.5)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path)
    return paths


def _weak_colors(summary: pd.DataFrame) -> dict[str, tuple]:
    """Hue by weak-model size on a sequential map (light yellow cut off: unreadable on white)."""
    from matplotlib import colormaps

    weak = summary.drop_duplicates("weak").sort_values("weak_params", kind="stable")
    sizes = np.log10(weak["weak_params"].astype(float).fillna(1.0).clip(lower=1.0).to_numpy())
    span = sizes.max() - sizes.min()
    position = (sizes - sizes.min()) / span if span > 0 else np.full(len(sizes), 0.5)
    if span == 0 and len(sizes) > 1:
        position = np.linspace(0, 1, len(sizes))
    return {w: colormaps["plasma"](0.05 + 0.8 * p) for w, p in zip(weak["weak"], position)}


def _size_axis(ax, has_sizes: bool, x: np.ndarray, order: list[str]) -> None:
    """Log size axis with limits set from the sizes, so a panel whose values are all missing still
    draws; without sizes (W&B runs that did not log them), models in ladder order."""
    if has_sizes:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.set_xlim(np.min(x) / 1.6, np.max(x) * 1.6)
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^8, 3x10^8 ... labels collide in a narrow panel
        ax.set_xlabel("strong student size (non-embedding parameters)")
    else:
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        ax.set_xlabel("strong student")


def _panels(summary: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """One panel per dataset and loss (datasets across, losses down), direct transfers only."""
    direct = summary[summary["kind"] == "transfer"]
    return [
        (dataset, loss, direct[(direct["dataset"] == dataset) & (direct["loss"] == loss)])
        for loss in direct["loss"].drop_duplicates()
        for dataset in direct["dataset"].drop_duplicates()
    ]


def _x(frame: pd.DataFrame, column: str, order: list[str], has_sizes: bool, name_column: str) -> np.ndarray:
    if has_sizes:
        return frame[column].astype(float).to_numpy()
    return np.array([order.index(m) for m in frame[name_column]], dtype=float)


def plot_accuracy(summary: pd.DataFrame, truth: pd.DataFrame, metric: str, out: Path, colors: dict) -> list[Path]:
    """Figure 3 of the paper: student metric against strong size, a line per weak supervisor,
    the ground-truth ceiling in black, each supervisor's own score as a star."""
    panels = _panels(summary)
    n_cols = summary["dataset"].nunique()
    fig, axes = _figure(math.ceil(len(panels) / n_cols), n_cols)
    has_sizes = summary["strong_params"].notna().all() and truth["params"].notna().all()
    order = list(truth.sort_values("params", kind="stable")["model"].drop_duplicates())
    order += [m for m in summary["strong"].drop_duplicates() if m not in order]
    for ax, (dataset, loss, frame) in zip(axes.flat, panels):
        gt = truth[truth["dataset"] == dataset].sort_values("params", kind="stable")
        x = _x(gt, "params", order, has_sizes, "model")
        ax.plot(x, gt[metric], "o-", color="black", label="ceiling (ground truth)", zorder=3)
        for weak, lines in frame.groupby("weak", sort=False):
            lines = lines.sort_values("strong_params", kind="stable")
            x_strong = _x(lines, "strong_params", order, has_sizes, "strong")
            ax.plot(x_strong, lines[f"student_{metric}"], "o-", color=colors[weak], label=f"weak: {weak}")
            own = gt[gt["model"] == weak]
            ax.plot(_x(own, "params", order, has_sizes, "model"), own[metric], "*", color=colors[weak],
                    markersize=10, markeredgecolor="black", markeredgewidth=0.5, zorder=4)  # fmt: skip
        ax.set_title(f"{dataset} ({loss})")
        ax.set_ylabel(f"test {metric}")
        _size_axis(ax, has_sizes, x, order)
    _hide_unused(axes, len(panels))
    handles, labels = _legend_entries(axes)
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], marker="*", linestyle="", color="grey", markeredgecolor="black", markersize=8))
    labels.append("weak supervisor alone")
    _figure_legend(fig, handles, labels)
    return _save(fig, out, "accuracy_vs_size")


def plot_pgr(summary: pd.DataFrame, metric: str, out: Path, colors: dict) -> list[Path]:
    """PGR against strong size, a line per weak supervisor, shaded 95% interval."""
    has_sizes = summary["strong_params"].notna().all()
    order = list(summary.sort_values("strong_params", kind="stable")["strong"].drop_duplicates())
    every_size = _x(summary, "strong_params", order, has_sizes, "strong")  # same x range as the accuracy figure
    summary = _pgr_pairs(summary)
    panels = _panels(summary)
    n_cols = summary["dataset"].nunique()
    fig, axes = _figure(math.ceil(len(panels) / n_cols), n_cols)
    for ax, (dataset, loss, frame) in zip(axes.flat, panels):
        for y in (0, 1):
            ax.axhline(y, color="grey", linewidth=0.6, linestyle="--", zorder=0)
        for weak, lines in frame.groupby("weak", sort=False):
            lines = lines.sort_values("strong_params", kind="stable")
            x = _x(lines, "strong_params", order, has_sizes, "strong")
            y, low, high = (lines[c].astype(float).to_numpy() for c in ("pgr", "pgr_low", "pgr_high"))
            ax.plot(x, y, "o-", color=colors[weak], label=f"weak: {weak}")
            ax.fill_between(x, low, high, color=colors[weak], alpha=0.2, linewidth=0)
            if len(x) == 1:  # a band needs two points: show a lone point's interval as a bar
                ax.errorbar(x, y, yerr=np.nan_to_num([y - low, high - y]), color=colors[weak], linewidth=0.8)
        if frame["pgr"].isna().all():
            ax.text(0.5, 0.5, "PGR undefined for every pair\n(see pgr_note in the table)", transform=ax.transAxes,
                    ha="center", va="center", color="grey")  # fmt: skip
        ax.set_title(f"{dataset} ({loss})")
        ax.set_ylabel(f"PGR ({metric})")
        _size_axis(ax, has_sizes, every_size, order)
    _hide_unused(axes, len(panels))
    handles, labels = _legend_entries(axes)
    if handles:
        _figure_legend(fig, handles, labels)
    _note_missing(fig, summary)
    return _save(fig, out, "pgr_vs_size")


def _pair_label(r, several_datasets: bool) -> str:
    pair = r["chain"].replace("->", "→")
    return f"{r['dataset']}\n{pair}" if several_datasets else pair


def _grouped_bars(ax, frame: pd.DataFrame, value: str, low: str | None, high: str | None, several: bool):
    """Bars grouped by pair, one colour per loss; missing values marked 'n/a' at zero."""
    from matplotlib import colormaps

    pairs = list(frame["chain"].drop_duplicates()) if not several else list(
        (frame["dataset"] + "|" + frame["chain"]).drop_duplicates()
    )
    losses = sorted(frame["loss"].dropna().unique())  # the same colour per loss in every figure
    width = 0.8 / len(losses)
    for j, loss in enumerate(losses):
        part = frame[frame["loss"] == loss]
        ids = part["chain"] if not several else part["dataset"] + "|" + part["chain"]
        x = np.array([pairs.index(p) for p in ids]) - 0.4 + width * (j + 0.5)
        y = part[value].astype(float).to_numpy()
        err = None
        if low:
            lo, hi = part[low].astype(float).to_numpy(), part[high].astype(float).to_numpy()
            err = np.nan_to_num(np.stack([y - lo, hi - y]), nan=0.0)
        ax.bar(x, np.nan_to_num(y), width, yerr=err, capsize=2, error_kw={"linewidth": 0.8},
               color=colormaps["tab10"](j), label=loss)  # fmt: skip
        for xi in x[np.isnan(y)]:
            ax.annotate("n/a", (xi, 0), xytext=(0, 2), textcoords="offset points", rotation=90, ha="center",
                        va="bottom", fontsize=6, color="grey")  # fmt: skip
    labels = [_pair_label({"dataset": p.split("|")[0], "chain": p.split("|")[-1]}, several) for p in pairs]
    crowded = len(pairs) > 3
    ax.set_xticks(range(len(pairs)), labels, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_xlim(-0.6, len(pairs) - 0.4)


def _bar_width(summary: pd.DataFrame) -> float:
    n_bars = len(summary)
    return float(np.clip(1.2 + 0.25 * n_bars, PANEL[0], 7.0))


def plot_losses(summary: pd.DataFrame, metric: str, out: Path) -> list[Path]:
    """PGR per loss for each weak -> strong pair, with 95% intervals."""
    direct = _pgr_pairs(summary)
    fig, axes = _figure(1, 1, width=_bar_width(direct))
    ax = axes[0, 0]
    _grouped_bars(ax, direct, "pgr", "pgr_low", "pgr_high", direct["dataset"].nunique() > 1)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axhline(1, color="grey", linewidth=0.6, linestyle="--")
    ax.set_ylabel(f"PGR ({metric})")
    missing = direct["pgr"].isna().any()
    ax.set_xlabel("weak → strong" + ("\n(n/a: PGR undefined, see pgr_note in the table)" if missing else ""))
    _loss_legend(fig, ax)
    return _save(fig, out, "pgr_by_loss")


def plot_agreement(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Student-supervisor agreement where the supervisor was right vs wrong: high agreement on its
    mistakes means the student imitates them rather than generalizing past them."""
    direct = summary[summary["kind"] == "transfer"]
    fig, axes = _figure(2, 1, width=_bar_width(direct))
    several = direct["dataset"].nunique() > 1
    for ax, column, title in ((axes[0, 0], "agreement_supervisor_right", "where the supervisor is right"),
                              (axes[1, 0], "agreement_supervisor_wrong", "where the supervisor is wrong")):  # fmt: skip
        _grouped_bars(ax, direct, column, None, None, several)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("student-supervisor\nagreement")
        ax.set_title(f"test examples {title}")
    axes[0, 0].tick_params(labelbottom=False)
    axes[1, 0].set_xlabel("weak → strong")
    _loss_legend(fig, axes[0, 0])
    return _save(fig, out, "agreement")


def _loss_legend(fig, ax) -> None:
    """Above the bars, so it never covers them: as many columns as the figure's width holds for the
    longest label (about 0.045 in per 7-pt character plus the colour patch)."""
    handles, labels = ax.get_legend_handles_labels()
    entry_width = 0.4 + 0.045 * max(map(len, labels), default=1)
    ncol = max(1, min(len(labels), int(fig.get_figwidth() / entry_width)))
    fig.legend(handles, labels, loc="outside upper center", ncol=ncol, frameon=False, title="loss")


def _hide_unused(axes, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _figure_legend(fig, handles, labels) -> None:
    """Below the panels, as many columns as the figure's width holds (~1.7 in per entry)."""
    ncol = max(1, min(len(labels), int(fig.get_figwidth() / 1.7)))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _legend_entries(axes):
    seen = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    return list(seen.values()), list(seen)


def _note_missing(fig, frame: pd.DataFrame) -> None:
    n = int(frame["pgr"].isna().sum())
    if n:
        text = f"PGR undefined for {n} of {len(frame)} (pair, loss) rows: see pgr_note in the table"
        fig.suptitle(text, fontsize=6, color="grey")


def _pgr_pairs(summary: pd.DataFrame) -> pd.DataFrame:
    """Direct transfers between different models: a model supervising itself has no gap to recover
    (its ceiling is the weak model), so those pairs are left out unless they are all there is."""
    direct = summary[summary["kind"] == "transfer"]
    different = direct[direct["weak"] != direct["strong"]]
    return different if len(different) else direct


# ---------------------------------------------------------------------------------------------
# the report


def build_report(records: list[dict], out: Path, metric: str = "accuracy") -> list[Path]:
    """Tables and figures for these stage records into `out`; returns the files written."""
    if metric not in METRICS:
        raise SpecError(f"report: unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if not any(r["kind"] in TRANSFER_KINDS and not r.get("superseded") for r in records):
        raise SpecError("report: no finished weak-to-strong stages to report on")
    per_seed, draws = seed_rows(records, metric)
    summary = summary_rows(per_seed, draws, metric)
    truth = ground_truth_rows(records)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame, seeds in (("per_seed", per_seed, True), ("summary", summary, False)):
        frame.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.md").write_text(markdown(frame, metric, seeds))
        written += [out / f"{name}.csv", out / f"{name}.md"]
    if summary["experiment"].nunique() > 1:  # panels per experiment and dataset
        summary = summary.assign(dataset=summary["experiment"] + "/" + summary["dataset"])
        truth = truth.assign(dataset=truth["experiment"] + "/" + truth["dataset"])
    import matplotlib

    with matplotlib.rc_context(STYLE):
        if (summary["kind"] == "transfer").any():
            colors = _weak_colors(summary)
            written += plot_accuracy(summary, truth, metric, out, colors)
            written += plot_pgr(summary, metric, out, colors)
            written += plot_losses(summary, metric, out)
            written += plot_agreement(summary, out)
    return written


def report(run_dirs: list[str | Path], out: str | Path | None = None, metric: str = "accuracy", echo=print) -> list[Path]:
    """`w2s report RUN_DIR...`: default output folder RUN_DIR/report (of the first one)."""
    roots = find_experiments(run_dirs)
    records = [r for root in roots for r in load_records(root, echo)]
    if not records:
        raise SpecError(f"report: no finished stages in {', '.join(map(str, run_dirs))}")
    return build_report(records, Path(out) if out else Path(run_dirs[0]) / "report", metric)


def report_wandb(path: str, group: str | None = None, out=None, metric: str = "accuracy") -> list[Path]:
    """`w2s report --wandb ENTITY/PROJECT [--group G]`: default output folder ./report."""
    if path.count("/") != 1:
        raise SpecError(f"report: --wandb expects ENTITY/PROJECT, got {path!r}")
    records = wandb_records(path, group)
    if not records:
        raise SpecError(f"report: no finished stage runs in W&B {path}" + (f" group {group}" if group else ""))
    return build_report(records, Path(out or "report"), metric)
