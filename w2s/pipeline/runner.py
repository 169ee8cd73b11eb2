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
stage does), `w2s.pipeline.summary` (results.jsonl and the W&B summary); here, the order of things.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import broadcast_object_list

from w2s.data.registry import local_copy_notes
from w2s.errors import SpecError, StagesFailed, first_line
from w2s.experiment import environment
from w2s.experiment.kinds import Stage
from w2s.experiment.plan import RunPlan, plan_run
from w2s.pipeline import store
from w2s.pipeline.evaluation import headline
from w2s.pipeline.locks import Lease
from w2s.pipeline.stages import RUNNERS, StageJob
from w2s.pipeline.summary import ResultsFile, log_summary_once
from w2s.pipeline.tracking import StageTracker, resolve_tracking
from w2s.scoring.rows import format_table
from w2s.spec import ExperimentSpec, describe_recipe
from w2s.training.attention import attention_kernels
from w2s.training.launch import process_state, seed_everything

WAIT_SECONDS = 2.0


# ---------------------------------------------------------------------------------------------
# what to run


@dataclass
class StageAction:
    """What a run will do with one stage of the plan."""

    stage: Stage
    action: str  # "cached" | "run" | "force" | "skip" (not selected by --only)


def stage_actions(stages: list[Stage], root: Path, only: list[str] = (), force: list[str] = ()) -> list[StageAction]:
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
            out.append(StageAction(stage, "skip"))
        elif matches(stage, force):
            out.append(StageAction(stage, "force"))
        else:
            out.append(StageAction(stage, "cached" if stage.key in done else "run"))
    return out


def to_train(actions: list[StageAction]) -> list[StageAction]:
    return [a for a in actions if a.action in ("run", "force")]


def describe_plan(actions: list[StageAction]) -> str:
    width = max(len(a.stage.name) for a in actions)
    lines = [f"{'status':<7} {'stage':<{width}}  key"]
    for a in actions:
        lines.append(f"{a.action:<7} {a.stage.name:<{width}}  {a.stage.key}")
    n_cached = sum(a.action == "cached" for a in actions)
    lines.append(f"{len(actions)} stages: {len(to_train(actions))} to run, {n_cached} cached")
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
    planned, actions = _plan(spec, only, force, dry_run)
    for line in (*planned.env.notes, *local_copy_notes(spec.datasets), describe_recipe(spec)):
        if line is not None:
            say(line)
    if dry_run:
        say(describe_plan(actions))
        return []
    root, todo = planned.root, to_train(actions)
    say(f"{spec.name}: {len(planned.stages)} stages, {len(todo)} to train, results in {root}")
    store.prepare(root)
    if state.is_main_process:
        store.clear_replaced(root)
        store.write_plan(root, planned.stages)
    results = ResultsFile(root, planned.stages, spec)
    try:
        queue = _Queue(spec, root, todo, sweep or new_sweep(), say)
        queue.work(results)
    except BaseException:  # Ctrl-C, SIGTERM, a bad spec found late: list what did finish
        if state.is_main_process:
            with contextlib.suppress(Exception):
                results.update()
        raise
    rows = results.update() if state.is_main_process else []
    if summary:
        if state.is_main_process:
            log_summary_once(spec, root, rows, store.locks(root))
        say(format_table(rows))
    if queue.failed or queue.given_up:
        raise StagesFailed(_failure_message(root, queue.failed, queue.given_up))
    return rows


def _plan(spec: ExperimentSpec, only, force, dry_run: bool) -> tuple[RunPlan, list[StageAction]]:
    """The plan and what to do with each stage, checked: a dry run checks every stage, as `w2s
    validate` does; a run, the ones it will train, in the environment it records for the folder."""
    resolve_tracking(spec)  # W&B's variables read now: a bad WANDB_MODE stops the run before anything is written
    planned = plan_run(spec)
    actions = stage_actions(planned.stages, planned.root, only, force)
    planned.check(planned.stages if dry_run else [a.stage for a in to_train(actions)])
    if dry_run:
        return planned, actions
    recorded = planned.recorded()  # the first to train in this folder: its decisions are the folder's
    if recorded.stages is not planned.stages:  # another machine recorded other values first, meanwhile
        actions = stage_actions(recorded.stages, recorded.root, only, force)
        recorded.check([a.stage for a in to_train(actions)])
    if to_train(actions):
        environment.check_can_train(recorded.env, recorded.root)
    return recorded, actions


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


