"""The one training loop, built on `accelerate.Accelerator`.

The same code runs on a laptop CPU and under `accelerate launch` (DDP, FSDP, DeepSpeed):
Optimizer batches are drawn first and do not depend on `minibatch_size` or the process count
(`optimizer_batches`); each process takes its share as micro-batches, Accelerate accumulates their
gradients and syncs every `batch_size / (minibatch_size * processes)` micro-batches, applies mixed
precision, and gathers predictions for evaluation. A loss sees the whole optimizer batch
(`Classification`), so `minibatch_size` is a memory setting only. Batches are padded dynamically
and grouped by length, so little compute is spent on padding. Dropout is on or off by
`train.dropout` (off: eval mode while training, as the reference). Everything random is drawn from
the stage seed, so a CPU run is reproducible.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable
from typing import NamedTuple

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
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from w2s.batches import Batches
from w2s.losses import LossFn
from w2s.plan import TrainSettings
from w2s.selection import evaluation_steps
from w2s.spec import SpecError

# An objective turns (model, micro-batch, share of training done, whole-batch context or None) into
# (loss, logits or None); logits feed the logged training accuracy. An objective with `whole_batch`
# set is handed the detached logits of the whole optimizer batch (`WholeBatch`) whenever a step
# takes more than one micro-batch.
Objective = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


class WholeBatch(NamedTuple):
    """The optimizer batch's logits (detached, every process's rows) and labels, and where the
    current micro-batch's rows sit in them."""

    logits: torch.Tensor
    labels: torch.Tensor
    rows: slice


class Classification:
    """A classifier trained with a loss `loss(logits, soft_labels, step_frac)`.

    A loss sees the whole optimizer batch, whatever `minibatch_size` is, so that minibatch_size is
    only a memory setting (as in the reference, which gathers the logits of all micro-batches and
    then takes one loss). Losses marked `per_example` (a mean of per-example terms: xent, kl,
    product, entropy) give that exactly from each micro-batch alone, since every micro-batch of a
    step has the same size. Any other loss (logconf's quantile and prior, window's median and its
    mean over the examples inside the window, custom losses) is computed on the batch's logits,
    with this micro-batch's rows live and the rest from a no-grad pass over the step: the sum of the
    micro-batches' gradients is then the whole batch's gradient.
    """

    def __init__(self, loss_fn: LossFn):
        self.loss_fn = loss_fn
        self.whole_batch = not getattr(loss_fn, "per_example", False)

    def __call__(self, model, batch, step_frac, whole: WholeBatch | None = None):
        logits = model(**batch["inputs"])
        if whole is None:
            return self.loss_fn(logits, batch["labels"], step_frac), logits
        rows = whole.rows
        everything = torch.cat([whole.logits[: rows.start], logits.to(whole.logits.dtype), whole.logits[rows.stop :]])
        return self.loss_fn(everything, whole.labels, step_frac), logits


def classification(loss_fn: LossFn) -> Classification:
    return Classification(loss_fn)


def language_modelling(model, batch, step_frac, whole=None):
    """Next-token loss on the example texts (labels unused): generative finetuning."""
    inputs = batch["inputs"]
    targets = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    return model(**inputs, labels=targets).loss, None


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


