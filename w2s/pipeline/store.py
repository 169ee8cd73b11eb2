"""The stage-folder format and its file protocol.

An experiment's folder holds `stages/<stage folder>` per finished stage (config.json,
predictions.jsonl, metrics.json, written in that order: metrics.json marks the folder complete;
classifiers of more than two classes also write probs.npz, see `prediction_rows`),
`.locks/<key>.lock` per stage being trained (`w2s.pipeline.locks`), `failed/<folder>` per stage
whose last try raised, plan.jsonl (the stages of the latest run, for `w2s status`) and results.jsonl.
A stage is written into `stages/.tmp-<folder>-<pid>` and renamed into place only when complete; a
forced rerun first moves the old copy aside to `.old-<folder>-<pid>`. Leftovers of a killed run are
cleared here too.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import time
from pathlib import Path

from w2s.experiment.kinds import Stage
from w2s.jsonfiles import read_json, write_json, write_jsonl
from w2s.pipeline.locks import Lease, Locks, this_process
from w2s.spec import ExperimentSpec


def prepare(root: Path) -> None:
    """The experiment's stage and lock folders."""
    (root / "stages").mkdir(parents=True, exist_ok=True)
    (root / ".locks").mkdir(exist_ok=True)


def finished(root: Path, stage: Stage) -> tuple[Path, dict] | None:
    """(folder, metrics) of the stage if it finished (found by key, so renaming a label keeps the
    cache). A folder whose metrics.json does not parse (a damaged disk, a hand edit) is not finished:
    the stage reruns. Its own folder name is tried before the listing, which grows with the sweep."""
    own = root / "stages" / stage.folder
    for folder in itertools.chain([own], (f for f in (root / "stages").glob(f"*__{stage.key}") if f != own)):
        try:
            return folder, read_json(folder / "metrics.json")
        except (OSError, ValueError):
            continue
    return None


def stage_folders(root: Path) -> dict[str, Path]:
    """Every published stage folder by its key, in one listing (whether each finished is its
    metrics.json's to say); folders being written (`.tmp-*`) or replaced (`.old-*`) are left out."""
    folders = {}
    if not (root / "stages").is_dir():  # nothing has run yet
        return folders
    for entry in os.scandir(root / "stages"):
        if not entry.name.startswith(".") and "__" in entry.name:
            folders.setdefault(entry.name.rsplit("__", 1)[1], Path(entry.path))
    return folders


def finished_keys(root: Path) -> set[str]:
    """The keys of every finished stage, by the rule of `finished`, from one listing of the folder."""
    done = set()
    for key, folder in stage_folders(root).items():
        try:
            read_json(folder / "metrics.json")
        except (OSError, ValueError):
            continue
        done.add(key)
    return done


def finished_folder(root: Path, stage: Stage) -> Path | None:
    found = finished(root, stage)
    return found[0] if found else None


def read_metrics(root: Path, stage: Stage | None) -> dict | None:
    """A finished stage's metrics.json; None for no stage or one not finished."""
    found = finished(root, stage) if stage is not None else None
    return found[1] if found else None


def temporary_folder(root: Path, stage: Stage) -> Path:
    """Where this process writes the stage before publishing it."""
    return root / "stages" / f".tmp-{stage.folder}-{os.getpid()}"


def stage_config(stage: Stage, spec: ExperimentSpec) -> dict:
    """What a stage is, in one layout: its config.json and the config of its W&B run, so the report
    reads either the same way. Specs as JSON, other stages by key; never credentials (a spec has none).
    Its kind's own fields are its record's (`Stage.recorded`)."""
    kind = stage.recorded()
    return {
        "stage": stage.name,
        "kind": stage.kind,
        "key": stage.key,
        "dataset": stage.dataset.model_dump(mode="json"),
        "model": stage.model.model_dump(mode="json"),
        "seed": stage.seed,
        "settings": dataclasses.asdict(stage.settings),
        **kind,
        "weak": stage.weak.key if stage.weak else None,
        "ceiling": stage.ceiling.key if stage.ceiling else None,
        "requires": [s.key for s in stage.requires],
        # the weak labels this stage trained on: the supervisor run's W&B artifact
        "supervisor_artifact": f"preds-{kind['supervisor']}" if kind["supervisor"] else None,
        "spec": spec.model_dump(mode="json"),
    }


