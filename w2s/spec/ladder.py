"""The model ladder: `ModelSpec` (one rung) with its `LoraSpec` and `GenerativeSpec` options."""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from w2s.aliases import MODEL_ALIASES, alias_names
from w2s.spec.base import Strict

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
# torch.hub: owner/repo[:ref]/entrypoint (GitHub), or a local folder with a hubconf.py, then /entrypoint
_TORCH_HUB = re.compile(r"^torchhub:(?:[\w.\-]+/[\w.\-]+(?::[\w.\-/]+)?|[/.~].*)/\w+$")


IMAGE_PREFIXES = ("torchvision:", "torchhub:")  # image models by their loader (w2s/vision.py)


def looks_like_path(name: str) -> bool:
    """A model name meant as a local folder, by its spelling alone: /abs, ./rel, ../rel, ~user, a/b/c.
    Whether it exists is checked before a run (w2s/checks.py), not here: a spec may be written for
    another machine. A bare relative folder (my-ckpt, runs/ckpt) looks like a hub id instead and is
    resolved when loaded (w2s.models.resolve: the folder if it exists, else the hub)."""
    if name.startswith(IMAGE_PREFIXES):
        return False
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


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


class ModelSpec(Strict):
    """One rung of the model ladder, with optional per-model training overrides (as in the paper's sweep)."""

    name: str = Field(description="Alias (see `w2s list models`), Hugging Face hub id, local checkpoint folder, or an "
                                  "image model: torchvision:<arch>, torchhub:<owner>/<repo>[:<ref>]/<entry>.")
    label: str | None = Field(None, description="Name in results and folders; defaults to `name` (+ layer count).")
    num_layers: int | None = Field(None, gt=0, description="Keep only the first N transformer layers.")
    random_init: bool = Field(False, description="Random weights from the checkpoint's config (tiny test models).")
    config_overrides: dict[str, Any] = Field(default_factory=dict, description="Config fields to change before loading.")
    linear_probe: bool = Field(False, description="Freeze the backbone and train only the head.")
    train: bool = Field(
        True, description="false: a zero-shot supervisor. The model is used as it is, with its own classification "
                          "head (no training on half A); its predictions on half B are the weak labels. Only weak "
                          "models of pairs can be zero-shot."
    )
    class_map: list[int] | None = Field(
        None, description="Zero-shot models: the task class of each of the model's outputs (their probabilities are "
                          "summed per class). Default: the outputs are the task's classes, in order."
    )
    epochs: float | None = Field(None, gt=0, description="Overrides train.epochs and train.transfer_epochs for this model.")
    label_budget: int | None = Field(
        None, gt=1, description="Train this model's ground-truth stage on only the first N rows of half A: a "
                                "supervisor that learned from fewer labels (the weak model of a wide-gap experiment)."
    )
    lora: LoraSpec | None = Field(None, description="Train low-rank adapters (and the head) instead of all weights.")
    generative_finetune: GenerativeSpec | None = Field(
        None, description="true or {epochs, lr}: first fine-tune the causal LM on the task's texts (Burns et al. 4.3.1)."
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
        if self.name.startswith("torchhub:") and not self.trust_remote_code:
            raise ValueError(f"{self.name}: torch.hub runs the repository's hubconf.py; set trust_remote_code: true "
                             "if you trust it")
        return self

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        return self.name if self.num_layers is None else f"{self.name}@{self.num_layers}L"

    @field_validator("name")
    @classmethod
    def _plausible_model(cls, name: str) -> str:
        if name.startswith(IMAGE_PREFIXES):
            if re.fullmatch(r"torchvision:\w+", name) or _TORCH_HUB.match(name):
                return name
            raise ValueError(f"image model {name!r}: write torchvision:<arch> (torchvision:alexnet) or "
                             "torchhub:<owner>/<repo>[:<ref>]/<entrypoint> (torchhub:facebookresearch/dino:main/dino_vitb8; "
                             "a local folder with a hubconf.py in place of owner/repo)")
        if name in MODEL_ALIASES or looks_like_path(name):  # syntax only: folders are checked before a run
            return name
        near = difflib.get_close_matches(name, MODEL_ALIASES, n=1, cutoff=0.8)
        if near and "/" not in name:  # minilm-l9: a mistyped alias, not a hub id that fails at load time
            raise ValueError(f"unknown model alias {name!r}; did you mean {near[0]!r}? aliases: {alias_names()}")
        if _HUB_ID.match(name):
            return name
        raise ValueError(
            f"unknown model {name!r}: not an alias ({alias_names()}), a checkpoint folder like "
            "'./ckpt' or '/abs/ckpt', a hub id like 'gpt2' or 'org/name', or an image model like 'torchvision:alexnet' "
            "or 'torchhub:facebookresearch/dino:main/dino_vitb8'"
        )
