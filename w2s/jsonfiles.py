"""The JSON files of a run folder: written whole (atomically where readers may look meanwhile),
read tolerantly where the file is derived and a damaged copy must not stop a reading command."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

STALE_SECONDS = 600  # a temporary file this old was left by a killed writer
_ENCODER = json.JSONEncoder(default=str)  # json.dumps(..., default=str) would build one per call


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj) -> None:
    """A dict of str keys is written a key per line, each value compact: readable, and encoded by
    json's C encoder (`indent=` takes its pure-Python one, a tenth of a tiny stage's setup)."""
    if isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj):
        lines = [f"  {json.dumps(k)}: {_ENCODER.encode(v)}" for k, v in obj.items()]
        text = "{\n" + ",\n".join(lines) + "\n}"
    else:
        text = json.dumps(obj, indent=2, default=str)
    Path(path).write_text(text + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Atomic rewrite: a reader sees the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(_ENCODER.encode(r) + "\n" for r in rows))
    os.replace(tmp, path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed writer's; a live one's is ms old
        try:
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                stale.unlink()
        except OSError:
            pass


def read_jsonl(path: Path, required: set[str] = frozenset()) -> tuple[list[dict], list[int]]:
    """(the intact entries, the numbers of the damaged lines) of a JSONL file: a line that is not a
    JSON object holding `required` is damaged, as is text that is not UTF-8."""
    entries, damaged = [], []
    for number, line in enumerate(Path(path).read_bytes().decode(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not required <= entry.keys():
                raise ValueError
        except ValueError:
            damaged.append(number)
            continue
        entries.append(entry)
    return entries, damaged