def write_stage(folder: Path, config: dict, metrics: dict, predictions: list[dict]) -> None:
    """`config`: the stage's `stage_config`."""
    write_json(folder / "config.json", config)
    with open(folder / "predictions.jsonl", "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in predictions)
    write_json(folder / "metrics.json", metrics)  # last: its presence marks the folder complete


def publish(tmp: Path, root: Path, stage: Stage) -> None:
    """Move a complete stage folder into place (replacing an older copy when forced)."""
    final = root / "stages" / stage.folder
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def clear_replaced(root: Path) -> None:
    """Old copies of force-rerun stages that a killed run left after publishing the new copy."""
    for old in (root / "stages").glob(".old-*"):
        final = old.with_name(old.name.removeprefix(".old-").rsplit("-", 1)[0])
        if (final / "metrics.json").is_file():
            shutil.rmtree(old, ignore_errors=True)


def clear_stale(root: Path, stage: Stage) -> None:
    """Leftovers of a killed run of this stage (called while holding the stage's lock): a folder being
    written, or the replaced copy a forced rerun had not yet deleted."""
    for pattern in (f".tmp-{stage.folder}-*", f".old-{stage.folder}-*"):
        for leftover in (root / "stages").glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def locks(root: Path) -> Locks:
    return Locks(root / ".locks")


def try_lock(locks: Locks, stage: Stage) -> Lease | None:
    """The stage's lock, held, or None while another live process holds it (is training the stage)."""
    return locks.try_acquire(stage.key, {"stage": stage.name})


# ---------------------------------------------------------------------------------------------
# the plan and the failures, for `w2s status`


PLAN_FILE = "plan.jsonl"


def write_plan(root: Path, stages: list[Stage]) -> None:
    """plan.jsonl: every stage of the latest run or submission, so `w2s status` needs only the folder."""
    write_jsonl(
        root / PLAN_FILE,
        [{"stage": s.name, "key": s.key, "folder": s.folder, "requires": [r.key for r in s.requires]} for s in stages],
    )


def record_failure(root: Path, stage: Stage, tmp: Path, error: str, sweep: str) -> Path:
    """Keep a failed stage's traceback (traceback.txt), what it had logged, and failure.json (who,
    when, the last line of the error) in failed/<folder>; replaces an older failure of the stage."""
    failed = root / "failed" / stage.folder
    (tmp / "traceback.txt").write_text(error)
    lines = [line for line in error.strip().splitlines() if line.strip()]
    write_json(
        tmp / "failure.json",
        {
            "stage": stage.name,
            "key": stage.key,
            "error": lines[-1] if lines else "",
            "sweep": sweep,
            "time": time.time(),
            **_who(),
        },
    )
    failed.parent.mkdir(exist_ok=True)
    shutil.rmtree(failed, ignore_errors=True)
    os.rename(tmp, failed)
    return failed


def _who() -> dict:
    me = this_process()
    return {"host": me["host"], "pid": me["pid"], "slurm_job": me["slurm_job"]}


def failures(root: Path) -> dict[str, dict]:
    """failure.json of every recorded failure, by stage key."""
    found = {}
    for path in (root / "failed").glob("*/failure.json"):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        found[record["key"]] = {**record, "folder": str(path.parent)}
    return found


def failed_in_sweep(root: Path, stage: Stage, sweep: str) -> bool:
    """Whether this stage's recorded failure is from `sweep` (read from its own folder: one file)."""
    try:
        return read_json(root / "failed" / stage.folder / "failure.json").get("sweep") == sweep
    except (OSError, ValueError, AttributeError):
        return False


def clear_failure(root: Path, stage: Stage) -> None:
    shutil.rmtree(root / "failed" / stage.folder, ignore_errors=True)
