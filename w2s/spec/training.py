"""`TrainSpec`: optimisation settings shared by every stage (models may override lr and batch sizes)."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator

from w2s.spec.base import Strict

_PRECISION_NAMES = Literal["auto", "no", "fp32", "bf16", "fp16"]


class TrainSpec(Strict):
    epochs: float = Field(2, gt=0, description="Epochs for ground-truth training (weak supervisor, ceiling).")
    transfer_epochs: float | None = Field(
        None, gt=0, description="Epochs for weak-to-strong training; default `epochs`."
    )
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, gt=0, description="Examples per optimizer step, over all processes.")
    minibatch_size: int = Field(8, gt=0, description="Examples per forward pass per process (memory knob).")
    eval_batch_size: int = Field(64, gt=0)
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_frac: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(None, gt=0)
    dropout: bool = Field(
        False,
        description="Dropout while training. false (the default, as the reference): the model trains in "
        "eval mode; docs/reference.md measured both on SST-2 (PGR the same within noise).",
    )
    data_order: Literal["grouped", "fixed"] = Field(
        "grouped",
        description="grouped: reshuffled every epoch, batches of similar lengths (little padding). "
        "fixed: shuffled once, the same order every epoch (the reference's).",
    )
    compile: bool | Literal["auto"] = Field(
        False,
        description="torch.compile the model: true, false, or auto (compile where a once-per-machine "
        "measurement, compile time included, says it is faster; w2s/compiling.py).",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 where the device computes it natively, fp16 on CUDA without bf16, "
        "else fp32 (w2s/precision.py); 'no' (or fp32) for fp32.",
    )

    @field_validator(
        "mixed_precision", mode="before", json_schema_input_type=Union[_PRECISION_NAMES, Literal[False], None]
    )
    @classmethod
    def _precision_names(cls, value: Any) -> Any:
        # YAML reads `no` as false; fp32 is what people call it; None (unset) is auto
        return "no" if value is False or value == "fp32" else "auto" if value is None else value
