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
import time
from pathlib import Path

import yaml

from w2s.errors import SpecError
from w2s.experiment import environment
from w2s.jsonfiles import write_json
from w2s.pipeline import store
from w2s.pipeline.workers import visible_devices, worker_command
from w2s.spec.loading import data_paths_from, read_spec, validate_spec

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
    from w2s.experiment.plan import plan_run
    from w2s.pipeline.runner import new_sweep

    minutes, options = parse_time(time_limit), parse_slurm_options(slurm)
    _check_executor(executor, options, partition)
    raw = read_spec(spec_path, overrides)
    data_paths_from(raw, Path.cwd())  # `--set` paths too: the frozen copy lives in another folder
    spec = validate_spec(raw, source=spec_path)
    # `auto` is the folder's, decided where its first stage trains: on a login node the keys are only
    # provisional, and plan.jsonl is left to the first worker (w2s/experiment/environment.py)
    planned = plan_run(spec)
    planned.check()  # a bad spec fails here, not in every queued worker
    if executor == "local":
        _check_local_gpus(gpus_per_worker)
    # every check is done: from here on, the submission is written

    sweep = new_sweep()
    folder = _freeze(planned, raw, sweep)
    worker = Worker(worker_command(folder / "spec.yaml", sweep, gpus=gpus_per_worker), os.getcwd())
    try:
        jobs, job_id, describe = _launch(
            executor, folder / "logs", worker, workers, gpus_per_worker, minutes, partition, options, spec.name
        )
    except BaseException:  # nothing was submitted: leave no trace of it
        shutil.rmtree(folder, ignore_errors=True)
        raise
    submission = {
        "sweep": sweep,
        "root": str(planned.root),
        "stages": len(planned.stages),
        "executor": executor,
        "job_id": job_id,
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "time_minutes": minutes,
        "describe": describe,
        "logs": str(folder / "logs"),
        "spec": str(folder / "spec.yaml"),
        "submitted": time.time(),
    }
    write_json(folder / "submission.json", submission)
    _tell(submission, spec.name, planned.env, echo)
    return {**submission, "jobs": jobs}


def _freeze(planned, raw: dict, sweep: str) -> Path:
    """The submission's folder, <run>/submit/<sweep>/, with the spec as submitted (--set overrides
    applied; editing the YAML later changes nothing queued); the run folder prepared, and its plan
    written where `auto` is recorded already (else the first worker writes it)."""
    folder = (planned.root / "submit" / sweep).resolve()
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    store.prepare(planned.root)
    if planned.env.final:
        store.write_plan(planned.root, planned.stages)
    return folder


def _check_executor(executor: str, options: dict, partition: str | None) -> None:
    if executor == "local" and (options or partition):
        raise SpecError(
            "--partition and --slurm are Slurm's; --executor local takes --workers, --gpus-per-worker, --time"
        )
    if executor == "slurm" and not shutil.which("sbatch"):
        raise SpecError(
            "sbatch not found: submit from a Slurm login node, or run the workers here with --executor local"
        )


def _launch(executor: str, logs: Path, worker: Worker, n: int, gpus: int, minutes: int, partition, options, name):
    """(jobs, job id, a line describing them): `n` workers as local processes or a Slurm job array."""
    import submitit

    if executor == "local":
        jobs = _submit_local(submitit, logs, worker, n, gpus, minutes)
        job_id = ",".join(job.job_id for job in jobs)
        return jobs, job_id, f"{n} local worker processes (pids {job_id.replace(',', ', ')})"
    jobs = _submit_slurm(submitit, logs, worker, n, gpus, minutes, partition, options, name)
    job_id = jobs[0].job_id.split("_")[0]
    tasks = f"{job_id}_0" if n == 1 else f"{job_id}_0 .. {job_id}_{n - 1}"
    return jobs, job_id, f"Slurm job array {job_id} ({n} worker{'s' if n > 1 else ''}: {tasks})"


def _tell(submission: dict, name: str, env, echo) -> None:
    """What was submitted, where its logs are, and how to follow it."""
    echo(f"{name}: {submission['stages']} stages; sweep {submission['sweep']}")
    if env.final:
        for note in env.notes:
            echo(note)
    else:
        echo(
            f"auto settings (precision, compile) are decided by the first worker to start, on its hardware, "
            f"and recorded in {Path(submission['root']) / environment.FOLDER}"
        )
    echo(f"submitted {submission['describe']}")
    echo(f"logs:     {submission['logs']}")
    echo(f"progress: w2s status {submission['root']}")


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
    executor = submitit.LocalExecutor(folder=folder)
    devices = [int(d) for d in visible_devices() if d.isdigit()]
    jobs = []
    for i in range(n):
        mine = [devices[(i * gpus + j) % len(devices)] for j in range(gpus)] if gpus else []
        executor.update_parameters(timeout_min=minutes, gpus_per_node=gpus, visible_gpus=mine)
        jobs.append(executor.submit(worker, i))
    return jobs


def _check_local_gpus(gpus: int) -> None:
    devices = [d for d in visible_devices() if d.isdigit()]
    if gpus and len(devices) < gpus:
        raise SpecError(f"--gpus-per-worker {gpus}: this machine has {len(devices)} visible CUDA devices")


def wait(submission: dict, root: Path, echo=print, poll: float = 2.0) -> None:
    """Until every worker has ended: a line whenever the counts of `w2s status` change."""
    from w2s.pipeline.status import counts, describe, stage_states

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
