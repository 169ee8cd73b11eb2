"""A stage that raises is recorded (traceback in failed/<folder>) and the others go on; stages that
need it wait; `w2s status` says which and why; a rerun picks the failed ones up again. One sweep's
processes (`--workers`) try a failing stage once between them."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import tiny_spec, write_spec

REPO = Path(__file__).resolve().parents[1]
BOOM = {"name": "custom", "path": "tests.custom_losses:Boom", "label": "boom"}


def w2s(*args, boom: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    env.pop("W2S_TEST_BOOM", None)
    if boom:
        env["W2S_TEST_BOOM"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "w2s", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def boom_spec(tmp_path: Path) -> Path:
    spec = tiny_spec(tmp_path / "runs", name="boom", ladder=3, bootstrap=[["tiny-16", "tiny-24", "tiny-32"]])
    spec["losses"] = [{"name": "xent"}, BOOM]
    return write_spec(tmp_path / "boom.yaml", spec)


def trained(out: str) -> list[str]:
    """The stages a run's output says it trained (worker prefixes removed)."""
    names = []
    for line in out.splitlines():
        line = line.split("] ", 1)[1] if line.startswith("[worker ") else line
        if line.startswith("[") and "  (key " in line:
            names.append(line.split("] ", 1)[1].split("  (key")[0])
    return names


def states(root: Path) -> dict[str, dict]:
    proc = w2s("status", root, "--json", boom=False)
    assert proc.returncode == 0, proc.stderr
    return {row["stage"]: row for row in map(json.loads, proc.stdout.splitlines())}


def test_a_failing_stage_is_recorded_the_others_finish_and_a_rerun_retries_it(tmp_path):
    spec_path, root = boom_spec(tmp_path), tmp_path / "runs" / "boom"
    proc = w2s("run", spec_path, boom=True)
    assert proc.returncode == 1, proc.stderr
    rows = states(root)
    boom_transfers = sorted(name for name in rows if name.startswith("transfer/") and "/boom/" in name)
    chain = "bootstrap/synthetic/tiny-16->tiny-24->tiny-32/boom/s0"
    assert len(rows) == 17 and len(boom_transfers) == 6  # 3 ground truth, 6 pairs x 2 losses, 2 chains
    error = proc.stderr.strip().splitlines()
    assert error == [
        f"w2s: 6 stages failed here ({boom_transfers[0]}, ...); 1 not trained because they failed in "
        "another process of this sweep or need a stage that failed; finished stages are kept. "
        f"`w2s status {root}` shows each error; rerun to retry them"
    ]
    assert sorted(n for n in trained(proc.stdout) if "boom" in n) == boom_transfers  # each tried once
    assert proc.stdout.count("failed: RuntimeError: boom: the loss diverged") == 6

    assert {name for name, row in rows.items() if row["state"] == "failed"} == set(boom_transfers)
    assert {name for name, row in rows.items() if row["state"] == "finished"} == {
        name for name in rows if "boom" not in name
    }  # ground truth, xent transfers, the xent chain
    assert rows[chain]["state"] == "waiting" and rows[chain]["needs"] == ["transfer/synthetic/tiny-16->tiny-24/boom/s0"]
    failed = rows[boom_transfers[0]]
    assert failed["error"] == "RuntimeError: boom: the loss diverged"
    traceback = Path(failed["traceback"]).read_text()
    assert traceback.startswith("Traceback") and "tests/custom_losses.py" in traceback
    assert (Path(failed["traceback"]).parent / "log.jsonl").is_file()  # what it logged before failing
    text = w2s("status", root, boom=False).stdout
    assert text.startswith(f"{root}: 17 stages: 10 finished, 0 running, 6 failed, 1 waiting\n")
    assert f"  {boom_transfers[0]}  RuntimeError: boom: the loss diverged  ({failed['traceback']})" in text
    assert f"  {chain}  needs transfer/synthetic/tiny-16->tiny-24/boom/s0" in text
    assert len((root / "results.jsonl").read_text().splitlines()) == 10

    rerun = w2s("run", spec_path, boom=False)  # the loss fixed: the rerun trains exactly what is missing
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(trained(rerun.stdout)) == sorted(boom_transfers + [chain])
    assert {row["state"] for row in states(root).values()} == {"finished"}
    assert not list((root / "failed").iterdir())


def test_workers_of_one_sweep_try_a_failing_stage_once_between_them(tmp_path):
    spec_path, root = boom_spec(tmp_path), tmp_path / "runs" / "boom"
    proc = w2s("run", spec_path, "--workers", "2", boom=True)
    assert proc.returncode == 1, proc.stderr
    names = trained(proc.stdout)
    assert len(names) == len(set(names)) == 16, names  # all but the chain that needs a failed stage, once
    assert proc.stdout.count("failed: RuntimeError: boom") == 6
    assert "not trained because" in proc.stderr.splitlines()[-1]
    assert sum(row["state"] == "failed" for row in states(root).values()) == 6
    assert proc.stdout.count("\nkind ") == 1  # the last pass printed the table of what finished


def test_submitted_workers_record_failures_and_wait_ends_with_one_line(tmp_path):
    spec = tiny_spec(tmp_path / "runs", name="boom")
    spec["losses"] = [{"name": "xent"}, BOOM]
    root = tmp_path / "runs" / "boom"
    proc = w2s(
        "submit", write_spec(tmp_path / "boom.yaml", spec), "--workers", "2", "--executor", "local", "--wait", boom=True
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == "w2s: the workers ended with 3 stages unfinished (above: which, and why)"
    assert f"{root}: 8 stages: 5 finished, 0 running, 3 failed, 0 waiting" in proc.stdout
    logs = "".join(log.read_text() for log in root.glob("submit/*/logs/*_log.out"))
    assert logs.count("failed: RuntimeError: boom: the loss diverged") == 3  # once each, between the two workers


def test_a_stage_that_fails_in_another_process_while_this_one_looks_is_not_tried_again(tmp_path, monkeypatch):
    """The race of two workers: this one lists the sweep's failures (none yet), the other records its
    failure and releases the lock, then this one takes the lock: it must give the stage up."""
    from w2s.experiment.plan import plan_run
    from w2s.pipeline import runner as run_mod
    from w2s.pipeline import store
    from w2s.spec import validate_spec

    spec = validate_spec(tiny_spec(tmp_path / "runs", name="race", ladder=1))
    stage = plan_run(spec).stages[0]
    root = tmp_path / "runs" / "race"
    store.prepare(root)
    tmp = store.temporary_folder(root, stage)
    tmp.mkdir(parents=True)
    store.record_failure(root, stage, tmp, "Traceback ...\nRuntimeError: boom", "sweep-1")  # the other worker
    monkeypatch.setattr(store, "failures", lambda root: {})  # this worker listed them before that

    def queue(sweep):
        return run_mod._Queue(spec, root, [run_mod.StageAction(stage, "run")], sweep, lambda *a: None)

    assert queue("sweep-1").claim_next() == (0, "give up", None)
    assert not list((root / ".locks").glob("*.lock"))  # the lock it took to look is released
    index, action, lease = queue("sweep-2").claim_next()  # a later sweep retries
    assert (index, action) == (0, "run")
    lease.release()
