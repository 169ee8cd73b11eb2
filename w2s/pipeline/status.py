"""`w2s status RUN_DIR`: where a run or submission stands, read from its folder alone.

Every stage of plan.jsonl (written by the latest `w2s run` or `w2s submit`) is one of
- finished: its stage folder has metrics.json;
- running: a process holds its lock (who, since when, its last heartbeat);
- failed: its last try raised (failed/<folder>: the error's last line, the traceback);
- waiting: ready to train, or waiting for the stages it needs.
A lock whose holder is gone (killed on this machine) or silent past the expiry is shown as such:
the next process that looks takes it over.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from w2s.errors import SpecError
from w2s.experiment import environment
from w2s.jsonfiles import read_json, read_jsonl
from w2s.pipeline import store
from w2s.pipeline.locks import expiry_seconds, holder_gone, read_lock

STATES = ("finished", "running", "failed", "waiting")


def stage_states(root: Path) -> list[dict]:
    """One row per stage of the plan: stage, key, state, and what explains it (tidy: pandas reads it)."""
    plan_file = root / store.PLAN_FILE
    if not plan_file.is_file():
        if latest_submission(root):  # submitted; the first worker writes the plan (w2s/experiment/environment.py)
            return []
        raise SpecError(
            f"{root}: not an experiment folder (no {store.PLAN_FILE}; `w2s run` and `w2s submit` "
            "write it into <output_dir>/<name>)"
        )
    plan = _read_plan(plan_file)
    finished = store.finished_keys(root)
    failures, locks = store.failures(root), store.locks(root)
    names = {p["key"]: p["stage"] for p in plan}
    now, expiry = time.time(), expiry_seconds()
    rows = []
    for p in plan:
        row = {"stage": p["stage"], "key": p["key"]}
        found = None if p["key"] in finished else read_lock(locks.path(p["key"]))
        if p["key"] in finished:
            row["state"] = "finished"
        elif found is not None:
            row.update(_running(*found, now, expiry))
        elif p["key"] in failures:
            row.update(_failed(failures[p["key"]]))
        else:
            missing = [k for k in p["requires"] if k not in finished]
            row.update(state="waiting", needs=[names.get(k, k) for k in missing])
        rows.append(row)
    return rows


def _running(holder: dict, stat: tuple, now: float, expiry: float) -> dict:
    """Who holds a stage's lock, since when, its last heartbeat, and whether it looks gone."""
    row = {"state": "running", **{k: holder.get(k) for k in ("host", "pid", "slurm_job", "since")}}
    row["heartbeat_age"] = round(now - stat[2] / 1e9, 1)
    if holder_gone(holder):
        row["note"] = "its process is gone: the next worker to look takes the stage over"
    elif row["heartbeat_age"] > expiry:
        row["note"] = f"no heartbeat for over {expiry:.0f} s: taken over once a worker has watched it that long"
    return row


def _failed(record: dict) -> dict:
    """A recorded failure: the error's last line, where and when, and its traceback's file."""
    row = {"state": "failed", **{k: record.get(k) for k in ("error", "host", "slurm_job", "time")}}
    return {**row, "traceback": str(Path(record["folder"]) / "traceback.txt")}


def _read_plan(path: Path) -> list[dict]:
    """plan.jsonl's stages. It is derived (every `w2s run` rewrites it): a damaged line is one warning
    on stderr, and the intact stages are shown."""
    plan, damaged = read_jsonl(path, {"stage", "key", "requires"})
    if damaged:
        lines = ", ".join(map(str, damaged[:5])) + (" ..." if len(damaged) > 5 else "")
        print(
            f"w2s: warning: {path}: {len(damaged)} damaged line{'s' if len(damaged) > 1 else ''} ({lines}) left "
            "out; `w2s run` rewrites the file",
            file=sys.stderr,
        )
    return plan


def describe(root: Path, rows: list[dict], limit: int = 20) -> str:
    """The rows as a report: counts, then the running, failed and waiting stages."""
    submission = latest_submission(root)
    if rows or not submission:
        lines = [f"{root}: {len(rows)} stages: {counts(rows)}"]
    else:
        lines = [
            f"{root}: {submission.get('stages', '?')} stages submitted; no worker has started yet (the first "
            "to start decides `auto` and writes the plan)"
        ]
    lines += environment.describe(root)
    for state in ("running", "failed", "waiting"):
        chosen = [r for r in rows if r["state"] == state]
        if chosen:
            lines.append(f"{state}:")
        for row in chosen[:limit]:
            lines.append(f"  {row['stage']}  {_explain(row)}")
        if len(chosen) > limit:
            lines.append(f"  ... and {len(chosen) - limit} more")
    if submission:
        lines.append(
            f"last submission: {submission['describe']} (sweep {submission['sweep']}), logs in {submission['logs']}"
        )
    return "\n".join(lines)


def counts(rows: list[dict]) -> str:
    """E.g. "5 finished, 1 running, 0 failed, 3 waiting"."""
    return ", ".join(f"{sum(r['state'] == state for r in rows)} {state}" for state in STATES)


def _explain(row: dict) -> str:
    if row["state"] == "running":
        job = f" (Slurm job {row['slurm_job']})" if row.get("slurm_job") else ""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["since"])) if row.get("since") else "?"
        text = f"{row['host']} pid {row['pid']}{job}, since {since}, heartbeat {row['heartbeat_age']:.0f} s ago"
        return text + (f"; {row['note']}" if row.get("note") else "")
    if row["state"] == "failed":
        return f"{row['error']}  ({row['traceback']})"
    if row["needs"]:
        return "needs " + ", ".join(row["needs"])
    return "ready"


def latest_submission(root: Path) -> dict | None:
    """submission.json of the newest `w2s submit` into this folder."""
    found = sorted((root / "submit").glob("*/submission.json"))
    return read_json(found[-1]) if found else None
