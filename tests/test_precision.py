"""`mixed_precision: auto`: bf16 only where the device computes it natively, remembered per machine."""

import json
import os
import subprocess
import sys

import pytest
import torch

from w2s.training import precision

AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}  # a CPU without native bf16


def resolve_in_subprocess(tmp_path, extra_env: dict) -> tuple[str, float]:
    """`auto` as a fresh process on this machine resolves it (the instruction-set caps are read at import)."""
    env = {**os.environ, "W2S_CACHE_DIR": str(tmp_path), **extra_env}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    code = "from w2s.training.precision import auto_precision, bf16_speedup; print(auto_precision()[0], bf16_speedup())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    chosen, speedup = out.split()
    return chosen, float(speedup)


def test_cpu_without_native_bf16_runs_fp32(tmp_path):
    chosen, speedup = resolve_in_subprocess(tmp_path, AVX2_ONLY)
    assert speedup < 1 and chosen == "no"  # emulated bf16 is slower than fp32, so auto keeps fp32


def test_auto_follows_the_probe_on_this_machine(tmp_path):
    chosen, speedup = resolve_in_subprocess(tmp_path, {})
    # measured ratios: >2 where bf16 is native, <0.1 where it is emulated; nothing near the threshold
    assert chosen == ("bf16" if speedup >= precision.BF16_SPEEDUP else "no"), speedup
    (cached,) = tmp_path.glob("precision-*.json")
    assert json.loads(cached.read_text())["bf16_speedup"] > 0


def test_the_answer_is_remembered_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("W2S_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(precision, "_may_have_gpu", lambda: False)
    monkeypatch.setattr(precision, "bf16_speedup", lambda: 3.0)
    precision.auto_precision.cache_clear()
    assert precision.auto_precision()[0] == "bf16"

    def no_probe():
        raise AssertionError("probed again although the answer was cached")

    monkeypatch.setattr(precision, "bf16_speedup", no_probe)
    precision.auto_precision.cache_clear()
    assert precision.auto_precision() == ("bf16", "this CPU computes bf16 natively (3.0x fp32 on a matmul probe)")
    other = "SSE41" if os.environ.get("ONEDNN_MAX_CPU_ISA") != "SSE41" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other)  # another instruction set: another machine, probed anew
    monkeypatch.setattr(precision, "bf16_speedup", lambda: 0.05)
    precision.auto_precision.cache_clear()
    assert precision.auto_precision()[0] == "no"
    precision.auto_precision.cache_clear()


def test_an_accelerate_config_asking_for_bf16_wins_over_the_probe(monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    precision.auto_precision.cache_clear()
    assert precision.auto_precision() == ("bf16", "the accelerate config asks for bf16")
    precision.auto_precision.cache_clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA path: needs a GPU (none in CI)")
def test_cuda_chooses_bf16_where_supported():
    precision.auto_precision.cache_clear()
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert precision.auto_precision()[0] == expected


def test_a_remembered_cpu_answer_is_read_without_importing_torch(tmp_path):
    """`w2s validate` and `run --dry-run` plan stage keys, which hold the precision: on a machine
    without a GPU device node, a second process must decide without torch (its import takes ~1 s)."""
    resolve_in_subprocess(tmp_path, {})  # the first process probes and remembers
    env = {**os.environ, "W2S_CACHE_DIR": str(tmp_path)}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    code = "import sys; from w2s.training import precision; print(precision._may_have_gpu(), precision.auto_precision()[0], 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    if out[0] == "True":
        pytest.skip("this machine has a GPU device node, so deciding asks torch")
    assert out[1] in ("bf16", "no") and out[2] == "False", out
