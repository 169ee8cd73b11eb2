"""`w2s submit` without Slurm: its arguments, the workers' command, and a sweep run by submitit's
local executor (tests/slurm/ submits to a real Slurm cluster)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_spec, write_spec
from w2s.errors import SpecError
from w2s.pipeline.submit import parse_slurm_options, parse_time
from w2s.pipeline.workers import worker_command

REPO = Path(__file__).resolve().parents[1]


def w2s(*args, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "w2s", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def worker_logs(root: Path) -> list[str]:
    """Every line the workers of every submission printed."""
    return [line for log in sorted(root.glob("submit/*/logs/*_log.out")) for line in log.read_text().splitlines()]


def trained(lines: list[str]) -> list[str]:
    return [line.split("] ", 1)[1].split("  (key")[0] for line in lines if line.startswith("[") and "  (key " in line]


@pytest.mark.parametrize(
    "value, minutes", [("90", 90), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440), ("1-2:30", 1590), ("0-0:0:1", 1)]
)
def test_time_limits_read_as_slurm_writes_them(value, minutes):
    assert parse_time(value) == minutes


@pytest.mark.parametrize("value", ["1h", "0", "1:2:3:4", ""])
def test_a_time_limit_slurm_would_not_read_is_refused(value):
    with pytest.raises(SpecError, match="--time"):
        parse_time(value)


def test_slurm_options_become_sbatch_parameters():
    assert parse_slurm_options(["account=lab", "--cpus-per-task=8", "exclusive=true"]) == {
        "account": "lab",
        "cpus_per_task": 8,
        "exclusive": True,
    }
    with pytest.raises(SpecError, match=r"--slurm 'account': give KEY=VALUE"):
        parse_slurm_options(["account"])


def test_a_worker_with_several_gpus_runs_under_accelerate_launch(tmp_path):
    one = worker_command(tmp_path / "spec.yaml", "S", gpus=1)
    assert one[1:] == ["-m", "w2s", "run", str(tmp_path / "spec.yaml"), "--sweep", "S"]
    four = worker_command(tmp_path / "spec.yaml", "S", gpus=4)
    assert four[1:] == [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "4",
        "--module",
        "w2s",
        "run",
        str(tmp_path / "spec.yaml"),
        "--sweep",
        "S",
    ]


def test_bad_submissions_are_one_line_and_leave_nothing(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tiny_spec(tmp_path / "runs"))
    cases = [
        (["--executor", "local", "--partition", "gpu"], "w2s: error: --partition and --slurm are Slurm's"),
        (["--executor", "local", "--time", "1h"], "w2s: error: --time '1h': give a Slurm time limit"),
        (["--gpus-per-worker", "-1"], "w2s: error: argument --gpus-per-worker: must be a whole number"),
    ]
    for args, message in cases:
        proc = w2s("submit", spec, "--workers", "2", *args)
        assert proc.returncode == 2 and proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1, (
            proc.stderr
        )
    no_slurm = w2s("submit", spec, "--workers", "2", env_extra={"PATH": os.path.dirname(sys.executable)})
    assert no_slurm.returncode == 2 and no_slurm.stderr.startswith("w2s: error: sbatch not found"), no_slurm.stderr
    assert not (tmp_path / "runs").exists()
    status = w2s("status", tmp_path)
    assert (
        status.returncode == 2
        and status.stderr
        == f"w2s: error: {tmp_path}: not an experiment folder (no plan.jsonl; "
        "`w2s run` and `w2s submit` write it into <output_dir>/<name>)\n"
    )


def test_local_executor_workers_train_each_stage_once(tmp_path):
    spec = tiny_spec(tmp_path / "runs", name="local", ladder=3)
    spec["datasets"]["n_train"] = 600  # stages of about a second, so that both workers take part
    proc = w2s("submit", write_spec(tmp_path / "local.yaml", spec), "--workers", "2", "--executor", "local", "--wait")
    root = tmp_path / "runs" / "local"
    assert proc.returncode == 0, proc.stderr
    assert "submitted 2 local worker processes (pids " in proc.stdout and f"progress: w2s status {root}" in proc.stdout
    assert f"{root}: 9 stages: 9 finished, 0 running, 0 failed, 0 waiting" in proc.stdout
    names = trained(worker_logs(root))
    assert len(names) == len(set(names)) == 9, names
    per_worker = [trained(log.read_text().splitlines()) for log in root.glob("submit/*/logs/*_log.out")]
    assert len(per_worker) == 2 and all(per_worker), per_worker
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 9
    submission = json.loads(next(root.glob("submit/*/submission.json")).read_text())
    assert submission["executor"] == "local" and submission["workers"] == 2
    assert not list((root / ".locks").iterdir())  # every lock released


def test_a_submission_freezes_its_data_paths_absolute(tmp_path):
    """A spec file's relative data path (its folder's) and a --set one (the working directory's) both
    reach the workers, who read the frozen copy in <run>/submit/<sweep>/, another folder."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    rows = [f"good film {i}\t1\nbad film {i}\t0\n" for i in range(30)]
    (folder / "data" / "train.tsv").write_text("".join(rows))
    (folder / "data" / "test.tsv").write_text("".join(rows[:10]))
    spec = tiny_spec(tmp_path / "runs", name="paths", ladder=1)
    spec["datasets"] = {
        "name": "local",
        "data_files": {"train": "data/train.tsv"},
        "column_names": ["text", "label"],
        "text_columns": ["text"],
        "label_column": "label",
    }
    write_spec(folder / "spec.yaml", spec)
    proc = subprocess.run(
        [sys.executable, "-m", "w2s", "submit", "project/spec.yaml", "--workers", "1", "--executor", "local"]
        + ["--set", "datasets.data_files.test=project/data/test.tsv", "--wait"],
        cwd=tmp_path,
        env=dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (frozen,) = (tmp_path / "runs" / "paths" / "submit").glob("*/spec.yaml")
    files = yaml.safe_load(frozen.read_text())["datasets"]["data_files"]
    assert files == {"train": str(folder / "data" / "train.tsv"), "test": str(folder / "data" / "test.tsv")}
    assert "2 stages: 2 finished" in proc.stdout
