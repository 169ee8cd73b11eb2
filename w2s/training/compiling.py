"""Compiled training: `train.compile: false | true | auto` (torch.compile).

Whether compiling pays depends on the device and on how long a stage is: the compiler's own time
(tens of seconds on a CPU) is paid once per stage, the gain on every step. `auto` measures it once
per machine, on a workload the size of a short stage (a 2-layer, 384-wide BERT, 40 training steps
of 32 x 64 tokens, compile time included), and compiles when that is faster than eager. The answer
is remembered like the precision probe's (w2s/training/precision.py): per CPU model or GPU, torch version and
precision. Compiling can change float results in the last bits, so a compiled stage's key differs
from an eager one's.

A model that fails to compile never stops a run: training falls back to eager with one line
(w2s/training/loop.py).
"""

from __future__ import annotations

import functools
import os
import time
from importlib import metadata

from w2s import machine_cache
from w2s.training.precision import device_name

MIN_SPEEDUP = 1.1  # compiling must beat eager by this much, compile time included, for `auto`


@functools.cache
def auto_compile(precision: str) -> tuple[bool, str]:
    """(compile?, why) for this machine and precision, measured once and remembered."""
    device = device_name()
    machine = {
        "device": device,
        "torch": metadata.version("torch"),
        "precision": precision,
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", ""),
    }
    cached = machine_cache.measured("compile", machine, "speedup", lambda: compile_speedup(precision))
    speedup = cached["speedup"]
    if speedup is None:
        return False, f"torch.compile failed on this machine ({cached.get('error')})"
    verdict = speedup >= MIN_SPEEDUP
    return verdict, f"{'compiled' if verdict else 'eager'}: compiling measured {speedup:.2f}x eager on {device}"


def compile_speedup(precision: str, steps: int = 40) -> dict:
    """{"speedup": eager seconds / compiled seconds (compile included), "eager_s", "compiled_s"} for
    a short stage's worth of training steps; {"speedup": None, "error"} when compiling fails."""
    import torch
    from transformers import BertConfig, BertModel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    config = BertConfig(hidden_size=384, num_hidden_layers=2, num_attention_heads=12, intermediate_size=1536)

    def run(compiled: bool) -> float:
        torch.manual_seed(0)
        model = BertModel(config).to(device)
        step_model = torch.compile(model, dynamic=True) if compiled else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        start = time.perf_counter()
        for step in range(steps):
            ids = torch.randint(1000, (32, 48 + 16 * (step % 2)), device=device)  # two lengths, as batches vary
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                loss = step_model(input_ids=ids).last_hidden_state.float().pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    eager = run(False)
    try:
        compiled = run(True)
    except Exception as err:  # noqa: BLE001 - no compiler, an unsupported op: compiling is not for here
        return {"speedup": None, "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"}
    return {"speedup": round(eager / compiled, 3), "eager_s": round(eager, 2), "compiled_s": round(compiled, 2)}
