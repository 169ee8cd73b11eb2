"""`w2s submit` against a real one-node Slurm cluster (`bash tests/slurm/cluster.sh start --install`
makes it; .ci/run starts it before the tests). They run only with `python -m pytest --slurm`, and
fail, not skip, where the cluster cannot start.

The tiny 3-model sweep (9 stages) runs once locally with one process, then as 2 Slurm workers: every
stage trains once, with the local run's numbers. Then a sweep loses both workers to scancel, each in
the middle of a stage, and a resubmission finishes it, again with the local run's numbers."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_spec, write_spec
from w2s.pipeline.locks import read_lock
from w2s.pipeline.store import finished_keys

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
CLUSTER = Path(__file__).with_name("cluster.sh")
ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")  # Slurm exports it


@pytest.fixture(scope="module")
def cluster():
    proc = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=900)
    if proc.returncode:
        pytest.fail(
            f"the one-node Slurm cluster did not start (bash {CLUSTER.relative_to(REPO)} start --install, as root):\n"
            f"{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


def sweep_spec(folder: Path) -> Path:
    spec = tiny_spec(folder / "runs", name="slurm", ladder=3)
    spec["datasets"]["n_train"] = 600
    # cross-entropy at 50 ms or more a call: transfers of about 2 s on any CPU, so both workers take
    # part and a kill lands in the middle of a stage
    spec["losses"] = [{"name": "custom", "path": "tests.custom_losses:Slow", "label": "xent-slow"}]
    return write_spec(folder / "slurm.yaml", spec)


def w2s(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "w2s", *map(str, args)],
        cwd=REPO,
        env=dict(ENV, **(env or {})),
        capture_output=True,
        text=True,
        timeout=900,
    )


def rows(root: Path) -> list[dict]:
    """results.jsonl without the timings (they differ between any two runs)."""
    lines = (root / "results.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_seconds")} for line in lines]


def trained_by_log(root: Path, sweep: str | None = None) -> dict[str, list[str]]:
    """Each worker log's trained stages ("[i/n] stage  (key ...)" lines), by log file."""
    pattern = f"submit/{sweep or '*'}/logs/*_log.out"
    return {
        log.name: [
            line.split("] ", 1)[1].split("  (key")[0]
            for line in log.read_text().splitlines()
            if line.startswith("[") and "  (key " in line
        ]
        for log in sorted(root.glob(pattern))
    }


def submission(root: Path, proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(max(root.glob("submit/*/submission.json")).read_text())


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("local")
    proc = w2s("run", sweep_spec(folder))
    assert proc.returncode == 0, proc.stderr
    return rows(folder / "runs" / "slurm")


def test_two_slurm_workers_train_each_stage_once_with_the_local_numbers(cluster, local_rows, tmp_path):
    root = tmp_path / "runs" / "slurm"
    # each worker's first transfer waits for the other's (tests/custom_losses.py): both take part
    # even when a busy machine starts the second long after the first
    meet = {"W2S_TEST_MEET": str(tmp_path / "meet"), "W2S_TEST_MEET_COUNT": "2"}
    proc = w2s("submit", sweep_spec(tmp_path), "--workers", "2", "--time", "15", "--wait", env=meet)
    sub = submission(root, proc)
    job = sub["job_id"]
    assert f"submitted Slurm job array {job} (2 workers: {job}_0 .. {job}_1)" in proc.stdout
    assert f"{root}: 9 stages: 9 finished, 0 running, 0 failed, 0 waiting" in proc.stdout
    by_log = trained_by_log(root)
    assert sorted(by_log) == [f"{job}_0_0_log.out", f"{job}_1_0_log.out"]
    everything = [name for names in by_log.values() for name in names]
    assert len(everything) == len(set(everything)) == 9 and all(by_log.values()), by_log  # once each; both worked
    assert sorted(rows(root), key=lambda r: r["key"]) == sorted(local_rows, key=lambda r: r["key"])
    assert not list((root / ".locks").glob("*.lock"))


def squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True).stdout.strip()


