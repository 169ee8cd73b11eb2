"""Sweeps as a cached stage graph: counts, caching, keys, crash safety, concurrency."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import tiny_spec, write_spec
from w2s.experiment.plan import plan_run
from w2s.pipeline.runner import run_experiment, stage_actions
from w2s.spec import validate_spec

REPO = Path(__file__).resolve().parents[1]


def run(spec_dict: dict, **kw) -> list[str]:
    """Run in-process; return the names of the stages that were trained."""
    said: list[str] = []
    run_experiment(validate_spec(spec_dict), echo=said.append, **kw)
    return [line.split("] ", 1)[1].split("  (key")[0] for line in said if line.startswith("[")]


def grid(tmp_path, **extra) -> dict:
    return tiny_spec(tmp_path, name="grid", ladder=3, losses=("xent", "logconf"), seeds=(0, 1), **extra)


def finished_stage_folders(root: Path) -> list[str]:
    """Published stage folders (a `.tmp-*` folder can hold metrics.json for a moment before its rename)."""
    return sorted(
        p.name for p in (root / "stages").iterdir() if not p.name.startswith(".") and (p / "metrics.json").is_file()
    )


def test_grid_trains_each_stage_once_then_reruns_nothing(tmp_path):
    spec = grid(tmp_path)
    stages = plan_run(validate_spec(spec)).stages
    kinds = [s.kind for s in stages]
    assert kinds.count("ground_truth") == 3 * 2 and kinds.count("transfer") == 6 * 2 * 2

    trained = run(spec)
    assert len(trained) == len(set(trained)) == 30
    root = tmp_path / "grid"
    assert len(finished_stage_folders(root)) == 30
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and len({r["key"] for r in rows}) == 30

    def snapshot() -> dict:  # stages/ and everything in it (temporary folders too), each with its mtime
        top = root / "stages"
        return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in (top, *top.rglob("*"))}

    before = snapshot()
    said: list[str] = []
    again = run_experiment(validate_spec(spec), echo=said.append)
    assert not [line for line in said if line.startswith("[")]  # no stage started training
    assert any(line.startswith("grid: 30 stages, 0 to train") for line in said), said
    assert snapshot() == before  # no folder added or rewritten: nothing was trained
    assert again == rows
    assert [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()] == rows


def test_dry_run_lists_every_stage_and_writes_nothing(tmp_path):
    said = []
    run_experiment(validate_spec(grid(tmp_path)), dry_run=True, echo=said.append)
    text = "\n".join(said)
    assert "30 stages: 30 to run, 0 cached" in text
    assert "run     transfer/synthetic/tiny-16->tiny-32/logconf/s1" in text
    assert not (tmp_path / "grid").exists()


def test_changing_one_models_lr_reruns_exactly_its_dependents(tmp_path):
    spec = grid(tmp_path)
    run(spec)
    spec["models"][1]["lr"] = 5e-4  # tiny-24
    actions = stage_actions(plan_run(validate_spec(spec)).stages, tmp_path / "grid")
    to_run = sorted(a.stage.name for a in actions if a.action == "run")
    expected = sorted(
        [f"ground_truth/synthetic/tiny-24/s{seed}" for seed in (0, 1)]
        + [
            f"transfer/synthetic/{pair}/{loss}/s{seed}"
            for seed in (0, 1)
            for loss in ("xent", "logconf")
            for pair in ("tiny-16->tiny-24", "tiny-24->tiny-24", "tiny-24->tiny-32")
        ]
    )
    assert to_run == expected
    assert sorted(run(spec)) == expected


def test_keys_ignore_paths_tracking_and_per_device_batch(tmp_path):
    keys = lambda spec: [s.key for s in plan_run(validate_spec(spec)).stages]  # noqa: E731
    base = keys(grid(tmp_path))
    moved = grid(tmp_path / "elsewhere", tracking={"mode": "offline", "project": "other"})
    moved["train"]["minibatch_size"] = 4  # same effective batch of 16
    assert keys(moved) == base
    changed = grid(tmp_path)
    changed["train"]["batch_size"] = 8
    assert set(keys(changed)).isdisjoint(base)


def test_only_and_force_select_stages(tmp_path):
    spec = grid(tmp_path)
    trained = run(spec, only=["transfer/*tiny-16->tiny-24/logconf/s0"])
    assert trained == ["ground_truth/synthetic/tiny-16/s0", "transfer/synthetic/tiny-16->tiny-24/logconf/s0"]
    trained = run(spec, only=["ground_truth/*"], force=["ground_truth/*/tiny-16/s0"])
    assert sorted(trained) == sorted(
        f"ground_truth/synthetic/{m}/s{s}" for m in ("tiny-16", "tiny-24", "tiny-32") for s in (0, 1)
    )


def test_bootstrap_and_strong_to_strong_reuse_existing_stages(tmp_path):
    spec = tiny_spec(
        tmp_path,
        name="boot",
        ladder=3,
        pairs=[["tiny-16", "tiny-24"]],
        bootstrap=[["tiny-16", "tiny-24", "tiny-32"]],
        strong_to_strong_iters=1,
    )
    stages = plan_run(validate_spec(spec)).stages
    names = [s.name for s in stages]
    assert names.count("transfer/synthetic/tiny-16->tiny-24/xent/s0") == 1  # shared by the pair and the chain
    assert "bootstrap/synthetic/tiny-16->tiny-24->tiny-32/xent/s0" in names
    assert "transfer/synthetic/tiny-16->tiny-32/xent/s0" in names  # the direct baseline
    assert "strong_to_strong/synthetic/tiny-16->tiny-24->tiny-24/xent/s0" in names
    boot = next(s for s in stages if s.kind == "bootstrap")
    assert boot.supervisor.name == "transfer/synthetic/tiny-16->tiny-24/xent/s0"
    assert boot.weak.name == "ground_truth/synthetic/tiny-16/s0" and boot.ceiling.model.display == "tiny-32"
    rows = run_and_rows(spec, tmp_path / "boot")
    chain = next(r for r in rows if r["kind"] == "bootstrap")
    assert chain["weak_model"] == "tiny-16" and chain["chain"] == "tiny-16->tiny-24->tiny-32"


def run_and_rows(spec, root):
    run(spec)
    return [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# separate processes: SIGKILL mid-stage, and two runs side by side


def w2s_process(spec_path: Path, *args) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")  # two processes share the cores
    return subprocess.Popen(
        [sys.executable, "-m", "w2s", "run", str(spec_path), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def slow_spec(out: Path, name: str) -> dict:
    spec = tiny_spec(out, name=name, pairs=[["tiny-16", "tiny-24"]])
    spec["datasets"]["n_train"] = 600
    spec["train"]["epochs"] = 3
    return spec


def test_sigkill_mid_stage_then_rerun_matches_an_uninterrupted_run(tmp_path):
    spec_path = write_spec(tmp_path / "spec.yaml", slow_spec(tmp_path / "killed", "exp"))
    proc = w2s_process(spec_path)
    stages_dir = tmp_path / "killed" / "exp" / "stages"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the second stage is half written
        partial = [
            p
            for p in stages_dir.glob(".tmp-*")
            if (p / "log.jsonl").is_file() and (p / "log.jsonl").stat().st_size and not (p / "metrics.json").exists()
        ]
        if partial and finished_stage_folders(stages_dir.parent):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial, "the run never reached a half-written stage"
    assert len(finished_stage_folders(stages_dir.parent)) == 1

    rerun = w2s_process(spec_path)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert "[1/2]" in out and "[3/3]" not in out  # only the two unfinished stages were trained
    assert not list(stages_dir.glob(".*"))  # no partial stage folder remains

    # the uninterrupted run under the same conditions (one thread: thread count changes float sums)
    clean = w2s_process(write_spec(tmp_path / "clean.yaml", slow_spec(tmp_path / "clean", "exp")))
    assert clean.wait(timeout=600) == 0
    killed_rows = (tmp_path / "killed" / "exp" / "results.jsonl").read_text().splitlines()
    clean_rows = (tmp_path / "clean" / "exp" / "results.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert strip(killed_rows) == strip(clean_rows)


def test_two_processes_on_one_spec_train_each_stage_once(tmp_path):
    spec = grid(tmp_path)
    spec["seeds"] = [0]
    spec_path = write_spec(tmp_path / "spec.yaml", spec)
    procs = [w2s_process(spec_path) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [
        line.split("] ", 1)[1].split("  (key")[0] for out in outs for line in out.splitlines() if line.startswith("[")
    ]
    assert len(trained) == len(set(trained)) == 3 + 6 * 2, trained
    assert all(
        trained_by_each for trained_by_each in [[line for line in o.splitlines() if line.startswith("[")] for o in outs]
    )
    assert len(finished_stage_folders(tmp_path / "grid")) == 15


def test_workers_share_the_queue_and_give_one_workers_numbers(tmp_path):
    spec = grid(tmp_path)
    spec["seeds"] = [0]
    spec["datasets"]["n_train"] = 600  # stages long enough (about 1 s) that the second worker starts in time
    runs = {}
    for workers in ("2", "1"):
        spec["output_dir"] = str(tmp_path / f"w{workers}")
        proc = w2s_process(write_spec(tmp_path / f"w{workers}.yaml", spec), "--workers", workers)
        runs[workers] = (proc.communicate(timeout=600)[0], proc.returncode)
    out, code = runs["2"]
    assert code == 0 and out.startswith("2 workers on the CPU"), out
    lines = out.splitlines()
    trained = {}  # stage -> the worker that trained it
    for line in lines:
        worker, _, rest = line.partition("] ")
        if worker.startswith("[worker ") and rest.startswith("["):
            trained.setdefault(rest.split("] ", 1)[1].split("  (key")[0], []).append(worker)
    assert len(trained) == 15 and all(len(by) == 1 for by in trained.values()), trained
    assert {by[0] for by in trained.values()} == {"[worker 0", "[worker 1"}  # both took part
    assert sum(line.startswith("kind ") for line in lines) == 1  # one table, from the last pass
    assert "15 stages, 0 to train" in out
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    rows = {
        w: [json.loads(line) for line in (tmp_path / w / "grid" / "results.jsonl").read_text().splitlines()]
        for w in ("w1", "w2")
    }
    assert len(rows["w2"]) == 15 and strip(rows["w2"]) == strip(rows["w1"])
    assert len(finished_stage_folders(tmp_path / "w2" / "grid")) == 15


# ---------------------------------------------------------------------------------------------
# keys see the data and the code; derived files are derived


def sst2_like(tmp_path, name: str, rows: list[tuple[str, int]]) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{text}\t{label}\n" for text, label in rows))
    return path


def test_keys_follow_data_contents_not_paths(tmp_path):
    rows = [(f"sentence number {i} is {'good' if i % 2 else 'bad'}", i % 2) for i in range(40)]
    first = sst2_like(tmp_path, "a/train.tsv", rows)
    spec = lambda path: tiny_spec(
        tmp_path,
        datasets={  # noqa: E731
            "name": "sst2",
            "data_files": {"train": str(path)},
            "column_names": ["text", "label"],
        },
    )
    keys = lambda path: [s.key for s in plan_run(validate_spec(spec(path))).stages]  # noqa: E731
    base = keys(first)
    assert keys(sst2_like(tmp_path, "b/copy.tsv", rows)) == base  # the same bytes elsewhere: same stages
    time.sleep(0.01)
    sst2_like(tmp_path, "a/train.tsv", rows[:-1] + [("a changed last sentence", 0)])  # rewritten in place
    assert set(keys(first)).isdisjoint(base)


def test_key_version_and_resolved_precision_enter_every_key(tmp_path, monkeypatch):
    from w2s.experiment import keys as keys_mod

    keys = lambda spec: [s.key for s in plan_run(validate_spec(spec)).stages]  # noqa: E731
    base = keys(grid(tmp_path))
    monkeypatch.setattr(keys_mod, "KEY_VERSION", keys_mod.KEY_VERSION + 1)
    assert set(keys(grid(tmp_path))).isdisjoint(base)  # new code: every stage reruns once
    monkeypatch.undo()
    fp32, bf16 = grid(tmp_path), grid(tmp_path)
    fp32["train"]["mixed_precision"] = "fp32"
    bf16["train"]["mixed_precision"] = "bf16"
    assert set(keys(fp32)).isdisjoint(keys(bf16))
    from w2s.training.precision import auto_precision

    assert keys(grid(tmp_path)) == (keys(bf16) if auto_precision()[0] == "bf16" else keys(fp32))


def test_a_stage_with_unreadable_metrics_reruns(tmp_path):
    spec = tiny_spec(tmp_path, name="damaged")
    assert len(run(spec)) == 5
    root = tmp_path / "damaged"
    folder = next((root / "stages").glob("transfer__synthetic__tiny-16_to_tiny-24__*"))
    before = (folder / "predictions.jsonl").read_text()
    (folder / "metrics.json").write_text('{"test_accuracy": 0.5, ')  # cut off mid-write by a disk fault
    assert run(spec) == ["transfer/synthetic/tiny-16->tiny-24/xent/s0"]
    assert json.loads((folder / "metrics.json").read_text())["test_accuracy"] >= 0
    assert (folder / "predictions.jsonl").read_text() == before
    assert [p.name for p in (root / "stages").iterdir() if p.name.startswith(".")] == []


def test_only_or_force_matching_nothing_is_an_error_naming_the_nearest_stages(tmp_path):
    import pytest

    from w2s.errors import SpecError

    with pytest.raises(
        SpecError, match=r"--only 'transfer/\*tiny-16->tiny-99\*': matches no stage; nearest: .*tiny-16"
    ):
        run(grid(tmp_path), only=["transfer/*tiny-16->tiny-99*"])
    with pytest.raises(SpecError, match="--force 'ground_truth/nothing'"):
        run(grid(tmp_path), force=["ground_truth/nothing"])
    assert not (tmp_path / "grid").exists()


def test_leftovers_of_a_killed_forced_rerun_are_cleared(tmp_path):
    """A kill after a forced stage's new copy is published but before the old one is deleted leaves
    `.old-<folder>-<pid>`; the next run removes it."""
    spec = tiny_spec(tmp_path, name="forced")
    run(spec)
    stages = tmp_path / "forced" / "stages"
    folder = next(stages.glob("ground_truth__*"))
    leftover = stages / f".old-{folder.name}-4242"
    leftover.mkdir()
    (leftover / "metrics.json").write_text("{}")
    assert run(spec) == []
    assert not leftover.exists() and folder.is_dir()


def test_the_wandb_summary_is_logged_by_the_rerun_when_a_kill_prevented_it(tmp_path, monkeypatch):
    from w2s.pipeline import summary as summary_mod

    logged = []

    def killed(spec, rows):
        raise KeyboardInterrupt  # the process dies after the last stage, before the summary run

    spec = tiny_spec(tmp_path, name="summary")
    monkeypatch.setattr(summary_mod, "log_experiment_summary", killed)
    try:
        run(spec)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(summary_mod, "log_experiment_summary", lambda spec, rows: logged.append(len(rows)))
    assert run(spec) == [] and logged == [5]  # nothing to train, the summary all the same
    assert run(spec) == [] and logged == [5]  # and only once


def test_results_jsonl_is_refreshed_at_most_every_period_and_always_at_the_end(tmp_path, monkeypatch):
    """After a stage the file is rewritten only when the last write is REFRESH_SECONDS old; the run's
    end writes it regardless, and an interrupted run lists the stages that finished before it."""
    import w2s.pipeline.runner as runner_mod
    import w2s.pipeline.summary as summary_mod

    writes = []
    real_write = summary_mod.write_jsonl
    monkeypatch.setattr(
        summary_mod, "write_jsonl", lambda path, rows: (writes.append(len(rows)), real_write(path, rows))
    )
    monkeypatch.setattr(summary_mod, "REFRESH_SECONDS", 0.0)
    run(tiny_spec(tmp_path / "a", ladder=2))  # 2 ground-truth stages, 3 transfers
    assert writes == [1, 2, 3, 4, 5, 5]  # after each stage, then at the end
    writes.clear()
    monkeypatch.setattr(summary_mod, "REFRESH_SECONDS", 1e9)
    run(tiny_spec(tmp_path / "b", ladder=2))
    assert writes == [5]  # at the end only

    real_stage, calls = runner_mod.run_stage, []

    def stopped_at_the_third(stage, *args, **kwargs):
        calls.append(stage.key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_stage(stage, *args, **kwargs)

    monkeypatch.setattr(runner_mod, "run_stage", stopped_at_the_third)
    spec = tiny_spec(tmp_path / "c", ladder=2)
    try:
        run(spec)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interrupt did not propagate")
    listed = [json.loads(line)["key"] for line in (tmp_path / "c" / "tiny" / "results.jsonl").read_text().splitlines()]
    assert sorted(listed) == sorted(calls[:2])
