"""Reading stages: the result row (w2s/scoring/rows.py) of every finished stage, from stage folders or
from the runs a W&B project logged, with what the report adds: the experiment it belongs to, its
folder, when it finished, and whether a newer stage of the same slot supersedes it.

Rows come from the finished stage folders (config.json, metrics.json), never from results.jsonl,
so they are right even when that file is stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from w2s.errors import SpecError
from w2s.experiment.kinds import kind_of
from w2s.jsonfiles import read_jsonl
from w2s.scoring.rows import stage_row, stage_seconds, with_references


def find_experiments(paths: list[str | Path], who: str = "report") -> list[Path]:
    """Experiment folders (those holding `stages/`): each path is one, or a parent of several. `who`
    starts the error's line (the command or function that was given the paths)."""
    found = []
    for path in map(Path, paths):
        if path.exists() and not path.is_dir():
            raise SpecError(f"{who}: {path} is a file; give a run folder (<output_dir>/<name>) or a folder of them")
        if not path.is_dir():
            raise SpecError(f"{who}: no such folder: {path}")
        if (path / "stages").is_dir():
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if (p / "stages").is_dir())
        if not children:
            raise SpecError(f"{who}: {path} is not an experiment folder (no stages/) and holds none")
        found.extend(children)
    unique = {p.resolve(): p for p in reversed(found)}  # a folder given twice is read once
    return [p for p in found if unique[p.resolve()] is p]


def experiment_names(folders: list[Path]) -> list[str]:
    """Each experiment folder's name in the tables: its own name (the spec's), or, where folders of the
    same name are read together (two copies of one run), the shortest end of its path that tells it
    apart (`a/quickstart`, `b/quickstart`): their seeds are never pooled."""
    folders = [f.resolve() for f in folders]
    names = []
    for folder in folders:
        for depth in range(1, len(folder.parts) + 1):
            name = "/".join(folder.parts[-depth:])
            if sum("/".join(f.parts[-depth:]) == name for f in folders) == 1:
                break
        names.append(name)
    return names


# what the report adds to a stage's result row (`_record`, `mark_superseded`)
REPORT_COLUMNS = ("experiment", "folder", "finished_at", "seconds", "curve", "superseded")


def _record(row: dict, metrics: dict, experiment: str, folder: Path | None = None) -> dict:
    """A result row with what the report adds: its experiment, folder, when it finished, its wall time."""
    finished_at = (folder / "metrics.json").stat().st_mtime if folder else 0.0
    return {
        **row,
        "experiment": experiment,
        "folder": folder,
        "finished_at": finished_at,
        "seconds": stage_seconds(metrics),
        "curve": metrics.get("curve") if isinstance(metrics.get("curve"), list) else None,  # train.eval_every
    }


def records_of(
    *run_dirs: str | Path, wandb: str | None = None, group: str | None = None, echo=print, who: str = "report"
) -> list[dict]:
    """The finished stages of experiment folders (each a folder with stages/, or a parent of several),
    or of a W&B project (ENTITY/PROJECT, optionally one group), as result rows (w2s/scoring/rows.py) with
    the report's additions: experiment, folder, finished_at, seconds, superseded. Each transfer carries
    its weak model's and ceiling's scores and its PGR, as in results.jsonl (`w2s.scoring.rows.link`)."""
    if wandb is not None:
        if run_dirs:
            raise SpecError(f"{who}: give run folders or wandb=ENTITY/PROJECT, not both")
        if not isinstance(wandb, str) or wandb.count("/") != 1:
            raise SpecError(f"{who}: wandb expects ENTITY/PROJECT, got {wandb!r}")
        records = wandb_records(wandb, group)
    else:
        if not run_dirs:
            raise SpecError(f"{who}: give at least one run folder (or wandb=ENTITY/PROJECT)")
        folders = find_experiments(list(run_dirs), who)
        records = [r for root, name in zip(folders, experiment_names(folders)) for r in load_records(root, echo, name)]
    by_key = link_references(records)
    for r in records:
        if kind_of(r["kind"]).is_transfer:
            references = (by_key.get((r["experiment"], r[f"{role}_key"])) for role in ("weak", "ceiling"))
            with_references(r, *references)
    return records


