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

`train` reads as its steps: draw the optimizer batches, prepare the model, optimizer and schedule,
then per step its micro-batches (`_Step`), the log window (`_LogWindow`) and the evaluation points
(`evaluation_steps`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from w2s.training.batches import Batches
from w2s.training.launch import make_accelerator, no_progress_bar, seed_everything, to_device
from w2s.training.losses import LossFn
from w2s.training.settings import TrainSettings

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
    steps `evaluation_steps` names (the last among them), in eval mode; training then goes on in its
    own mode (`w2s.pipeline.checkpoints`).

    One optimizer step per batch of `optimizer_batches`; each process takes its share as micro-batches
    of `minibatch_size`, whose gradients Accelerate accumulates (`accelerator.backward` divides each
    loss by the micro-batches per step; a whole-batch loss, already the batch's, is scaled back up).
    With `settings.compile` the model is compiled (torch.compile, dynamic shapes: batches vary in
    length); if compiling fails, at the first step, training goes on eager after one line (`echo`)."""
    seed_everything(seed)
    accelerator = make_accelerator(settings)
    lengths = data.lengths()
    step = _Step(model, objective, settings, accelerator, echo)
    steps = optimizer_batches(
        lengths, settings.batch_size, settings.epochs, settings.data_order, np.random.default_rng(seed)
    )
    scheduler = step.prepare(len(steps))
    evaluate_after = set(evaluation_steps(len(steps), settings.eval_every)) if evaluate is not None else set()
    bar = tqdm(total=len(steps), desc=desc, disable=no_progress_bar(accelerator), leave=False)
    window, seen, start = _LogWindow(accelerator.device), 0, time.perf_counter()
    for index, batch in enumerate(steps):
        micro = [
            to_device(data.collate(rows), accelerator.device)
            for rows in micro_batches(batch, lengths, step.processes, step.rank, settings.minibatch_size)
        ]
        step.run(micro, index / len(steps), offset=step.rank * len(batch) // step.processes, window=window)
        scheduler.step()
        seen += len(batch)
        bar.update(1)
        if (index + 1) % log_every == 0 or index + 1 == len(steps):
            row = window.row(index + 1, seen, len(data), scheduler.get_last_lr()[0], start)
            bar.set_postfix({k[:3]: f"{row[k]:.3f}" for k in ("loss", "train_accuracy") if k in row})
            log(row)
            window = _LogWindow(accelerator.device)
        if index + 1 in evaluate_after:
            evaluate(step.model, accelerator, index + 1, len(steps))
            set_dropout(step.model, settings.dropout)
    bar.close()
    return step.model, accelerator


class _Step:
    """One optimizer step over its micro-batches: the (compiled or eager) model, the optimizer, and the
    whole-batch context a loss of the batch reads. With `settings.compile`, a compiler failure at the
    first training forward trains eager from then on, after one line (`echo`)."""

    def __init__(self, model, objective: Objective, settings: TrainSettings, accelerator: Accelerator, echo):
        self.eager, self.objective, self.echo = model, objective, echo
        self.settings, self.accelerator = settings, accelerator
        self.model = torch.compile(model, dynamic=True) if settings.compile else model

    def prepare(self, total: int) -> torch.optim.lr_scheduler.LambdaLR:
        """The optimizer and the model prepared by the accelerator; the schedule, stepped by hand once
        per optimizer step whatever the process count."""
        settings, accelerator = self.settings, self.accelerator
        opt_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
        optimizer = fused_or_default(
            opt_cls, parameter_groups(self.model, settings), lr=settings.lr, weight_decay=settings.weight_decay
        )
        self.model, self.optimizer = accelerator.prepare(self.model, optimizer)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(settings.lr_schedule, total, round(settings.warmup_frac * total))
        )
        set_dropout(self.model, settings.dropout)
        self.processes, self.rank = accelerator.num_processes, accelerator.process_index
        accum = accelerator.gradient_accumulation_steps
        self.whole_batch = getattr(self.objective, "whole_batch", False) and accum * self.processes > 1
        self.scale = accum * self.processes if self.whole_batch else 1  # see train's docstring; DDP averages
        self.may_fall_back = settings.compile and self.processes == 1  # until the first training forward has run
        return scheduler

    def run(self, micro: list[dict], step_frac: float, offset: int, window: _LogWindow) -> None:
        accelerator, settings = self.accelerator, self.settings
        context = self.guarded(lambda m: _step_logits(m, micro, accelerator)) if self.whole_batch else None
        for j, inputs in enumerate(micro):
            with accelerator.accumulate(self.model):
                size = len(inputs["index"])
                rows = slice(offset + j * size, offset + (j + 1) * size)
                whole = WholeBatch(*context, rows) if context is not None else None
                loss, logits = self.guarded(lambda m: self.objective(m, inputs, step_frac, whole))  # noqa: B023 (called at once)
                self.may_fall_back = False
                accelerator.backward(loss * self.scale)
                if accelerator.sync_gradients and settings.max_grad_norm:
                    accelerator.clip_grad_norm_(self.model.parameters(), settings.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad()
            window.add(loss, logits, inputs["labels"], size)

    def guarded(self, call):
        """A call into the model; in a compiled model's first step a compiler failure trains eager after one line."""
        try:
            return call(self.model)
        except Exception as err:  # noqa: BLE001 - a compiler failure surfaces at the first call
            if not self.may_fall_back:
                raise
            self.echo(
                f"  torch.compile failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:160]}); "
                "training eager"
            )
            self.model, self.may_fall_back = self.accelerator.prepare(self.eager), False
            set_dropout(self.model, self.settings.dropout)
            return call(self.model)


class _LogWindow:
    """The loss and training accuracy since the last log line. Its sums stay on the device and are read
    once per window: a read per micro-batch (`.item()`) would be a host-device sync on a GPU."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.correct = self.loss.clone()
        self.n, self.has_accuracy = 0, False

    def add(self, loss: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor, size: int) -> None:
        self.loss += loss.detach().float() * size
        if logits is not None:
            self.correct += (logits.argmax(-1) == labels.argmax(-1)).sum()
        self.has_accuracy = logits is not None
        self.n += size

    def row(self, step: int, seen: int, n_data: int, lr: float, start: float) -> dict:
        return {
            "step": step,
            "epoch": seen / n_data,
            "loss": self.loss.item() / self.n,
            **({"train_accuracy": self.correct.item() / self.n} if self.has_accuracy else {}),
            "lr": lr,
            "examples": seen,
            "examples_per_second": seen / (time.perf_counter() - start),
        }


def evaluation_steps(total: int, eval_every: float | None) -> list[int]:
    """The optimizer steps (1-based counts) after which a stage evaluates (`train.eval_every`): every
    `eval_every` steps (an int), or at every `eval_every` fraction of training (a float below 1), and
    always the last."""
    if eval_every is None:
        return []
    every = eval_every if eval_every >= 1 else eval_every * total
    points = {min(total, max(1, math.ceil(i * every - 1e-9))) for i in range(1, math.ceil(total / every + 1e-9) + 1)}
    return sorted(points | {total})


def parameter_groups(model: torch.nn.Module, settings: TrainSettings) -> list:
    """The trainable parameters; with `head_lr`, in two groups: the backbone's at lr, the head's
    (`model.head`) at head_lr x lr."""
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.head_lr == 1.0:
        return params
    head_ids = {id(p) for p in getattr(model, "_orig_mod", model).head.parameters()}  # compiled or not
    head = [p for p in params if id(p) in head_ids]
    rest = [p for p in params if id(p) not in head_ids]
    return [{"params": rest}, {"params": head, "lr": settings.lr * settings.head_lr}]


def fused_or_default(opt_cls, params, **kwargs) -> torch.optim.Optimizer:
    """Adam(W) with the fused kernel (one pass over every parameter instead of a loop over tensors,
    as Hugging Face's Trainer uses by default), else torch's default where it has none for these
    parameters."""
    try:
        return opt_cls(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # parameters on a device or of a dtype the kernel does not cover
        return opt_cls(params, **kwargs)


def optimizer_steps(n: int, batch_size: int, epochs: float) -> int:
    """How many optimizer steps `epochs` passes over `n` examples make (`optimizer_batches`)."""
    return max(1, math.floor(epochs * n + 1e-9) // batch_size)


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
    steps = optimizer_steps(n, batch_size, epochs)
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
    """The learning rate's factor at each optimizer step (0-based)."""
    if schedule == "linear":  # the Trainer's, as transformers.get_linear_schedule_with_warmup computes it
        return lambda step: (
            step / max(1, warmup) if step < warmup else max(0.0, (total - step) / max(1, total - warmup))
        )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def _step_logits(model, micro: list[dict], accelerator: Accelerator) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and labels of a whole optimizer batch, every process's micro-batches in order,
    without gradients: what a whole-batch loss reads for the rows of the other micro-batches."""
    logits = torch.cat([model(**inputs["inputs"]) for inputs in micro])
    labels = torch.cat([inputs["labels"] for inputs in micro])
    return accelerator.gather((logits.contiguous(), labels.contiguous()))
