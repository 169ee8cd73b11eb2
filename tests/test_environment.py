"""`auto` decided once per run folder (w2s/experiment/environment.py): machines of a sweep agree on the keys.

W2S_FAKE_PRECISION stands in for the hardware's answer, so one machine plays two: "GPU workers"
whose `auto` is bf16 and a "login node" whose `auto` is fp32."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import tiny_spec, write_spec

REPO = Path(__file__).resolve().parents[1]


def w2s(*args, precision: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, W2S_FAKE_PRECISION=precision, TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "w2s", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def spec_file(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "spec.yaml", tiny_spec(tmp_path / "runs", name="env"))


def trained(out: str) -> list[str]:
    return [line.split("] ", 1)[1].split("  (key")[0] for line in out.splitlines() if line.startswith("[")]


def test_the_first_machine_to_train_decides_and_every_later_one_plans_with_its_decision(tmp_path):
    spec, root = spec_file(tmp_path), tmp_path / "runs" / "env"
    dry = w2s("run", spec, "--dry-run", precision="no", cwd=tmp_path)  # reads only: decides here, records nothing
    assert dry.returncode == 0, dry.stderr
    assert "precision: no (W2S_FAKE_PRECISION=no" in dry.stdout and "decided on this machine" in dry.stdout
    assert not (root / "environment").exists()

    first = w2s("run", spec, precision="bf16", cwd=tmp_path)  # the "GPU worker"
    assert first.returncode == 0, first.stderr
    assert len(trained(first.stdout)) == 5
    record = json.loads((root / "environment" / "mixed_precision.json").read_text())
    assert record["value"] == "bf16" and "W2S_FAKE_PRECISION=bf16" in record["why"]
    keys = {json.loads(line)["key"] for line in (root / "plan.jsonl").read_text().splitlines()}
    metrics = [json.loads(p.read_text()) for p in (root / "stages").glob("*/metrics.json")]
    assert len(metrics) == 5 and {m["mixed_precision"] for m in metrics} == {"bf16"}

    # the "login node", whose own answer is fp32: the same keys, nothing to train
    again = w2s("run", spec, precision="no", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert trained(again.stdout) == [] and "5 stages, 0 to train" in again.stdout
    assert "precision: bf16 (W2S_FAKE_PRECISION=bf16" in again.stdout and "recorded for this run folder" in again.stdout
    assert {json.loads(line)["key"] for line in (root / "plan.jsonl").read_text().splitlines()} == keys
    status = w2s("status", root, precision="no", cwd=tmp_path)
    assert "5 stages: 5 finished, 0 running, 0 failed, 0 waiting" in status.stdout
    assert "mixed_precision: bf16 (" in status.stdout
    report = w2s("report", root, "--out", tmp_path / "report", precision="no", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "precision: bf16 (5 stages)" in report.stdout

    # an explicit setting is not the folder's to decide: other keys, trained here
    explicit = w2s("run", spec, "--set", "train.mixed_precision=no", precision="bf16", cwd=tmp_path)
    assert explicit.returncode == 0, explicit.stderr
    assert len(trained(explicit.stdout)) == 5 and "precision:" not in explicit.stdout


def test_a_machine_that_cannot_compute_the_recorded_precision_refuses_in_one_line(tmp_path):
    spec, root = spec_file(tmp_path), tmp_path / "runs" / "env"
    (root / "environment").mkdir(parents=True)
    (root / "environment" / "mixed_precision.json").write_text(
        json.dumps({"value": "fp16", "why": "Tesla V100 has no bf16", "host": "gpu07", "time": 0})
    )
    proc = w2s("run", spec, precision="no", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"w2s: error: {root / 'environment' / 'mixed_precision.json'}: this run folder trains in fp16 (decided where "
        "it first trained), which needs a CUDA device and this machine has none; train it there, or set "
        "train.mixed_precision to train stages of another precision here"
    ]
    assert not (root / "stages").exists() and not (root / "plan.jsonl").exists()


def test_a_damaged_record_is_decided_again_and_replaced(tmp_path):
    spec, root = spec_file(tmp_path), tmp_path / "runs" / "env"
    (root / "environment").mkdir(parents=True)
    (root / "environment" / "mixed_precision.json").write_text('{"value": "bf1')  # cut short
    proc = w2s("run", spec, precision="no", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mixed_precision.json is damaged (not a recorded decision); deciding again" in proc.stdout
    assert json.loads((root / "environment" / "mixed_precision.json").read_text())["value"] == "no"
    assert not list((root / "environment").glob(".*"))  # no temporary file left


def test_a_bad_fake_precision_is_one_line(tmp_path):
    proc = w2s("run", spec_file(tmp_path), "--dry-run", precision="fp8", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "w2s: error: W2S_FAKE_PRECISION='fp8': give no, bf16 or fp16 (a test setting), or unset it"
    )