def load_records(root: Path, echo=print, name: str | None = None) -> list[dict]:
    """The finished stages of one experiment folder (metrics.json marks a stage finished), one per
    dataset x models x loss x seed (see `mark_superseded`); `name`: the experiment's in the tables
    (default: the folder's)."""
    name = name or root.name
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
        row = stage_row(config, metrics)
        if row is not None:
            records.append(_record(row, metrics, name, folder))
        elif getattr(kind_of(config.get("kind")), "has_predictions", False):  # features, lm_finetune: no row
            echo(
                f"warning: {folder}: metrics.json has no test_accuracy (damaged?); left out (w2s run --force reruns it)"
            )
    n_old = mark_superseded(records, _listed_keys(root / "results.jsonl", echo))
    if n_old:
        echo(f"{name}: left out {n_old} superseded stage folders (same slot, older settings)")
    return records


def _listed_keys(path: Path, echo) -> set[str]:
    """The stage keys results.jsonl lists (the last run's plan). It is derived data: a damaged file
    is ignored with one warning (a partial list would rank stages wrongly), and the tables are built
    from the stage folders all the same."""
    if not path.is_file():
        return set()
    try:
        rows, damaged = read_jsonl(path, {"key"})
    except OSError:
        rows, damaged = [], [0]
    if damaged:
        echo(f"warning: {path} is damaged; ignored (the report reads the stage folders; w2s run rewrites it)")
        return set()
    return {r["key"] for r in rows}


def mark_superseded(records: list[dict], listed: set[str] = frozenset()) -> int:
    """Keep one stage per dataset x models x loss x seed in the tables; returns how many it left out.

    Stage folders stay cached when the spec changes, so a folder can hold an old and a new stage
    for the same slot; averaging both would mix settings. The one results.jsonl lists (the last
    run's plan) wins, else the most recently finished. Left-out stages still serve as the weak
    model or ceiling of a transfer that was trained against them.
    """
    best = {}
    for r in records:
        slot = (
            r["experiment"],
            r["kind"],
            r["dataset"],
            r.get("chain") or r["model"],
            r.get("loss"),
            r["seed"],
            r.get("train_split"),
            r.get("member") or 0,
            r.get("select") or "final",
            r.get("gold_frac") or 0.0,
            r.get("gold_n") or 0,
            r.get("gold_select") or "random",
        )
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
    config["kind"] = config.get("kind") or get("job_type")
    config["key"] = config.get("key") or get("id")
    row = stage_row(config, summary)
    return None if row is None else _record(row, summary, get("group") or config.get("experiment") or "wandb")


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


def link_references(records: list[dict]) -> dict[tuple[str, str], dict]:
    """The records by (experiment, key) (`stage_id`), each transfer's weak / ceiling / supervisor keys
    filled from its ground-truth stages where the source did not name them (W&B runs of older
    versions), matching by experiment, dataset, model and seed."""
    by_key = {stage_id(r): r for r in records}
    truth = {}  # half A (or zero-shot) stages by (experiment, dataset, model, seed), and half B ones
    for r in records:
        if kind_of(r["kind"]).is_baseline and not r.get("superseded") and not r.get("member"):
            on_b = r.get("train_split") == "train_b"
            truth.setdefault((r["experiment"], r["dataset"], r["model"], r["seed"], on_b), r)
    for r in records:
        if not kind_of(r["kind"]).is_transfer or r["folder"] is not None:  # a stage folder names its own
            continue
        where = (r["experiment"], r["dataset"])
        if (r["experiment"], r["weak_key"]) not in by_key and (
            weak := truth.get((*where, r["weak_model"], r["seed"], False))
        ):
            r["weak_key"] = weak["key"]
        ceiling = truth.get((*where, r["model"], r["seed"], True)) or truth.get((*where, r["model"], r["seed"], False))
        if (r["experiment"], r["ceiling_key"]) not in by_key and ceiling:
            r["ceiling_key"] = ceiling["key"]
        if r["supervisor_key"] is None and r["kind"] == "transfer":
            r["supervisor_key"] = r["weak_key"]
    return by_key


def stage_id(record: dict) -> tuple[str, str]:
    """A stage among records of several run folders: two copies of one experiment hold the same keys."""
    return record["experiment"], record["key"]