def held_holder(root: Path, hold: Path, task: str | None = None, wait: float = 300) -> dict:
    """The lock holder (a Slurm array task, or the given one) held in the middle of a stage by the
    test loss (tests/custom_losses.py: it waits while HOLD/hold exists and writes HOLD/held-PID)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for lock in (root / ".locks").glob("*.lock"):
            found = read_lock(lock)
            holder = found[0] if found else {}
            if not holder.get("slurm_job") or (task and holder["slurm_job"] != task):
                continue
            if (hold / f"held-{holder['pid']}").exists():
                return holder
        time.sleep(0.02)
    pytest.fail(f"no worker{' ' + task if task else ''} was held in the middle of a stage")


def wait_for_a_finished_stage(root: Path, wait: float = 300) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if finished_keys(root):
            return
        time.sleep(0.05)
    pytest.fail("no stage finished in five minutes")


def cancel(task: str) -> None:
    subprocess.run(["scancel", task], check=True)
    deadline = time.monotonic() + 60
    while squeue(task) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not squeue(task), f"{task} still in the queue a minute after scancel"


def test_workers_cancelled_mid_stage_and_a_resubmission_finish_the_sweep(cluster, local_rows, tmp_path):
    spec, root, hold = sweep_spec(tmp_path), tmp_path / "runs" / "slurm", tmp_path / "hold"
    hold.mkdir()
    first = submission(root, w2s("submit", spec, "--workers", "2", "--time", "15", env={"W2S_TEST_HOLD": str(hold)}))
    job = first["job_id"]
    wait_for_a_finished_stage(root)  # so the resubmission has something to leave alone
    (hold / "hold").touch()  # from now on every transfer waits in its loss until the file is gone
    killed = [held_holder(root, hold)]
    cancel(killed[0]["slurm_job"])
    other = next(t for t in (f"{job}_0", f"{job}_1") if t != killed[0]["slurm_job"])
    killed.append(held_holder(root, hold, other))
    cancel(other)
    (hold / "hold").unlink()

    for holder in killed:  # each stopped at once, dropping its stage and its lock
        log = (root / "submit" / first["sweep"] / "logs" / f"{holder['slurm_job']}_0_log.err").read_text()
        assert "w2s: stopped by SIGTERM; finished stages are kept, rerun to resume" in log
    states = {row["stage"]: row["state"] for row in map(json.loads, w2s("status", root, "--json").stdout.splitlines())}
    assert states[killed[0]["stage"]] != "running" and states[killed[1]["stage"]] == "waiting"
    assert "running" not in states.values() and 0 < list(states.values()).count("finished") < 9, states
    assert not list((root / "stages").glob(".tmp-*")) and not list((root / ".locks").glob("*.lock"))
    before = {stage for stage, state in states.items() if state == "finished"}

    second = submission(root, w2s("submit", spec, "--workers", "2", "--time", "15", "--wait"))
    retrained = [name for names in trained_by_log(root, second["sweep"]).values() for name in names]
    assert sorted(retrained) == sorted(set(states) - before)  # exactly what was missing, once each
    assert killed[1]["stage"] in retrained
    assert sorted(rows(root), key=lambda r: r["key"]) == sorted(local_rows, key=lambda r: r["key"])
    assert len(list((root / "stages").iterdir())) == 9
    assert not list((root / ".locks").glob("*.lock"))


def test_workers_on_other_hardware_than_the_submitting_node_train_each_stage_once_and_it_finds_them(cluster, tmp_path):
    """The login node's `auto` is fp32, the workers' bf16 (W2S_FAKE_PRECISION, exported to the job only):
    the first worker decides for the folder, and status, --wait, report and a rerun on the login node
    all see the workers' stages."""
    spec, root = sweep_spec(tmp_path), tmp_path / "runs" / "slurm"
    login = dict(ENV, W2S_FAKE_PRECISION="no")

    def on_login(*args) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "w2s", *map(str, args)],
            cwd=REPO,
            env=login,
            capture_output=True,
            text=True,
            timeout=900,
        )

    proc = on_login(
        "submit", spec, "--workers", "2", "--time", "15", "--wait", "--slurm", "export=ALL,W2S_FAKE_PRECISION=bf16"
    )
    sub = submission(root, proc)
    assert "auto settings (precision, compile) are decided by the first worker to start" in proc.stdout
    assert f"{root}: 9 stages: 9 finished, 0 running, 0 failed, 0 waiting" in proc.stdout  # --wait's last word
    everything = [name for names in trained_by_log(root, sub["sweep"]).values() for name in names]
    assert len(everything) == len(set(everything)) == 9, everything
    assert json.loads((root / "environment" / "mixed_precision.json").read_text())["value"] == "bf16"
    assert {json.loads(p.read_text())["mixed_precision"] for p in (root / "stages").glob("*/metrics.json")} == {"bf16"}

    status = on_login("status", root)
    assert f"{root}: 9 stages: 9 finished, 0 running, 0 failed, 0 waiting" in status.stdout
    assert "mixed_precision: bf16 (W2S_FAKE_PRECISION=bf16" in status.stdout
    report = on_login("report", root, "--out", tmp_path / "report")
    assert report.returncode == 0 and "precision: bf16 (9 stages)" in report.stdout, report.stdout + report.stderr
    rerun = on_login("run", spec)
    assert rerun.returncode == 0 and "9 stages, 0 to train" in rerun.stdout, rerun.stdout + rerun.stderr
    assert len(list((root / "stages").iterdir())) == 9  # nothing trained twice, nothing trained on the login node


def test_the_cluster_script_leaves_a_slurmctld_it_did_not_start_alone(cluster, tmp_path):
    """Pointed at a configuration path of its own (SLURM_CONF), the script sees the running test
    cluster's slurmctld as another Slurm's: it refuses in one line and writes nothing."""
    conf = tmp_path / "etc" / "slurm.conf"
    env = dict(os.environ, SLURM_CONF=str(conf))
    for action in ("start", "stop"):
        proc = subprocess.run(["bash", str(CLUSTER), action], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert proc.stderr.strip() == (
            f"slurm: a slurmctld runs that this script did not start (no {conf} of its own); it leaves it alone; "
            "nothing changed"
        )
    assert not (tmp_path / "etc").exists()
    assert subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, timeout=60).returncode == 0
