"""The launch a stage runs in: its process group (one process, or `accelerate launch`), a fresh
`Accelerator` per stage, seeding, and moving batches to the device.

The runner asks this module what process it is (`process_state`) and sets up each stage's
randomness (`seed_everything`); the loop and inference build
their accelerator with `make_accelerator`.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import (
    DataLoaderConfiguration,
    is_torch_xla_available,
    recursively_apply,
    send_to_device,
    set_seed,
)

from w2s.errors import SpecError
from w2s.training.settings import TrainSettings


def process_state() -> PartialState:
    """The launch's process group, made CPU-aware.

    `PartialState()` alone forms a gloo group on CPU only when told `cpu=True`; Accelerate's
    multi-GPU launcher does not pass the config's `use_cpu` on, so on a machine without CUDA every
    launched process would think it is the only one (each training every stage by itself).
    Launched (LOCAL_RANK set) without CUDA, or with ACCELERATE_USE_CPU, we ask for CPU.
    """
    launched_without_cuda = "LOCAL_RANK" in os.environ and not torch.cuda.is_available()
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or launched_without_cuda
    return PartialState(cpu=cpu)


def make_accelerator(settings: TrainSettings) -> Accelerator:
    processes = process_state().num_processes
    per_step = settings.minibatch_size * processes
    if settings.batch_size % per_step:
        raise SpecError(
            f"train.batch_size: {settings.batch_size} is not a multiple of minibatch_size x processes "
            f"= {settings.minibatch_size} x {processes}; pick sizes that divide"
        )
    state = AcceleratorState._shared_state
    if processes == 1 and state and state.get("_mixed_precision", settings.mixed_precision) != settings.mixed_precision:
        # one process running experiments with different precisions (tests, notebooks): start afresh
        AcceleratorState._reset_state()
    accumulation = settings.batch_size // per_step
    accelerator = Accelerator(
        mixed_precision=settings.mixed_precision,
        gradient_accumulation_steps=accumulation,
        # prediction loaders pin their batches on a GPU (batch_outputs); copies from pinned memory need not wait
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
    )
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None:
        # DeepSpeed steps, accumulates and clips itself, from its config: the spec's batches and
        # clipping, not its own defaults (accelerate fills a clip of 1.0, and reads the micro-batch
        # from a prepared loader, which the loop, drawing its own batches, does not have)
        deepspeed.deepspeed_config.update(
            train_micro_batch_size_per_gpu=settings.minibatch_size,
            gradient_accumulation_steps=accumulation,
            train_batch_size=settings.batch_size,
            gradient_clipping=settings.max_grad_norm or 0.0,  # 0: none
        )
        accelerator.gradient_accumulation_steps = accumulation
    return accelerator


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators, as accelerate's `set_seed` does. Without an
    accelerator it seeds torch's CPU generator directly: `torch.manual_seed` would also queue a lazy
    CUDA seeding, with a captured stack, that never runs."""
    devices = getattr(torch, "accelerator", None)  # torch >= 2.6; before, seed as accelerate does
    if devices is None or devices.is_available() or is_torch_xla_available():
        set_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch on `device`. To a GPU it goes from pinned host memory without waiting
    (non_blocking): the copy overlaps the kernels still running and does not synchronise."""
    if device.type != "cuda":
        return send_to_device(batch, device)
    pinned = recursively_apply(torch.Tensor.pin_memory, batch)
    return send_to_device(pinned, device, non_blocking=True)


def no_progress_bar(accelerator: Accelerator) -> bool:
    """Progress bars on the main process only, and none under TQDM_DISABLE (workers, Slurm logs):
    an explicit `disable=` would otherwise override tqdm's own reading of it."""
    return not accelerator.is_local_main_process or bool(os.environ.get("TQDM_DISABLE"))
