"""results.jsonl as stages finish, and the experiment's W&B summary run once they all have.

results.jsonl is always rebuilt from the finished stage folders (never appended), so it can never
be half-written or hold a row twice; its rows are `w2s.scoring.rows`'.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

from w2s.experiment.kinds import Stage
from w2s.jsonfiles import read_json, write_jsonl
from w2s.pipeline import store
from w2s.pipeline.locks import Locks
from w2s.pipeline.tracking import log_experiment_summary, resolve_tracking
from w2s.scoring.rows import link, stage_row
from w2s.spec import ExperimentSpec

REFRESH_SECONDS = 2.0  # results.jsonl, rewritten after a stage at most this often (ResultsFile.refresh)


class ResultsFile:
    """results.jsonl, rewritten (atomically) as stages finish, here or in other processes. A stage
    folder's metrics.json is read once, and again only when it changed (a forced rerun): one listing
    of the stage folders per update, instead of reading every finished stage after every stage."""

    def __init__(self, root: Path, stages: list[Stage], spec: ExperimentSpec):
        self.root, self.stages, self.spec = root, [s for s in stages if s.has_predictions], spec
        self.rows: dict[str, dict] = {}  # key -> its row (w2s.scoring.rows.stage_row)
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
        that take milliseconds (probes, tiny models), rewriting the file after each would be a visible
        share of the stage. The run's last update always writes it, and so does an interrupted run."""
        if time.monotonic() - self.written >= REFRESH_SECONDS:
            self.update()


def log_summary_once(spec: ExperimentSpec, root: Path, rows: list[dict], locks: Locks) -> None:
    """The W&B summary run for these rows, unless one was already logged for exactly them. Remembered
    in a marker written after the run is logged, so a run killed in between logs it when rerun; under
    a lock, so that workers ending together log it once."""
    marker = root / ".summary-logged"
    tracking = dataclasses.asdict(resolve_tracking(spec))
    digest = hashlib.sha256(json.dumps([tracking, rows], sort_keys=True, default=str).encode())
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
