"""`w2s submit`: a sweep as N workers, a Slurm job array (or local processes), through submitit.

Each worker is `w2s run` on a frozen copy of the spec (as submitted, --set overrides applied:
<run>/submit/<sweep>/spec.yaml, so editing the YAML later changes nothing already queued), started
in the folder it was submitted from, as one worker of the sweep (`--sweep <id>`). Workers
claim stages exactly as `w2s run --workers` does, each stage once; the output folder must be on a
filesystem every node sees (`w2s.pipeline.locks` says what its locks need of it). With
`--gpus-per-worker` above 1 a worker runs under `accelerate launch` across its GPUs.

Time limits and preemption: submitit asks Slurm for USR2 shortly before the time limit (and Slurm
sends it on preemption where the site sets PreemptParameters=send_user_signal); `w2s run` stops at
once on it, or on SIGTERM, releasing its lock and dropping the unfinished stage, and submitit
requeues the array task (a `Worker` is checkpointable), which resumes the queue. A worker killed
outright leaves a lock that expires (`w2s.pipeline.locks`); `w2s submit` again finishes the sweep.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from w2s import environment
from w2s.jsonfiles import write_json
from w2s.pipeline import store
from w2s.spec import SpecError, read_spec, validate_spec

EXECUTORS = ("slurm", "local")


def parse_time(value: str) -> int:
    """A Slurm time limit (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if not match:
        raise SpecError(f"--time {value!r}: give a Slurm time limit: minutes, H:MM:SS or D-HH:MM:SS")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is not None:  # D-H[:M[:S]]
        seconds = days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    elif third is not None:  # H:M:S
        seconds = first * 3600 + second * 60 + third
    elif second is not None:  # M:S
        seconds = first * 60 + second
    else:  # M
        seconds = first * 60
    if seconds <= 0:
        raise SpecError(f"--time {value!r}: must be longer than zero")
    return -(-seconds // 60)


def parse_slurm_options(items: list[str]) -> dict:
    """`--slurm KEY=VALUE` items (sbatch options, with - or _), values read as YAML (8 -> int)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--slurm {item!r}: give KEY=VALUE, an sbatch option, e.g. --slurm account=lab")
        options[key.strip().lstrip("-").replace("-", "_")] = yaml.safe_load(value) if value else value
    return options


def worker_command(spec_file: Path, sweep: str, gpus: int) -> list[str]:
    """What one worker runs: `w2s run` in the sweep (each logs the W&B summary and prints the table
    if it ends last, see run._log_summary_once); across its GPUs if it has several."""
    run = ["run", str(spec_file), "--sweep", sweep]
    if gpus > 1:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(gpus),
            "--module",
            "w2s",
            *run,
        ]
    return [sys.executable, "-m", "w2s", *run]


class Worker:
    """One worker of a sweep (a job array task): runs its command where the sweep was submitted.
    Checkpointable (submitit requeues it on the time limit or preemption), since the stage folders
    are the checkpoint: the requeued worker resumes the queue."""

    def __init__(self, command: list[str], cwd: str):
        self.command, self.cwd = command, cwd

    def __call__(self, index: int) -> str:
        env = dict(os.environ, TQDM_DISABLE="1")  # progress bars make unreadable log files
        code = subprocess.call(self.command, cwd=self.cwd, env=env)
        if code:
            raise RuntimeError(f"worker {index}: `{' '.join(self.command[1:])}` exited with code {code}")
        return "finished"

    def checkpoint(self, index: int):
        import submitit

        return submitit.helpers.DelayedSubmission(self, index)


def submit(
    spec_path: str,
    overrides: list[str],
    workers: int,
    executor: str = "slurm",
    partition: str | None = None,
    gpus_per_worker: int = 0,
    time_limit: str = "24:00:00",
    slurm: list[str] = (),
    echo=print,
) -> dict:
    """Check the spec, freeze it, submit the workers; return submission.json's content."""
    import submitit

    from w2s.checks import check_runnable
    from w2s.data import fingerprints
    from w2s.plan import plan
    from w2s.runner import new_sweep

    minutes = parse_time(time_limit)
    options = parse_slurm_options(slurm)
    if executor == "local" and (options or partition):
        raise SpecError(
            "--partition and --slurm are Slurm's; --executor local takes --workers, --gpus-per-worker, --time"
        )
    if executor == "slurm" and not shutil.which("sbatch"):
        raise SpecError(
            "sbatch not found: submit from a Slurm login node, or run the workers here with --executor local"
        )
    raw = read_spec(spec_path, overrides)
    spec = validate_spec(raw, source=spec_path)
    root = store.experiment_dir(spec)
    # `auto` is the folder's, decided where its first stage trains: on a login node the keys are only
    # provisional, and plan.jsonl is left to the first worker (w2s/environment.py)
    env = environment.resolve(spec, root, record=False)
    stages = plan(spec, env, fingerprints(spec))
    check_runnable(spec, stages)  # a bad spec fails here, not in every queued worker
    if executor == "local":
        _check_local_gpus(gpus_per_worker)
    # every check is done: from here on, the submission is written

    sweep = new_sweep()
    folder = (root / "submit" / sweep).resolve()
    folder.mkdir(parents=True)
    spec_file = folder / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    store.prepare(root)
    if env.final:
        store.write_plan(root, stages)
    worker = Worker(worker_command(spec_file, sweep, gpus_per_worker), os.getcwd())

    try:
        if executor == "local":
            jobs = _submit_local(submitit, folder / "logs", worker, workers, gpus_per_worker, minutes)
            job_id = ",".join(job.job_id for job in jobs)
            describe = f"{workers} local worker processes (pids {job_id.replace(',', ', ')})"
        else:
            jobs = _submit_slurm(
                submitit, folder / "logs", worker, workers, gpus_per_worker, minutes, partition, options, spec.name
            )
            job_id = jobs[0].job_id.split("_")[0]
            tasks = f"{job_id}_0" if workers == 1 else f"{job_id}_0 .. {job_id}_{workers - 1}"
            describe = f"Slurm job array {job_id} ({workers} worker{'s' if workers > 1 else ''}: {tasks})"
    except BaseException:  # nothing was submitted: leave no trace of it
        shutil.rmtree(folder, ignore_errors=True)
        raise
    submission = {
        "sweep": sweep,
        "root": str(root),
        "stages": len(stages),
        "executor": executor,
        "job_id": job_id,
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "time_minutes": minutes,
        "describe": describe,
        "logs": str(folder / "logs"),
        "spec": str(spec_file),
        "submitted": time.time(),
    }
    write_json(folder / "submission.json", submission)
    echo(f"{spec.name}: {len(stages)} stages; sweep {sweep}")
    if env.final:
        for note in env.notes:
            echo(note)
    else:
        echo(
            f"auto settings (precision, compile) are decided by the first worker to start, on its hardware, "
            f"and recorded in {root / environment.FOLDER}"
        )
    echo(f"submitted {describe}")
    echo(f"logs:     {folder / 'logs'}")
    echo(f"progress: w2s status {root}")
    submission["jobs"] = jobs
    return submission


def _submit_slurm(
    submitit, folder: Path, worker: Worker, n: int, gpus: int, minutes: int, partition, options: dict, name: str
) -> list:
    executor = submitit.SlurmExecutor(folder=folder)
    known = submitit.SlurmExecutor._valid_parameters()
    params = {"job_name": f"w2s-{name}", "time": minutes, "nodes": 1, "ntasks_per_node": 1, "array_parallelism": n}
    if partition:
        params["partition"] = partition
    if gpus:
        params["gpus_per_node"] = gpus
    extra = {}
    for key, value in options.items():
        (params if key in known else extra)[key] = value
    if extra:
        params["additional_parameters"] = extra
    executor.update_parameters(**params)
    try:
        return executor.map_array(worker, range(n))
    except subprocess.CalledProcessError as err:  # sbatch refused: its own words say why
        message = (err.stderr or err.output or b"").decode(errors="replace").strip().splitlines()
        raise SpecError(f"sbatch refused the job: {message[-1] if message else err}") from None


def _submit_local(submitit, folder: Path, worker: Worker, n: int, gpus: int, minutes: int) -> list:
    """One local process per worker; with GPUs, worker i gets its own G of the visible devices."""
    from w2s.workers import visible_devices

    executor = submitit.LocalExecutor(folder=folder)
    devices = [int(d) for d in visible_devices() if d.isdigit()]
    jobs = []
    for i in range(n):
        mine = [devices[(i * gpus + j) % len(devices)] for j in range(gpus)] if gpus else []
        executor.update_parameters(timeout_min=minutes, gpus_per_node=gpus, visible_gpus=mine)
        jobs.append(executor.submit(worker, i))
    return jobs


def _check_local_gpus(gpus: int) -> None:
    from w2s.workers import visible_devices

    devices = [d for d in visible_devices() if d.isdigit()]
    if gpus and len(devices) < gpus:
        raise SpecError(f"--gpus-per-worker {gpus}: this machine has {len(devices)} visible CUDA devices")


def wait(submission: dict, root: Path, echo=print, poll: float = 2.0) -> None:
    """Until every worker has ended: a line whenever the counts of `w2s status` change."""
    from w2s.status import counts, describe, stage_states

    jobs, last = submission["jobs"], None
    while _alive(submission, jobs):
        now = counts(stage_states(root))
        if now != last:
            echo(f"{time.strftime('%H:%M:%S')} {now}")
            last = now
        time.sleep(poll)
    echo(describe(root, stage_states(root)))


def _alive(submission: dict, jobs: list) -> bool:
    if submission["executor"] == "local":
        return not all(job.done() for job in jobs)
    # squeue, not sacct: it needs no accounting database
    out = subprocess.run(["squeue", "-h", "-j", submission["job_id"], "-o", "%i"], capture_output=True, text=True)
    if out.returncode and "Invalid job id" not in out.stderr:  # the controller did not answer: ask again later
        return True
    return bool(out.stdout.strip())
