"""The model ladder: `ModelSpec` (one rung) with its `LoraSpec` and `GenerativeSpec` options."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from w2s.models.names import parse_model_name
from w2s.spec.base import Strict


class LoraSpec(Strict):
    """Low-rank adapters (through `peft`, the optional extra `w2s[lora]`) for models too big to fine-tune fully."""

    r: int = Field(8, gt=0, description="Adapter rank.")
    alpha: float = Field(16, gt=0, description="Scaling: updates are multiplied by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = Field(
        "all-linear", description="Module names to adapt, e.g. [query, value]; 'all-linear' adapts every linear layer."
    )


class GenerativeSpec(Strict):
    """Language-modelling finetuning on the task's texts (no labels) before the head is added (causal LMs)."""

    epochs: float = Field(1, gt=0)
    lr: float | None = Field(None, gt=0, description="Default: the model's training lr.")


def model_label(fields: dict) -> str:
    """A model's display label from its spec fields (a ModelSpec's, or a dumped one from a stage
    config or W&B run): its `label`, else its name, with `@<n>L` when cut to n layers."""
    if fields.get("label"):
        return fields["label"]
    name, layers = fields.get("name"), fields.get("num_layers")
    return name if layers is None else f"{name}@{layers}L"


class ModelSpec(Strict):
    """One rung of the model ladder, with optional per-model training overrides (as in the paper's sweep)."""

    name: str = Field(
        description="Alias (see `w2s list models`), Hugging Face hub id, local checkpoint folder, or an "
        "image model: torchvision:<arch>, torchhub:<owner>/<repo>[:<ref>]/<entry>."
    )
    label: str | None = Field(None, description="Name in results and folders; defaults to `name` (+ layer count).")
    num_layers: int | None = Field(None, gt=0, description="Keep only the first N transformer layers.")
    random_init: bool = Field(False, description="Random weights from the checkpoint's config (tiny test models).")
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Config fields to change before loading."
    )
    linear_probe: bool = Field(False, description="Freeze the backbone and train only the head.")
    train: bool = Field(
        True,
        description="false: a zero-shot supervisor. The model is used as it is, with its own classification "
        "head (no training on half A); its predictions on half B are the weak labels. Only weak "
        "models of pairs can be zero-shot.",
    )
    class_map: list[int] | None = Field(
        None,
        description="Zero-shot models: the task class of each of the model's outputs (their probabilities are "
        "summed per class). Default: the outputs are the task's classes, in order.",
    )
    epochs: float | None = Field(
        None, gt=0, description="Overrides train.epochs and train.transfer_epochs for this model."
    )
    label_budget: int | None = Field(
        None,
        gt=1,
        description="Train this model's ground-truth stage on only the first N rows of half A: a "
        "supervisor that learned from fewer labels (the weak model of a wide-gap experiment).",
    )
    lora: LoraSpec | None = Field(None, description="Train low-rank adapters (and the head) instead of all weights.")
    generative_finetune: GenerativeSpec | None = Field(
        None,
        description="true or {epochs, lr}: first fine-tune the causal LM on the task's texts (Burns et al. 4.3.1).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    pooling: Literal["auto", "mean", "last"] = Field("auto", description="auto: last token for causal LMs, else mean.")
    gradient_checkpointing: bool = False
    trust_remote_code: bool = Field(False, description="Run code shipped with the checkpoint; off unless you trust it.")
    lr: float | None = Field(None, gt=0, description="Overrides train.lr for this model.")
    batch_size: int | None = Field(None, gt=0, description="Overrides train.batch_size for this model.")
    minibatch_size: int | None = Field(None, gt=0, description="Overrides train.minibatch_size for this model.")
    eval_batch_size: int | None = Field(None, gt=0, description="Overrides train.eval_batch_size for this model.")

    @field_validator("generative_finetune", mode="before", json_schema_input_type=Union[bool, GenerativeSpec, None])
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value

    @field_validator("class_map")
    @classmethod
    def _class_indices(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0):
            raise ValueError("class_map lists a task class index (0, 1, ...) for each of the model's outputs")
        return value

    @model_validator(mode="after")
    def _hub_code_is_trusted(self) -> ModelSpec:
        if parse_model_name(self.name).kind == "torchhub" and not self.trust_remote_code:
            raise ValueError(
                f"{self.name}: torch.hub runs the repository's hubconf.py; set trust_remote_code: true if you trust it"
            )
        return self

    @property
    def display(self) -> str:
        return model_label(self.model_dump(include={"name", "label", "num_layers"}))

    @field_validator("name")
    @classmethod
    def _plausible_model(cls, name: str) -> str:
        # syntax only: whether a folder exists is checked before a run (w2s/experiment/checks.py)
        parse_model_name(name)
        return name
