"""Reading an offline W&B run folder back: what `wandb sync` would upload (name, group, job type,
tags, config, summary, artifacts). For the tests and the fault soak, which check what w2s logged
without a W&B server; wandb itself ships no Python reader for its `.wandb` transaction log.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_BLOCK = 32768
_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)


def _records(path: Path):
    """The protobuf records of a `.wandb` file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if not data.startswith(_HEADER):
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, pending = len(_HEADER), b""
    while pos + 7 <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < 7:  # too little room for a header: the block is padded
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def read_offline_run(run_dir: Path) -> dict:
    """Project, entity, name, group, job type, tags, config, final summary and logged artifacts of an
    offline run folder."""
    run_dir = Path(run_dir)
    out = {
        "project": None,
        "entity": None,
        "name": None,
        "group": None,
        "job_type": None,
        "tags": [],
        "config": {},
        "summary": {},
        "artifacts": [],
        "exited": False,
    }

    def update(target: dict, items) -> None:
        for item in items:
            keys = list(item.nested_key) or [item.key]
            node = target
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = json.loads(item.value_json)

    for record in _records(next(run_dir.glob("*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(name=run.display_name, group=run.run_group, job_type=run.job_type, tags=list(run.tags))
            out.update(project=run.project, entity=run.entity)
            update(out["config"], run.config.update)
            update(out["summary"], run.summary.update)
        elif kind == "config":
            update(out["config"], record.config.update)
        elif kind == "summary":
            update(out["summary"], record.summary.update)
        elif kind == "artifact":
            out["artifacts"].append({"name": record.artifact.name, "type": record.artifact.type})
        elif kind == "exit":  # W&B's service writes the file in the background: complete only from here
            out["exited"] = True
    out["config"] = {
        k: v.get("value", v) if isinstance(v, dict) and set(v) <= {"value", "desc"} else v
        for k, v in out["config"].items()
    }
    return out
