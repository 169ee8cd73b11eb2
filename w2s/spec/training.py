"""`TrainSpec`: optimisation settings shared by every stage (models may override lr and batch sizes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from w2s.spec.base import Strict

_PRECISION_NAMES = Literal["auto", "no", "fp32", "bf16", "fp16"]
# the checkpoint selection rules `select` names; what each chooses: w2s/experiment/selection.py
SELECTION_RULES = ("final", "weak_validation", "oracle")


@dataclass(frozen=True)
class Gold:
    """How much of a student's weak labels is replaced by ground truth, and which rows."""

    frac: float = 0.0  # a share of the rows it trains on (train.gold_frac)
    n: int = 0  # or a number of rows (train.gold_n)
    select: str = "random"  # train.gold_select

    def __bool__(self) -> bool:
        return bool(self.frac or self.n)

    def rows(self, available: int) -> int:
        """How many of `available` rows get their ground truth."""
        return min(self.n, available) if self.n else round(self.frac * available)

    def identity(self) -> dict:
        """What a student's key adds (only what is set: students without gold keep their keys)."""
        return {
            **({"gold_frac": self.frac} if self.frac else {}),
            **({"gold_n": self.n} if self.n else {}),
            **({"gold_select": self.select} if self and self.select != "random" else {}),
        }

    def name_part(self) -> str:
        """gold-0.25, gold-n50, gold-n50-least_confident."""
        amount = f"n{self.n}" if self.n else f"{self.frac:g}"
        return f"gold-{amount}" + (f"-{self.select}" if self.select != "random" else "")


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
    lr_schedule: Literal["cosine", "constant", "linear"] = Field(
        "cosine",
        description="After warmup_frac of the steps: cosine decay to 0, constant, or linear decay to 0 "
        "(Hugging Face Trainer's default schedule, warm-up included, as transformers computes it).",
    )
    warmup_frac: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(None, gt=0)
    head_lr: float = Field(
        1.0,
        gt=0,
        description="The classifier head's learning rate as a multiple of lr (the backbone's). The head "
        "starts at zero; with a small lr it barely leaves it in a short run, and its soft labels are "
        "then near uniform (docs/supervision.md, Confident supervisors).",
    )
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
        "measurement, compile time included, says it is faster; w2s/training/compiling.py).",
    )
    attention: Literal["auto", "sdpa", "math"] = Field(
        "auto",
        description="The kernel of the models' scaled-dot-product attention. sdpa: the one PyTorch picks. "
        "math: its matmul-and-softmax kernel. auto: math for stages without dropout where a "
        "once-per-machine measurement says it is faster (CPUs with native bf16, at short sequences), "
        "else sdpa (docs/spec.md, Attention kernels).",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 where the device computes it natively, fp16 on CUDA without bf16, "
        "else fp32 (w2s/training/precision.py); 'no' (or fp32) for fp32.",
    )

    eval_every: Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None,
        description="Evaluate on the validation split and test every N optimizer steps (an integer), or at "
        "every fraction of training (a number below 1), and at the last step: the learning curves, and "
        "the checkpoints `select` chooses from (w2s/experiment/selection.py).",
    )
    validation_frac: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of half B held out as the validation split (seeded): nobody trains on it; "
        "ground-truth stages validate on its ground truth, students on their supervisor's labels of it.",
    )
    select: list[Literal[SELECTION_RULES]] = Field(
        default_factory=lambda: ["final"],
        min_length=1,
        json_schema_extra={"examples": [["final", "weak_validation", "oracle"]]},
        description="Which checkpoint is a stage's result: final (the last step), weak_validation (best "
        "validation accuracy against the stage's own training labels), oracle (best test accuracy: an "
        "upper bound only). A list runs the students once per rule, each chain selecting by its rule; "
        "ground-truth stages train once for every rule.",
    )
    gold_frac: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.0],
        min_length=1,
        description="Share of the students' weak labels of half B replaced by ground truth (a seeded, "
        "nested choice: the rows of 0.25 are among those of 0.5); a list sweeps it.",
    )
    gold_n: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="Number of the students' weak labels of half B replaced by ground truth: a count "
        "instead of gold_frac's share (give one of them); a list sweeps it.",
    )
    gold_select: Literal["random", "least_confident"] = Field(
        "random",
        description="Which rows get ground truth: random (seeded), or least_confident (the supervisor's "
        "least confident predictions first, seeded ties); either way nested across amounts "
        "(w2s/experiment/gold.py).",
    )
    gold_only: bool = Field(
        False,
        description="Also train each direct student's model on its gold rows alone (ground truth, "
        "cross-entropy): the gold-only baseline at the same number of gold labels.",
    )

    @field_validator("eval_every", mode="before")
    @classmethod
    def _steps_or_fraction(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ValueError(f"{value} is not positive: give a number of steps, or a share of training below 1")
        if isinstance(value, float) and value >= 1:
            if not value.is_integer():
                raise ValueError(
                    f"{value} is neither a number of steps (a whole number) nor a share of training (below 1)"
                )
            return int(value)
        return value

    @field_validator("select", "gold_frac", "gold_n", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, int, float)) else value

    @property
    def gold_amounts(self) -> list[Gold]:
        """Each gold amount the students are trained at (Gold() for none)."""
        if self.gold_n != [0]:
            return [Gold(n=n, select=self.gold_select) for n in self.gold_n]
        return [Gold(frac=f, select=self.gold_select) for f in self.gold_frac]

    @model_validator(mode="after")
    def _selection(self) -> TrainSpec:
        for field, values in (("select", self.select), ("gold_frac", self.gold_frac), ("gold_n", self.gold_n)):
            if len(set(values)) < len(values):
                raise ValueError(f"{field}: duplicate entries in {values}")
        if self.gold_n != [0] and self.gold_frac != [0.0]:
            raise ValueError("gold_n: a count of gold labels, beside gold_frac's share; give one of them")
        if not any(self.gold_amounts):
            for field, set_ in (("gold_select", self.gold_select != "random"), ("gold_only", self.gold_only)):
                if set_:
                    raise ValueError(f"{field}: there are no gold labels; set gold_frac or gold_n as well")
        if self.eval_every is None:
            if self.select != ["final"]:
                raise ValueError(
                    f"select: {', '.join(r for r in self.select if r != 'final')} chooses among evaluated "
                    "checkpoints; set eval_every (steps, or a fraction of training such as 0.1)"
                )
            if self.validation_frac:
                raise ValueError("validation_frac: the validation split is only read when evaluating; set eval_every")
        if "weak_validation" in self.select and not self.validation_frac:
            raise ValueError("select: weak_validation needs a validation split; set validation_frac (e.g. 0.1)")
        return self

    @field_validator(
        "mixed_precision", mode="before", json_schema_input_type=Union[_PRECISION_NAMES, Literal[False], None]
    )
    @classmethod
    def _precision_names(cls, value: Any) -> Any:
        # YAML reads `no` as false; fp32 is what people call it; None (unset) is auto
        return "no" if value is False or value == "fp32" else "auto" if value is None else value
