"""Reading stages: one record per finished stage, the same shape from folders and from W&B.

Records come from the finished stage folders (config.json, metrics.json), never from
results.jsonl, so they are right even when that file is stale; or from the runs a W&B project
logged.
"""

from __future__ import annotations

import json
from pathlib import Path

from w2s.results import LENGTH_METRICS, OWN_KINDS, PROBE_METRICS
from w2s.spec import SpecError, loss_label

TRANSFER_KINDS = ("transfer", "bootstrap", "strong_to_strong")
# agreement where the supervisor was right / wrong, as the run computed it (w2s.pipeline.metrics)
AGREEMENT_SPLIT = ("agreement_supervisor_right", "agreement_supervisor_wrong")


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
        "key": config.get("key"),
        "stage": config.get("stage"),
        "kind": kind,
        "dataset": _label(config.get("dataset"), "dataset"),
        "model": model,
        "seed": config.get("seed"),
        "loss": _label(config.get("loss"), "loss") if kind in TRANSFER_KINDS else None,
        "chain": chain,
        # ground-truth stages: the half they trained on (train_b: a `ceiling: half_b` ceiling)
        "train_split": (config.get("train_split") or "train_a") if kind == "ground_truth" else None,
        "weak_key": config.get("weak"),
        "ceiling_key": config.get("ceiling"),
        "supervisor_key": config.get("supervisor"),
        "accuracy": metrics.get("test_accuracy"),
        "auroc": metrics.get("test_auroc"),
        "agreement": metrics.get("agreement"),
        "supervisor_accuracy": metrics.get("supervisor_accuracy"),
        "ece": metrics.get("ece"),
        "mixed_precision": metrics.get("mixed_precision"),  # as the stage trained (w2s/environment.py)
        **{k: metrics.get(k) for k in PROBE_METRICS + LENGTH_METRICS},
        # only where written: a stage folder from before the split existed lacks both keys (the table
        # then recomputes it from predictions); W&B summaries leave out a split that was None
        **{k: metrics[k] for k in AGREEMENT_SPLIT if k in metrics},
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
            if not isinstance(config, dict) or not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
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
        slot = (r["experiment"], r["kind"], r["dataset"], r["chain"] or (r["model"],), r["loss"], r["seed"],
                r["train_split"])
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

    config = dict(get("config") or {})  # w2s logs w2s.pipeline.store.stage_config
    summary = get("summary_metrics") if not isinstance(run, dict) else None
    summary = summary or get("summary") or {}
    summary = dict(getattr(summary, "_json_dict", summary))
    kind = config.get("kind") or get("job_type")
    if kind not in OWN_KINDS + TRANSFER_KINDS or summary.get("test_accuracy") is None:
        return None
    config.setdefault("key", get("id"))
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
    truth = {}  # half A (or zero-shot) stages by (experiment, dataset, model, seed), and half B ones
    for r in records:
        if r["kind"] in OWN_KINDS and not r.get("superseded"):
            truth.setdefault((r["experiment"], r["dataset"], r["model"], r["seed"], r["train_split"] == "train_b"), r)
    for r in records:
        if r["kind"] not in TRANSFER_KINDS or r["folder"] is not None:  # a stage folder names its own
            continue
        where = (r["experiment"], r["dataset"])
        if r["weak_key"] not in by_key and (weak := truth.get((*where, r["chain"][0], r["seed"], False))):
            r["weak_key"] = weak["key"]
        ceiling = truth.get((*where, r["model"], r["seed"], True)) or truth.get((*where, r["model"], r["seed"], False))
        if r["ceiling_key"] not in by_key and ceiling:
            r["ceiling_key"] = ceiling["key"]
        if r["supervisor_key"] is None and r["kind"] == "transfer":
            r["supervisor_key"] = r["weak_key"]
    return by_key
