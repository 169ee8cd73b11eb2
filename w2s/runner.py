"""Running an experiment: plan the stages, train each unfinished one exactly once, write results.

Crash safety: a stage is written into a temporary folder and renamed into place only when
complete, so a killed run never leaves a folder that a rerun takes for finished. A lock per stage
(`w2s.pipeline.locks`: safe on shared filesystems, expires when its holder dies) keeps processes on
the same output folder (`w2s run` twice, `--workers`, `w2s submit`) from training the same stage:
the second moves on to another stage, or waits. Under `accelerate launch` the processes of one
launch train every stage together; the main process decides and writes, the others follow.

A stage that raises is recorded in failed/<folder> with its traceback, and the run goes on with the
stages that do not need it. Processes of one sweep (same `sweep` id) do not retry a stage that failed
in the sweep; the next run or submission does.

The parts: `w2s.pipeline.store` (the stage-folder format), `w2s.pipeline.stages` (what each kind of
stage does); here, the order of things.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import hashlib
import json
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import broadcast_object_list

from w2s import environment
from w2s.checks import check_runnable
from w2s.data import fingerprints
from w2s.errors import StagesFailed, first_line
from w2s.jsonfiles import read_json, write_jsonl
from w2s.pipeline import store
from w2s.pipeline.evaluation import headline
from w2s.pipeline.locks import Lease, Locks
from w2s.pipeline.stages import RUNNERS, StageJob
from w2s.pipeline.store import experiment_dir, finished_folder
from w2s.plan import Stage, plan
from w2s.result_rows import format_table, link, stage_row
from w2s.spec import ExperimentSpec, SpecError, describe_recipe
from w2s.tracking import StageTracker, log_experiment_summary
from w2s.train import attention_kernels, process_state, seed_everything

__all__ = [
    "Selection",
    "describe_plan",
    "experiment_dir",
    "finished_folder",
    "new_sweep",
    "run_experiment",
    "run_stage",
    "select",
]

WAIT_SECONDS = 2.0
REFRESH_SECONDS = 2.0  # results.jsonl, rewritten after a stage at most this often (ResultsFile.refresh)


# ---------------------------------------------------------------------------------------------
# what to run


@dataclass
class Selection:
    """What a run will do with each stage of the plan."""

    stage: Stage
    action: str  # "cached" | "run" | "force" | "skip" (not selected by --only)


def select(stages: list[Stage], root: Path, only: list[str] = (), force: list[str] = ()) -> list[Selection]:
    """Decide per stage: cached, run, force, or skip. `--only` keeps the matching stages and the
    supervisors they need; `--force` retrains the matching ones even when finished."""

    def matches(stage: Stage, patterns) -> bool:
        return any(fnmatch.fnmatchcase(stage.name, p) for p in patterns)

    names = [s.name for s in stages]
    for flag, patterns in (("--only", only), ("--force", force)):
        for pattern in patterns:
            if not fnmatch.filter(names, pattern):
                nearest = difflib.get_close_matches(pattern, names, n=3, cutoff=0) or names[:3]
                raise SpecError(
                    f"{flag} {pattern!r}: matches no stage; nearest: {', '.join(nearest)} "
                    "(w2s run SPEC --dry-run lists them all)"
                )

    wanted = {s.key for s in stages if not only or matches(s, only)}
    for stage in reversed(stages):  # dependencies come first in the plan, so walk backwards
        if stage.key in wanted:
            wanted.update(s.key for s in stage.requires)
    out, done = [], store.finished_keys(root)
    for stage in stages:
        if stage.key not in wanted:
            out.append(Selection(stage, "skip"))
        elif matches(stage, force):
            out.append(Selection(stage, "force"))
        else:
            out.append(Selection(stage, "cached" if stage.key in done else "run"))
    return out


def describe_plan(selections: list[Selection]) -> str:
    width = max(len(s.stage.name) for s in selections)
    lines = [f"{'status':<7} {'stage':<{width}}  key"]
    for sel in selections:
        status = {"run": "run", "force": "force", "cached": "cached", "skip": "skip"}[sel.action]
        lines.append(f"{status:<7} {sel.stage.name:<{width}}  {sel.stage.key}")
    n_run = sum(s.action in ("run", "force") for s in selections)
    n_cached = sum(s.action == "cached" for s in selections)
    lines.append(f"{len(selections)} stages: {n_run} to run, {n_cached} cached")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the experiment


def new_sweep() -> str:
    """An id for one run or submission: its processes share it, and do not retry each other's failures."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def run_experiment(
    spec: ExperimentSpec,
    only: list[str] = (),
    force: list[str] = (),
    dry_run: bool = False,
    echo=print,
    summary: bool = True,
    sweep: str | None = None,
) -> list[dict]:
    """Run (or, with dry_run, only describe) the experiment; return the rows of results.jsonl.
    `summary=False` (a worker of `--workers`) leaves the W&B summary and the table to the caller.
    Raises StagesFailed at the end when stages failed; the others have finished by then."""
    state = process_state()
    say = echo if state.is_main_process else (lambda *a, **k: None)
    root = experiment_dir(spec)
    env = environment.resolve(spec, root, record=False)
    contents = fingerprints(spec)
    stages = plan(spec, env, contents)
    selections = select(stages, root, only, force)
    todo = [s for s in selections if s.action in ("run", "force")]
    # the dry run checks every stage, as `w2s validate` does; a run, the ones it will train
    check_runnable(spec, stages if dry_run else [s.stage for s in todo])
    if not dry_run and not env.final:  # the first to train in this folder: its decisions are the folder's
        recorded = environment.resolve(spec, root, record=True)
        if recorded != env:  # another machine recorded first, meanwhile
            stages = plan(spec, recorded, contents)
            selections = select(stages, root, only, force)
            todo = [s for s in selections if s.action in ("run", "force")]
            check_runnable(spec, [s.stage for s in todo])
        env = recorded
    if todo and not dry_run:
        environment.check_can_train(env, root)
    for note in env.notes:
        say(note)
    if (recipe := describe_recipe(spec)) is not None:
        say(recipe)
    if dry_run:
        say(describe_plan(selections))
        return []
    say(f"{spec.name}: {len(stages)} stages, {len(todo)} to train, results in {root}")
    store.prepare(root)
    if state.is_main_process:
        store.clear_replaced(root)
        store.write_plan(root, stages)
    sweep = sweep or new_sweep()
    locks = store.locks(root)

    results = ResultsFile(root, stages, spec)
    pending = [s.stage for s in todo]
    forced = {s.stage.key for s in todo if s.action == "force"}
    trained, failed, given_up = 0, [], []
    try:
        while pending:
            lease, decision = None, None
            if state.is_main_process:
                index, action, lease = _claim_next(root, locks, pending, forced, sweep, {s.key for s in failed})
                decision = (index, action)
            index, action = _agree(decision)
            if action == "wait":  # everything left is being trained by another process
                time.sleep(WAIT_SECONDS)
                continue
            stage = pending.pop(index)
            if action == "finished":  # another process finished it meanwhile
                continue
            if action == "give up":  # it failed in this sweep, or needs a stage that did
                given_up.append(stage)
                continue
            try:
                trained += 1
                say(f"[{trained}/{len(todo)}] {stage.name}  (key {stage.key})")
                start = time.perf_counter()
                run_stage(stage, spec, root, say, sweep)
                forced.discard(stage.key)
                if state.is_main_process:
                    metrics = store.read_metrics(root, stage)
                    say(f"  done in {time.perf_counter() - start:.0f}s: {headline(metrics)}")
                    results.refresh()
            except SpecError:  # bad input that the checks before the run could not see: stop, say what
                raise
            except Exception as err:
                failed.append(stage)
                say(
                    f"  failed: {type(err).__name__}: {first_line(err)}  (traceback in {root / 'failed' / stage.folder});"
                    " going on with the other stages"
                )
            finally:
                if lease is not None:
                    lease.release()
    except BaseException:  # Ctrl-C, SIGTERM, a bad spec found late: list what did finish
        if state.is_main_process:
            with contextlib.suppress(Exception):
                results.update()
        raise
    rows = results.update() if state.is_main_process else []
    if summary:
        if state.is_main_process:
            _log_summary_once(spec, root, rows, locks)
        say(format_table(rows))
    if failed or given_up:
        raise StagesFailed(_failure_message(root, failed, given_up))
    return rows


