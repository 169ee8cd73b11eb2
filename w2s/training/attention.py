"""Attention kernels: `train.attention: auto | sdpa | math`.

The models' scaled-dot-product attention (SDPA) runs one of PyTorch's kernels. Without dropout a
CPU takes its flash kernel; with dropout, its math kernel (matmuls and a softmax). Which is faster
depends on the CPU, the precision and the sequence length: on a CPU with native bf16, at tens of
tokens, the flash kernel's backward costs several times the math kernel's work (MiniLM-L6 trained
1.36x faster with `math` in bf16, docs/benchmarks.md); on an AVX2 CPU in fp32 the flash kernel is
the faster one. On a GPU the fused kernels are the fast ones.

`auto` (the default) measures it once per machine: the forward and backward of one attention layer
(12 heads of widths 32 and 64, 1,024 tokens a batch, at the run's longest sequence up to 128 tokens:
the kernels differ at short sequences, and a longer probe costs seconds), under each kernel, at the
run's precision. The math kernel is chosen where it is at least `MIN_SPEEDUP` faster,
else PyTorch's choice (`sdpa`); on a GPU, `sdpa` without measuring. The answer is remembered like the
precision probe's, and a run folder records what it resolved to (w2s/experiment/environment.py).
It applies to stages without dropout (`train.dropout: false`, the default): with dropout a CPU
runs the math kernel anyway, and a GPU its own. The two kernels differ in the last bits, so `math`
enters a stage's key; `sdpa` does not, and stages trained before `auto` existed keep their keys
wherever it resolves to `sdpa`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from importlib import metadata

from w2s import machine_cache
from w2s.training.precision import _cpu_model, _may_have_gpu

MIN_SPEEDUP = 1.1  # the math kernel must beat PyTorch's choice by this much on the probe
PROBE_TOKENS = 1024  # tokens per probe batch: 16 sequences of 64
HEAD_WIDTHS = (32, 64)  # MiniLM's heads and BERT-base's (MPNet, RoBERTa)


def attention_kernels(choice: str):
    """A stage's resolved `train.attention` around everything it runs: PyTorch's choice of kernel
    (`sdpa`), or its math kernel alone (`math`)."""
    if choice == "sdpa":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def probe_length(max_ctx: int) -> int:
    """The probe's sequence length for a run whose longest examples have `max_ctx` tokens: a power
    of two from 32 to 128 (so that runs of similar lengths share one measurement)."""
    length = 32
    while length < min(max_ctx, 128):
        length *= 2
    return length


@functools.cache
def auto_attention(precision: str, length: int) -> tuple[str, str]:
    """(sdpa | math, why) for stages without dropout on this machine, at this precision and probe length."""
    if _may_have_gpu():
        import torch

        if torch.cuda.is_available():
            return "sdpa", f"PyTorch's fused kernels on {torch.cuda.get_device_name()}"
    machine = {
        "cpu": _cpu_model(),
        "torch": metadata.version("torch"),
        "precision": precision,
        "length": length,
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", ""),
    }
    speedup = machine_cache.measured(
        "attention", machine, "math_speedup", lambda: {"math_speedup": math_speedup(precision, length)}
    )["math_speedup"]
    choice = "math" if speedup >= MIN_SPEEDUP else "sdpa"
    return choice, f"the math kernel measured {speedup:.2f}x PyTorch's choice at {length} tokens on this CPU"


def math_speedup(precision: str, length: int, repeats: int = 3) -> float:
    """PyTorch's kernel's time / the math kernel's time (above 1: math is faster) for the forward and
    backward of attention at `length` tokens, with a padding mask as the models pass one, each the
    best of `repeats` timings taken in turns (a busy machine slows some timings of both)."""
    import torch
    import torch.nn.functional as F

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    rows = max(1, PROBE_TOKENS // length)
    shapes = [(rows, 12, length, width) for width in HEAD_WIDTHS]
    mask = torch.zeros(rows, 1, length, length, dtype=dtype)  # no position masked: the kernels' work is the same
    tensors = [[torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3)] for shape in shapes]

    def layer(kernel: str) -> float:
        start = time.perf_counter()
        with attention_kernels(kernel):
            for q, k, v in tensors:
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
        return time.perf_counter() - start

    best = {"sdpa": float("inf"), "math": float("inf")}
    for kernel in best:
        layer(kernel)  # warm-up: kernel selection, first-touch allocation
    for _ in range(repeats):
        for kernel in best:
            best[kernel] = min(best[kernel], layer(kernel))
    return round(best["sdpa"] / best["math"], 3)
