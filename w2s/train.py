"""The one training loop, built on `accelerate.Accelerator`.

The same code runs on a laptop CPU and under `accelerate launch` (DDP, FSDP, DeepSpeed):
Accelerate shards the batches, syncs gradients every `batch_size / (minibatch_size * processes)`
micro-batches, applies mixed precision, and gathers predictions for evaluation.
Batches are padded dynamically; training batches are grouped by length so little compute is
spent on padding. Everything random is drawn from the stage seed, so a CPU run is reproducible.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from w2s.batches import Batches
from w2s.losses import LossFn
from w2s.plan import TrainSettings
from w2s.spec import SpecError


# an objective turns (model, batch, share of training done) into (loss, logits or None); logits feed
# the logged training accuracy
Objective = Callable[[torch.nn.Module, dict, float], tuple[torch.Tensor, torch.Tensor | None]]


def classification(loss_fn: LossFn) -> Objective:
    def objective(model, batch, step_frac):
        logits = model(**batch["inputs"])
        return loss_fn(logits, batch["labels"], step_frac), logits

    return objective


def language_modelling(model, batch, step_frac):
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
    return Accelerator(mixed_precision=settings.mixed_precision, gradient_accumulation_steps=settings.batch_size // per_step)


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


def length_grouped_batches(lengths: np.ndarray, size: int, epochs: float, rng: np.random.Generator) -> list[list[int]]:
    """Micro-batches for `epochs` passes: shuffle, sort within mega-batches of 64 micro-batches by
    length (so batches pad little), then shuffle the batch order (so lengths do not drift)."""
    per_epoch = math.ceil(len(lengths) / size)
    batches = []
    for _ in range(math.ceil(epochs)):
        order = rng.permutation(len(lengths))
        mega = size * 64
        epoch = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            epoch += [chunk[i : i + size].tolist() for i in range(0, len(chunk), size)]
        batches += [epoch[i] for i in rng.permutation(len(epoch))]
    return batches[: max(1, round(epochs * per_epoch))]


def _lr_lambda(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


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
) -> tuple[torch.nn.Module, Accelerator]:
    """Train `model` on `data` with `objective` (e.g. `classification(loss)`); return it with its accelerator.
    With `settings.compile` the model is compiled (torch.compile, dynamic shapes: batches vary in
    length); if compiling fails, at the first step, training goes on eager after one line (`echo`)."""
    set_seed(seed)
    accelerator = make_accelerator(settings)
    eager = model
    if settings.compile:
        model = torch.compile(model, dynamic=True)
    batches = length_grouped_batches(data.lengths(), settings.minibatch_size, settings.epochs, np.random.default_rng(seed))
    loader = DataLoader(_Rows(len(data)), batch_sampler=batches, collate_fn=data.collate)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = fused_or_default(opt_cls, params, lr=settings.lr, weight_decay=settings.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    accum = accelerator.gradient_accumulation_steps
    total_steps = max(1, math.ceil(len(loader) / accum))
    # the scheduler is stepped by hand once per optimizer step, whatever the process count
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(settings.lr_schedule, total_steps, round(settings.warmup_frac * total_steps))
    )
    model.train()
    bar = tqdm(total=total_steps, desc=desc, disable=_no_bar(accelerator), leave=False)
    step, seen, window = 0, 0, {"loss": 0.0, "correct": 0.0, "n": 0}
    start = time.perf_counter()
    for micro, batch in enumerate(loader):
        with accelerator.accumulate(model):
            try:
                loss, logits = objective(model, batch, min(1.0, step / total_steps))
            except Exception as err:  # noqa: BLE001 - a compiler failure surfaces at the first call
                if not (settings.compile and micro == 0 and accelerator.num_processes == 1):
                    raise
                echo(f"  torch.compile failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:160]}); "
                     "training eager")
                model = accelerator.prepare(eager)
                loss, logits = objective(model, batch, min(1.0, step / total_steps))
            accelerator.backward(loss)
            if accelerator.sync_gradients and settings.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        n = len(batch["index"])
        seen += n * accelerator.num_processes  # this micro-batch, on every process
        window["loss"] += loss.item() * n
        if logits is not None:
            window["correct"] += (logits.argmax(-1) == batch["labels"].argmax(-1)).sum().item()
        window["n"] += n
        if accelerator.sync_gradients:
            scheduler.step()
            step += 1
            bar.update(1)
            if step % log_every == 0 or step == total_steps:
                row = {
                    "step": step,
                    "epoch": (micro + 1) / math.ceil(len(data) / settings.minibatch_size / accelerator.num_processes),
                    "loss": window["loss"] / window["n"],
                    **({"train_accuracy": window["correct"] / window["n"]} if logits is not None else {}),
                    "lr": scheduler.get_last_lr()[0],
                    "examples": seen,
                    "examples_per_second": seen / (time.perf_counter() - start),
                }
                bar.set_postfix({k[:3]: f"{row[k]:.3f}" for k in ("loss", "train_accuracy") if k in row})
                log(row)
                window = {"loss": 0.0, "correct": 0.0, "n": 0}
    bar.close()
    return model, accelerator


@torch.no_grad()
def batch_outputs(fn: Callable[[dict], torch.Tensor], data: Batches, accelerator: Accelerator, batch_size: int,
                  desc: str) -> np.ndarray:
    """`fn(inputs) -> (b, d)` over every example of `data`, as an (n, d) float32 array on every process.

    Processes can hold batches of different sizes (the short last batch); all_gather needs equal
    shapes, so pad with index -1 and drop it after. Plain gather, not gather_for_metrics: its
    duplicate trimming assumes equal batches and could cut real examples. Writing by index counts
    every example once; the repeats Accelerate adds for even batch counts overwrite.
    """
    order = np.argsort(-data.lengths(), kind="stable")  # similar lengths together: little padding
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    loader = accelerator.prepare(DataLoader(_Rows(len(data)), batch_sampler=batches, collate_fn=data.collate))
    result = None
    for batch in tqdm(loader, desc=desc, disable=_no_bar(accelerator), leave=False):
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
    probs = batch_outputs(lambda inputs: torch.softmax(model(**inputs).float(), dim=-1), data, accelerator,
                          batch_size, desc)
    model.train()
    return canonical_probabilities(probs)


def canonical_probabilities(probs: np.ndarray) -> np.ndarray:
    """float64 class probabilities. Two classes are described by the positive one alone (predictions.jsonl
    stores p_pos), so column 0 is set to exactly 1 - p_pos: a binary stage's metrics are those of p_pos."""
    probs = probs.astype(np.float64)
    if probs.shape[1] == 2:
        probs[:, 0] = 1 - probs[:, 1]
    return probs