def _failure_message(root: Path, failed: list[Stage], given_up: list[Stage]) -> str:
    parts = []
    if failed:
        parts.append(
            f"{len(failed)} stage{'s' if len(failed) > 1 else ''} failed here ({failed[0].name}"
            + (", ..." if len(failed) > 1 else "")
            + ")"
        )
    if given_up:
        parts.append(
            f"{len(given_up)} not trained because they failed in another process of this sweep "
            "or need a stage that failed"
        )
    return f"{'; '.join(parts)}; finished stages are kept. `w2s status {root}` shows each error; rerun to retry them"


def _claim_next(
    root: Path, locks: Locks, pending: list[Stage], forced: set[str], sweep: str, failed_here: set[str]
) -> tuple[int | None, str, Lease | None]:
    """What to do next: (index, "run", held lock) to train pending[index]; (index, "finished") if it
    turned out finished; (index, "give up") if it failed in this sweep or needs a stage that did;
    (None, "wait") while every other pending stage waits for its supervisor or another process."""
    failed_here = failed_here | {key for key, record in store.failures(root).items() if record.get("sweep") == sweep}
    done = store.finished_keys(root)  # one listing of the stage folders per claim, not one per stage

    def doomed(stage: Stage) -> bool:
        return stage.key in failed_here or any(doomed(r) for r in stage.requires if r.key not in done)

    for i, stage in enumerate(pending):
        if stage.key not in forced and stage.key in done:
            return i, "finished", None
        if failed_here and doomed(stage):
            return i, "give up", None
        if not all(s.key in done for s in stage.requires):
            continue
        lease = store.try_lock(locks, stage)
        if lease is None:
            continue  # another process is training it
        if stage.key not in forced and finished_folder(root, stage):  # finished while we looked
            lease.release()
            return i, "finished", None
        if store.failed_in_sweep(root, stage, sweep):  # failed in another process while we looked
            lease.release()
            return i, "give up", None
        store.clear_stale(root, stage)
        return i, "run", lease
    return None, "wait", None


