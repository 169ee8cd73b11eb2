"""`TrainSettings`: one stage's training settings, resolved from the spec's `train` and the model's
overrides in the run folder's environment (`w2s.experiment.plan.resolve_settings`). The loop reads
them; the stage key hashes them (`w2s.experiment.keys`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    epochs: float
    lr: float
    batch_size: int
    minibatch_size: int
    eval_batch_size: int
    optimizer: str
    weight_decay: float
    lr_schedule: str
    warmup_frac: float
    max_grad_norm: float | None
    mixed_precision: str
    dropout: bool = False
    data_order: str = "grouped"
    compile: bool = False  # torch.compile, as the run folder's environment resolved it
    eval_every: float | None = None  # evaluation points (w2s.training.loop.evaluation_steps); None: the final step only
    validation_frac: float = 0.0  # share of half B held out for validation
    attention: str = "sdpa"  # the resolved attention kernel, sdpa or math (w2s.training.attention)
    head_lr: float = 1.0  # the head's learning rate, as a multiple of lr
