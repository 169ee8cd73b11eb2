"""Mixed precision chosen by the hardware: `train.mixed_precision: auto` (the default).

bf16 pays only where the device computes it natively. The CPUs behind one cluster (or one cloud
account) differ: with AVX512-BF16 or AMX a bf16 matmul is faster than fp32; with AVX2 only, bf16
is emulated and many times slower. A spec that hard-codes bf16 is fast on one machine and
unusable on the next, so `auto` decides per machine:

- under `accelerate launch` with mixed_precision bf16/fp16 in its config: that (the launcher asked);
- CUDA: bf16 where the card supports it, else fp16;
- CPU: a tiny timed probe (a bf16 against an fp32 matmul, a few milliseconds): bf16 when it is
  clearly faster, else fp32 ('no'). The answer is remembered per machine (CPU model, torch version,
  and the variables that cap the instruction set: ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY), so
  every run, and every process of a launch, resolves the same and the stage keys stay stable.

Deciding imports torch only where it must: on a machine that may have a GPU (an NVIDIA or AMD
device node), or to run the CPU probe the first time. Elsewhere the remembered answer is read
without torch, so `w2s validate` and `w2s run --dry-run` stay instant.

The resolved precision enters every stage key: a stage trained in bf16 is not reused as fp32; a run
folder records what `auto` resolved to where it first trained (w2s/experiment/environment.py), so a sweep's
machines agree. `W2S_FAKE_PRECISION=no|bf16|fp16` answers in the hardware's place: a test setting,
to make one process's hardware differ from another's on one machine.
"""

from __future__ import annotations

import functools
import glob
import os
import platform
import time
from importlib import metadata
from pathlib import Path

from w2s import machine_cache
from w2s.errors import SpecError

BF16_SPEEDUP = 1.25  # bf16 must beat fp32 by this factor on the probe: native bf16 is well above, emulated far below


@functools.cache
def auto_precision() -> tuple[str, str]:
    """(precision, why) for this machine: the choice and a few words to tell the user once."""
    fake = os.environ.get("W2S_FAKE_PRECISION")
    if fake:
        if fake not in ("no", "bf16", "fp16"):
            raise SpecError(f"W2S_FAKE_PRECISION={fake!r}: give no, bf16 or fp16 (a test setting), or unset it")
        return fake, f"W2S_FAKE_PRECISION={fake}, a test setting in the hardware's place"
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched in ("bf16", "fp16"):
        return launched, f"the accelerate config asks for {launched}"
    if _may_have_gpu():
        import torch

        if not torch.cuda.is_available():
            return _cpu_precision()
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{name} computes bf16"
        return "fp16", f"{name} has no bf16"
    return _cpu_precision()


def _cpu_precision() -> tuple[str, str]:
    machine = {
        "cpu": _cpu_model(),
        "torch": metadata.version("torch"),  # the installed version, read without importing torch
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", ""),
    }
    speedup = machine_cache.measured("precision", machine, "bf16_speedup", lambda: {"bf16_speedup": bf16_speedup()})[
        "bf16_speedup"
    ]
    if speedup >= BF16_SPEEDUP:
        return "bf16", f"this CPU computes bf16 natively ({speedup:.1f}x fp32 on a matmul probe)"
    return "no", f"this CPU has no fast bf16 ({speedup:.2g}x fp32 on a matmul probe), so fp32"


def bf16_speedup(size: int = 256, repeats: int = 10) -> float:
    """fp32 time / bf16 time of a square matmul (above 1: bf16 is faster), each the best of `repeats`
    timings taken in turns: a busy machine slows some timings of both, and the best of each is what
    the hardware does (timings of one dtype in a row let a neighbour's burst favour one of them)."""
    import torch

    pairs = {
        dtype: (torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype))
        for dtype in (torch.float32, torch.bfloat16)
    }
    best = dict.fromkeys(pairs, float("inf"))
    for a, b in pairs.values():
        a @ b  # warm-up: kernel selection, first-touch allocation
    for _ in range(repeats):
        for dtype, (a, b) in pairs.items():
            start = time.perf_counter()
            a @ b
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def _may_have_gpu() -> bool:
    """False only where torch.cuda cannot be available: no NVIDIA or AMD (ROCm) device node, or every
    device hidden. True means "ask torch", which costs its import (about a second)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"))


@functools.cache  # every stage's metrics name it; it does not change while a process runs
def device_name() -> str:
    """What computes here: the GPU's name where torch sees one, else the CPU model (without a GPU
    device node, torch is not imported)."""
    if _may_have_gpu():
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    return _cpu_model()


@functools.cache  # read once a process: every stage's metrics name it
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