def _agree(value):
    """Under `accelerate launch`: every process takes the main process's decision."""
    state = process_state()
    if state.num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]


# ---------------------------------------------------------------------------------------------
# one stage


def run_stage(stage: Stage, spec: ExperimentSpec, root: Path, echo=print, sweep: str = "") -> None:
    """Run one stage and, on the main process, write its folder atomically; if it raises, keep its
    traceback and log in failed/<folder> (then raise on)."""
    writes = process_state().is_main_process
    tmp = store.temporary_folder(root, stage)
    tracker = None
    if writes:
        tmp.mkdir(parents=True)
        tracker = StageTracker(tmp, stage, spec)
    try:
        seed_everything(stage.seed)  # random-init weights must not depend on what this process ran before
        job = StageJob(stage, spec, root, tmp, writes, tracker, echo)
        with attention_kernels(stage.settings.attention):
            metrics, predictions = RUNNERS[stage.kind]().run(job)
        if writes:
            # as resolved for the run folder, and where it ran: the provenance of the report's tables
            metrics.update(mixed_precision=stage.settings.mixed_precision, **environment.provenance())
            store.write_stage(tmp, tracker.config, metrics, predictions)
            # for the W&B run's PGR: the weak and ceiling stages' metrics, None where not finished yet
            # (a transfer's ceiling can still be training in another process)
            references = (None, None)
            if tracker.run is not None:
                references = store.read_metrics(root, stage.weak), store.read_metrics(root, stage.ceiling)
            tracker.finish(metrics, predictions, *references)
            store.publish(tmp, root, stage)
            store.clear_failure(root, stage)
        process_state().wait_for_everyone()
    except BaseException as err:
        if tracker:
            tracker.abort()
        if writes and isinstance(err, Exception) and not isinstance(err, SpecError) and tmp.is_dir():
            try:
                store.record_failure(root, stage, tmp, traceback.format_exc(), sweep)
            except OSError:  # the record is a courtesy; the error itself goes on up
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# the summary


class ResultsFile:
    """results.jsonl, rewritten (atomically) as stages finish, here or in other processes. A stage
    folder's metrics.json is read once, and again only when it changed (a forced rerun): one listing
    of the stage folders per update, instead of reading every finished stage after every stage."""

    def __init__(self, root: Path, stages: list[Stage], spec: ExperimentSpec):
        self.root, self.stages, self.spec = root, [s for s in stages if s.has_predictions], spec
        self.rows: dict[str, dict] = {}  # key -> its row (w2s.result_rows.stage_row)
        self.read_as: dict[str, tuple[str, int]] = {}  # key -> (folder, metrics.json mtime) it was read from
        self.written = time.monotonic()  # of the last write (a run's first is after a refresh period)

    def update(self) -> list[dict]:
        self.written = time.monotonic()
        folders = store.stage_folders(self.root)
        for stage in self.stages:
            folder = folders.get(stage.key)
            if folder is None:
                continue
            try:
                version = (str(folder), os.stat(folder / "metrics.json").st_mtime_ns)
                if self.read_as.get(stage.key) != version:
                    config = store.stage_config(stage, self.spec)
                    self.rows[stage.key] = stage_row(config, read_json(folder / "metrics.json"))
                    self.read_as[stage.key] = version
            except (OSError, ValueError):  # not finished (or damaged): as store.finished says
                continue
        rows = link([dict(self.rows[s.key]) for s in self.stages if self.rows.get(s.key) is not None])
        write_jsonl(self.root / "results.jsonl", rows)
        return rows

    def refresh(self) -> None:
        """`update` after a stage, unless it last wrote under REFRESH_SECONDS ago: in a sweep of stages
        that take milliseconds (probes, tiny models), rewriting the file after each (about 1.5 ms a stage
        on this project's machine) is a visible share of the stage.
        The run's last update always writes it, and so does an interrupted run."""
        if time.monotonic() - self.written >= REFRESH_SECONDS:
            self.update()


def _log_summary_once(spec: ExperimentSpec, root: Path, rows: list[dict], locks: Locks) -> None:
    """The W&B summary run for these rows, unless one was already logged for exactly them. Remembered
    in a marker written after the run is logged, so a run killed in between logs it when rerun; under
    a lock, so that workers ending together log it once."""
    marker = root / ".summary-logged"
    digest = hashlib.sha256(json.dumps([spec.tracking.model_dump(), rows], sort_keys=True, default=str).encode())
    lease = locks.try_acquire("summary")
    if lease is None:  # another process is logging it
        return
    try:
        if marker.is_file() and marker.read_text() == digest.hexdigest():
            return
        log_experiment_summary(spec, rows)
        marker.write_text(digest.hexdigest())
    finally:
        lease.release()