class _Queue:
    """The stages this run trains, taken one at a time: each claimed under its lock once the stages it
    needs are finished, trained, or given up when it failed in this sweep."""

    def __init__(self, spec: ExperimentSpec, root: Path, todo: list[StageAction], sweep: str, say):
        self.spec, self.root, self.sweep, self.say = spec, root, sweep, say
        self.pending, self.total = [a.stage for a in todo], len(todo)
        self.forced = {a.stage.key for a in todo if a.action == "force"}
        self.locks = store.locks(root)
        self.trained, self.failed, self.given_up = 0, [], []

    def work(self, results: ResultsFile) -> None:
        main = process_state().is_main_process
        while self.pending:
            lease, decision = None, None
            if main:
                index, action, lease = self.claim_next()
                decision = (index, action)
            index, action = _agree(decision)
            if action == "wait":  # everything left is being trained by another process
                time.sleep(WAIT_SECONDS)
                continue
            stage = self.pending.pop(index)
            if action == "give up":  # it failed in this sweep, or needs a stage that did
                self.given_up.append(stage)
            elif action == "run":
                try:
                    self.train(stage, results if main else None)
                finally:
                    if lease is not None:
                        lease.release()

    def train(self, stage: Stage, results: ResultsFile | None) -> None:
        self.trained += 1
        self.say(f"[{self.trained}/{self.total}] {stage.name}  (key {stage.key})")
        start = time.perf_counter()
        try:
            run_stage(stage, self.spec, self.root, self.say, self.sweep)
            self.forced.discard(stage.key)
            if results is not None:
                metrics = store.read_metrics(self.root, stage)
                self.say(f"  done in {time.perf_counter() - start:.0f}s: {headline(metrics)}")
                results.refresh()
        except SpecError:  # bad input that the checks before the run could not see: stop, say what
            raise
        except Exception as err:
            self.failed.append(stage)
            self.say(
                f"  failed: {type(err).__name__}: {first_line(err)}  (traceback in "
                f"{self.root / 'failed' / stage.folder}); going on with the other stages"
            )

    def claim_next(self) -> tuple[int | None, str, Lease | None]:
        """What to do next: (index, "run", held lock) to train pending[index]; (index, "finished") if
        it turned out finished; (index, "give up") if it failed in this sweep or needs a stage that
        did; (None, "wait") while every other pending stage waits for its supervisor or another process."""
        root, sweep = self.root, self.sweep
        failed = {s.key for s in self.failed}
        failed |= {key for key, record in store.failures(root).items() if record.get("sweep") == sweep}
        done = store.finished_keys(root)  # one listing of the stage folders per claim, not one per stage

        def doomed(stage: Stage) -> bool:
            return stage.key in failed or any(doomed(r) for r in stage.requires if r.key not in done)

        for i, stage in enumerate(self.pending):
            if stage.key not in self.forced and stage.key in done:
                return i, "finished", None
            if failed and doomed(stage):
                return i, "give up", None
            if not all(s.key in done for s in stage.requires):
                continue
            lease = store.try_lock(self.locks, stage)
            if lease is None:
                continue  # another process is training it
            if stage.key not in self.forced and store.finished_folder(root, stage):  # finished while we looked
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
            _publish(stage, root, tmp, tracker, metrics, predictions)
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


def _publish(stage: Stage, root: Path, tmp: Path, tracker: StageTracker, metrics: dict, predictions: list) -> None:
    """Write the finished stage into its temporary folder, close its W&B run, and move it into place."""
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
