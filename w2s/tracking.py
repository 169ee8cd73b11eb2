"""Tracking: every stage writes its step log locally (JSONL), whatever the W&B mode."""

from __future__ import annotations

import json
from pathlib import Path


class StageTracker:
    """Receives a stage's training rows and final metrics; only the main process makes one."""

    def __init__(self, folder: Path, stage, spec):
        self.folder = folder
        self.stage = stage
        self.spec = spec
        self._log = open(folder / "log.jsonl", "w")

    def log(self, row: dict) -> None:
        self._log.write(json.dumps(row) + "\n")
        self._log.flush()

    def finish(self, metrics: dict, predictions: list[dict]) -> None:
        self._log.close()

    def abort(self) -> None:
        self._log.close()
