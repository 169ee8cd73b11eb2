"""Workers: `w2s run SPEC --workers N` starts N processes here that share one experiment's stage
queue; `w2s submit` (w2s/pipeline/submit.py) starts the same worker command as a Slurm job array.

A sweep of small models leaves a modern GPU mostly idle; several stages on it at once keep it busy.
Each worker is a `w2s run` of the same spec, so it claims stages exactly as separate `w2s run`
processes do (a lock per stage, dependencies first): every stage is trained once, by whichever
worker gets to it, with the numbers one worker would get. Worker i sees CUDA device i mod the number
of visible devices (several workers per device are allowed: `--workers 8` on 2 GPUs puts 4 on
each). On a machine without CUDA the workers share the CPU: correct, not faster.

When every worker has finished, a last pass in this process (of the same sweep) finds every stage
cached or failed, writes results.jsonl, logs the W&B summary and prints the table, as `w2s run` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path


def visible_devices() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES names them; [] without CUDA."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [d for d in named.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_command(
    spec: str | Path, sweep: str, overrides: list[str] = (), only: list[str] = (), gpus: int = 0, summary: bool = True
) -> list[str]:
    """`w2s run` as one worker of a sweep, for `--workers` and `w2s submit` alike: the sweep id keeps
    the workers from retrying each other's failed stages; across its GPUs under `accelerate launch`
    when it has several. `summary=False` (`--workers`): the W&B summary and the table are the starting
    process's last pass; otherwise whichever worker ends last logs them."""
    run = ["run", str(spec), "--sweep", sweep, *([] if summary else ["--worker"])]
    for value in overrides:
        run += ["--set", value]
    for pattern in only:
        run += ["--only", pattern]
    if gpus > 1:
        launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus), "--module", "w2s"]
        return [sys.executable, *launch, *run]
    return [sys.executable, "-m", "w2s", *run]


def run_workers(spec: str, overrides: list[str], only: list[str], n: int, sweep: str, echo=print) -> list[int]:
    """Start `n` workers on the spec, prefix their output lines with the worker, wait for all; return
    their exit codes."""
    devices = visible_devices()
    echo(f"{n} workers" + (f" on CUDA devices {', '.join(devices)}" if devices else " on the CPU"))
    procs, pumps = [], []
    for i in range(n):
        env = dict(os.environ, TQDM_DISABLE="1")  # progress bars of several processes would garble
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[i % len(devices)]
        proc = subprocess.Popen(
            worker_command(spec, sweep, overrides, only, summary=False),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        procs.append(proc)
        # each stream on its own, so that warnings on stderr never land inside a line of stdout
        for stream, say in ((proc.stdout, echo), (proc.stderr, _to_stderr)):
            pump = threading.Thread(target=_forward, args=(stream, f"[worker {i}] ", say), daemon=True)
            pump.start()
            pumps.append(pump)
    try:
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        raise
    for pump in pumps:
        pump.join()
    return codes


_ONE_LINE_AT_A_TIME = threading.Lock()  # print() writes a line and its newline separately


def _forward(stream, prefix: str, echo) -> None:
    for line in stream:
        with _ONE_LINE_AT_A_TIME:
            echo(prefix + line.rstrip("\n"))


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