def attention_kernels(choice: str):
    """`train.attention` around everything a stage runs: PyTorch's choice of scaled-dot-product
    attention kernel (`sdpa`), or its math kernel alone (`math`). On a CPU without dropout PyTorch
    picks a flash kernel whose backward, at sequences of tens of tokens, costs several times the
    matmuls and softmax of the math kernel (benchmarks/run.py's op table)."""
    if choice == "sdpa":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


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
    return Accelerator(
        mixed_precision=settings.mixed_precision,
        gradient_accumulation_steps=settings.batch_size // per_step,
        # prediction loaders pin their batches on a GPU (batch_outputs); copies from pinned memory need not wait
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
    )


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def fused_or_default(opt_cls, params, **kwargs) -> torch.optim.Optimizer:
    """Adam(W) with the fused kernel (one pass over every parameter; on a 2-core CPU its step for
    MiniLM-L6 took 18 ms against the per-tensor loop's 71, which was a fifth of a training step, and
    Hugging Face's Trainer uses it by default), else torch's default where it has none for these
    parameters."""
    try:
        return opt_cls(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # parameters on a device or of a dtype the kernel does not cover
        return opt_cls(params, **kwargs)


def optimizer_batches(
    lengths: np.ndarray, batch_size: int, epochs: float, order: str, rng: np.random.Generator
) -> list[list[int]]:
    """The examples of every optimizer step, the same whatever minibatch_size and the process count are.

    `epochs` passes over the data make one stream, cut into batches of `batch_size` that run on across
    an epoch's end, as the reference's; there are floor(epochs x n / batch_size) of them, at least one
    (a set smaller than a batch is repeated to fill it). `order`: "grouped" reshuffles every epoch and
    sorts it by length within mega-batches of 64 batches, whose batches are then shuffled (so batches
    pad little and lengths do not drift); "fixed" shuffles once and repeats that order every epoch,
    unsorted (the reference's).
    """
    n = len(lengths)
    steps = max(1, math.floor(epochs * n + 1e-9) // batch_size)
    once = rng.permutation(n).tolist()
    stream: list[int] = []
    while len(stream) < steps * batch_size:
        stream += once if order == "fixed" else _length_grouped_epoch(lengths, batch_size, rng)
    return [stream[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def _length_grouped_epoch(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[int]:
    """One shuffled epoch in blocks of `batch_size` similar lengths, the blocks in random order; the
    short block (n not a multiple of batch_size) goes last, so the epoch's batches stay whole."""
    order = rng.permutation(len(lengths))
    mega = batch_size * 64
    blocks = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        blocks += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    short = [b for b in blocks if len(b) < batch_size]
    full = [b for b in blocks if len(b) == batch_size]
    return np.concatenate([full[i] for i in rng.permutation(len(full))] + short).tolist()


def micro_batches(batch: list[int], lengths: np.ndarray, processes: int, rank: int, size: int) -> list[list[int]]:
    """This process's share of an optimizer batch (a contiguous slice), sorted by length and cut into
    micro-batches of `size` (similar lengths together: little padding)."""
    share = len(batch) // processes
    mine = sorted(batch[rank * share : (rank + 1) * share], key=lambda i: -lengths[i])
    return [mine[i : i + size] for i in range(0, share, size)]


def set_dropout(model: torch.nn.Module, enabled: bool) -> None:
    """Training mode with dropout (`train.dropout: true`), or eval mode, as the reference trains, so no
    dropout module is active. Layers that checkpoint gradients do so only in training mode, so those
    layers themselves (not their dropout children) stay in it."""
    model.train()
    if enabled:
        return
    model.eval()
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) is True:
            module.training = True


def _lr_lambda(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators, as accelerate's `set_seed` does. Without an
    accelerator it seeds torch's CPU generator directly: `torch.manual_seed` would also queue a lazy
    CUDA seeding, with a captured stack, that never runs: a twentieth of a tiny stage's setup."""
    devices = getattr(torch, "accelerator", None)  # torch >= 2.6; before, seed as accelerate does
    if devices is None or devices.is_available() or is_torch_xla_available():
        set_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)


def _no_bar(accelerator: Accelerator) -> bool:
    """Progress bars on the main process only, and none under TQDM_DISABLE (workers, Slurm logs):
    an explicit `disable=` would otherwise override tqdm's own reading of it."""
    return not accelerator.is_local_main_process or bool(os.environ.get("TQDM_DISABLE"))


def train(
    model: torch.nn.Module,
    data: Batches,
    objective: Objective,
    settings: TrainSettings,
    seed: int,
    log: Callable[[dict], None] = lambda row: None,
    log_every: int = 10,
    desc: str = "train",
    echo: Callable[[str], None] = print,
    evaluate: Callable[..., None] | None = None,
) -> tuple[torch.nn.Module, Accelerator]:
    """Train `model` on `data` with `objective` (e.g. `classification(loss)`); return it with its accelerator.

    With `settings.eval_every`, `evaluate(model, accelerator, step, total)` runs after the optimizer
    steps `w2s.selection.evaluation_steps` names (the last among them), in eval mode; training then
    goes on in its own mode (`w2s.pipeline.checkpoints`).

    One optimizer step per batch of `optimizer_batches`; each process takes its share as micro-batches
    of `minibatch_size`, whose gradients Accelerate accumulates (`accelerator.backward` divides each
    loss by the micro-batches per step; a whole-batch loss, already the batch's, is scaled back up).
    With `settings.compile` the model is compiled (torch.compile, dynamic shapes: batches vary in
    length); if compiling fails, at the first step, training goes on eager after one line (`echo`)."""
    seed_everything(seed)
    accelerator = make_accelerator(settings)
    eager = model
    if settings.compile:
        model = torch.compile(model, dynamic=True)
    lengths = data.lengths()
    steps = optimizer_batches(
        lengths, settings.batch_size, settings.epochs, settings.data_order, np.random.default_rng(seed)
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = fused_or_default(opt_cls, params, lr=settings.lr, weight_decay=settings.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    # the scheduler is stepped by hand once per optimizer step, whatever the process count
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(settings.lr_schedule, len(steps), round(settings.warmup_frac * len(steps)))
    )
    set_dropout(model, settings.dropout)
    processes, rank, accum = (
        accelerator.num_processes,
        accelerator.process_index,
        accelerator.gradient_accumulation_steps,
    )
    whole_batch = getattr(objective, "whole_batch", False) and accum * processes > 1
    scale = accum * processes if whole_batch else 1  # see the docstring; DDP averages over processes
    may_fall_back = settings.compile and processes == 1  # until the first training forward has run

    def guarded(call):
        """A call into the model; in a compiled model's first step a compiler failure trains eager after one line."""
        nonlocal model, may_fall_back
        try:
            return call(model)
        except Exception as err:  # noqa: BLE001 - a compiler failure surfaces at the first call
            if not may_fall_back:
                raise
            echo(
                f"  torch.compile failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:160]}); "
                "training eager"
            )
            model, may_fall_back = accelerator.prepare(eager), False
            set_dropout(model, settings.dropout)
            return call(model)

    evaluate_after = set(evaluation_steps(len(steps), settings.eval_every)) if evaluate is not None else set()
    bar = tqdm(total=len(steps), desc=desc, disable=_no_bar(accelerator), leave=False)

    # the log window's sums stay on the device and are read once per window: a read per
    # micro-batch (`.item()`) would be a host-device sync on a GPU
    def empty_window():
        zero = torch.zeros((), device=accelerator.device)
        return {"loss": zero, "correct": zero.clone(), "n": 0}

    seen, window = 0, empty_window()
    start = time.perf_counter()
    for step, batch in enumerate(steps):
        step_frac = step / len(steps)
        micro = [
            to_device(data.collate(rows), accelerator.device)
            for rows in micro_batches(batch, lengths, processes, rank, settings.minibatch_size)
        ]
        context = guarded(lambda m: _step_logits(m, micro, accelerator)) if whole_batch else None  # noqa: B023 (called at once)
        offset = rank * len(batch) // processes
        for j, inputs in enumerate(micro):
            with accelerator.accumulate(model):
                size = len(inputs["index"])
                rows = slice(offset + j * size, offset + (j + 1) * size)
                whole = WholeBatch(*context, rows) if context is not None else None
                loss, logits = guarded(lambda m: objective(m, inputs, step_frac, whole))  # noqa: B023 (called at once)
                may_fall_back = False
                accelerator.backward(loss * scale)
                if accelerator.sync_gradients and settings.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            window["loss"] += loss.detach().float() * size
            if logits is not None:
                window["correct"] += (logits.argmax(-1) == inputs["labels"].argmax(-1)).sum()
            window["n"] += size
        scheduler.step()
        seen += len(batch)
        bar.update(1)
        if (step + 1) % log_every == 0 or step + 1 == len(steps):
            row = {
                "step": step + 1,
                "epoch": seen / len(data),
                "loss": window["loss"].item() / window["n"],
                **({"train_accuracy": window["correct"].item() / window["n"]} if logits is not None else {}),
                "lr": scheduler.get_last_lr()[0],
                "examples": seen,
                "examples_per_second": seen / (time.perf_counter() - start),
            }
            bar.set_postfix({k[:3]: f"{row[k]:.3f}" for k in ("loss", "train_accuracy") if k in row})
            log(row)
            window = empty_window()
        if step + 1 in evaluate_after:
            evaluate(model, accelerator, step + 1, len(steps))
            set_dropout(model, settings.dropout)
    bar.close()
    return model, accelerator


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch on `device`. To a GPU it goes from pinned host memory without waiting
    (non_blocking): the copy overlaps the kernels still running and does not synchronise."""
    if device.type != "cuda":
        return send_to_device(batch, device)
    pinned = recursively_apply(torch.Tensor.pin_memory, batch)
    return send_to_device(pinned, device, non_blocking=True)


@torch.no_grad()
def _step_logits(model, micro: list[dict], accelerator: Accelerator) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and labels of a whole optimizer batch, every process's micro-batches in order,
    without gradients: what a whole-batch loss reads for the rows of the other micro-batches."""
    logits = torch.cat([model(**inputs["inputs"]) for inputs in micro])
    labels = torch.cat([inputs["labels"] for inputs in micro])
    return accelerator.gather((logits.contiguous(), labels.contiguous()))


@torch.no_grad()
def batch_outputs(
    fn: Callable[[dict], torch.Tensor], data: Batches, accelerator: Accelerator, batch_size: int, desc: str | None
) -> np.ndarray:
    """`fn(inputs) -> (b, d)` over every example of `data`, as an (n, d) float32 array on every process.

    Processes can hold batches of different sizes (the short last batch); all_gather needs equal
    shapes, so pad with index -1 and drop it after. Plain gather, not gather_for_metrics: its
    duplicate trimming assumes equal batches and could cut real examples. Writing by index counts
    every example once; the repeats Accelerate adds for even batch counts overwrite.
    """
    order = np.argsort(-data.lengths(), kind="stable")  # similar lengths together: little padding
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    pin = accelerator.device.type == "cuda"  # pinned host memory: the loader's copies to the GPU do not wait
    loader = DataLoader(_Rows(len(data)), batch_sampler=batches, collate_fn=data.collate, pin_memory=pin)
    loader = accelerator.prepare(loader)
    result = None
    for batch in tqdm(loader, desc=desc, disable=_no_bar(accelerator) or desc is None, leave=False):
        out = fn(batch["inputs"]).float()
        index, out = accelerator.pad_across_processes((batch["index"], out), dim=0, pad_index=-1)
        index, out = accelerator.gather((index, out))
        keep = (index >= 0).cpu().numpy()
        if result is None:
            result = np.full((len(data), out.shape[1]), np.nan, dtype=np.float32)
        result[index.cpu().numpy()[keep]] = out.cpu().numpy()[keep]
    assert result is not None and not np.isnan(result).any(), "some examples were not computed"
    return result


def predict(model, data: Batches, accelerator: Accelerator, batch_size: int, desc: str = "predict") -> np.ndarray:
    """Class probabilities (n, k) for every example, each counted once across processes."""
    model.eval()
    probs = batch_outputs(
        lambda inputs: torch.softmax(model(**inputs).float(), dim=-1), data, accelerator, batch_size, desc
    )
    model.train()
    return canonical_probabilities(probs)


def canonical_probabilities(probs: np.ndarray) -> np.ndarray:
    """float64 class probabilities. Two classes are described by the positive one alone (predictions.jsonl
    stores p_pos), so column 0 is set to exactly 1 - p_pos: a binary stage's metrics are those of p_pos."""
    probs = probs.astype(np.float64)
    if probs.shape[1] == 2:
        probs[:, 0] = 1 - probs[:, 1]
    return probs
