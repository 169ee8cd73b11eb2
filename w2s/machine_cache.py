"""Per-machine facts w2s remembers between runs (the precision probe, data file hashes), as small
JSON files in `~/.cache/w2s` (or `$W2S_CACHE_DIR`). A cache is only ever a shortcut: an unreadable
file is recomputed, and an unwritable folder (a read-only home) only means recomputing next time."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("W2S_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "w2s"
    return Path(root)


def read(name: str) -> dict | None:
    try:
        return json.loads((cache_dir() / name).read_text())
    except (OSError, ValueError):
        return None


def write(name: str, obj: dict) -> None:
    """Atomic (a reader sees the old file or the new one); a lost race only means a recomputation."""
    path = cache_dir() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(obj) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass


def measured(kind: str, machine: dict, field: str, measure: Callable[[], dict]) -> dict:
    """What `measure()` found on this machine (`machine`: what identifies it: CPU or GPU, torch
    version, ...), measured the first time and remembered in `<kind>-<hash of machine>.json`; a
    record without `field` is measured again."""
    name = f"{kind}-{hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:16]}.json"
    record = read(name)
    if record is None or field not in record:
        record = {**machine, **measure()}
        write(name, record)
    return record
