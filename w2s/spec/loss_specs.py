"""Losses: a discriminated union on `name`; any of them can clean the weak labels with a probe first."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from w2s.spec.base import Strict


class ProbeSpec(Strict):
    """Fit a probe on the strong model's untrained activations of half B to the weak labels, then relabel
    half B with its predictions or drop the rows where it disagrees most with the weak labels."""

    method: Literal["knn", "logreg", "topo"] = Field(
        "knn", description="k-nearest neighbours, logistic regression, TopoCC."
    )
    mode: Literal["relabel", "filter"] = "relabel"
    layer: Annotated[int, Field(ge=0)] | Literal["middle", "last"] = Field(
        "middle", description="Hidden layer (0 = embeddings), 'middle' or 'last' (image models: last)."
    )
    k: int = Field(10, gt=0, description="Neighbours (knn, topo).")
    contamination: float = Field(0.1, ge=0, lt=1, description="filter: share of half B dropped.")


class _Loss(Strict):
    label: str | None = None
    probe: ProbeSpec | None = Field(None, description="Clean the weak labels with a probe before training.")


class XentLoss(_Loss):
    """Cross-entropy against the (soft) weak labels."""

    name: Literal["xent"] = "xent"


class _ConfidenceLoss(_Loss):
    """Weak labels mixed with the student's own predictions, the mix warming up (logconf, entropy)."""

    aux_coef: float = Field(
        0.5, ge=0, le=1, description="Final weight of the student's own (logconf: hardened) predictions."
    )
    warmup_frac: float = Field(0.2, ge=0, le=1, description="Share of training over which the weight rises from 0.")


# `schedule: reference` reproduces OpenAI's weak_to_strong/loss.py exactly (docs/spec.md, Losses; docs/reference.md)
Schedule = Literal["w2s", "reference"]


class LogconfLoss(_ConfidenceLoss):
    """Auxiliary confidence loss (Burns et al. 2023, sec. 4.3.2)."""

    name: Literal["logconf"] = "logconf"
    schedule: Schedule = Field(
        "w2s",
        description="w2s: the weight rises linearly to aux_coef over warmup_frac (default 0.2). reference: "
        "aux_coef x step_frac until warmup_frac (default 0.1), then aux_coef, as OpenAI's code.",
    )
    warmup_frac: float = Field(
        0.2, ge=0, le=1, description="Warm-up share of training; default 0.2 (w2s schedule) or 0.1 (reference)."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_warmup(cls, data: Any) -> Any:
        """The reference's default warm-up is 0.1: `schedule: reference` alone reproduces it."""
        if isinstance(data, dict) and data.get("schedule") == "reference" and "warmup_frac" not in data:
            return {**data, "warmup_frac": 0.1}
        return data


class ProductLoss(_Loss):
    """Cross-entropy against weak^alpha * student^beta (renormalised)."""

    name: Literal["product"] = "product"
    alpha: float = Field(1.0, ge=0)
    beta: float = Field(1.0, ge=0)
    warmup_frac: float = Field(
        0.1,
        ge=0,
        le=1,
        description="w2s schedule: plain cross-entropy before this share of "
        "training. The reference defines it and never uses it.",
    )
    schedule: Schedule = Field(
        "w2s",
        description="w2s: cross-entropy until warmup_frac, then the product. "
        "reference: the product from the first step, as OpenAI's code.",
    )


class WindowLoss(_Loss):
    """Cross-entropy only on examples where the student is unsure: |p_student - 0.5| < radius."""

    name: Literal["window"] = "window"
    radius: float | Literal["midweak"] = Field(
        0.15,
        description="Train where |p_student - 0.5| < radius: a number in (0, 0.5], or 'midweak' (median weak confidence).",
    )

    @field_validator("radius", mode="before")
    @classmethod
    def _in_range(cls, value: Any) -> Any:
        # checked here, before the float|'midweak' union, so a bad value gives one clear message
        ok = value == "midweak" or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 0.5
        )
        if not ok:
            raise ValueError(f"radius must be a number in (0, 0.5] or 'midweak', got {value!r}")
        return value


class EntropyLoss(_ConfidenceLoss):
    """Log-confidence with soft (not hardened) student targets: entropy minimisation."""

    name: Literal["entropy"] = "entropy"


class KLLoss(_Loss):
    """KL(weak || student): cross-entropy minus the weak labels' entropy (0 for a perfect fit)."""

    name: Literal["kl"] = "kl"


class CustomLoss(BaseModel):
    """A user's loss: `path` is `module:attribute`; every other key is passed to it as a keyword argument."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal["custom"] = "custom"
    label: str | None = None
    probe: ProbeSpec | None = None
    path: str = Field(pattern=r"^[\w.]+:[\w.]+$", description="module:attribute, e.g. mypkg.losses:MyLoss")


_LOSS_MODELS = (XentLoss, LogconfLoss, ProductLoss, WindowLoss, EntropyLoss, KLLoss, CustomLoss)
_LOSS_CLASSES = {model.model_fields["name"].default: model for model in _LOSS_MODELS}  # name -> spec model
LossSpec = Annotated[Union[_LOSS_MODELS], Field(discriminator="name")]


def describe_losses() -> list[tuple[str, str]]:
    """(name, first docstring line) of every loss a spec can name, for `w2s list losses` (no torch needed)."""
    return [(name, (model.__doc__ or "").strip().splitlines()[0]) for name, model in _LOSS_CLASSES.items()]


def loss_label(loss: BaseModel | dict) -> str:
    """E.g. `xent`, `MyLoss` (custom), `logconf-reference` (the reference schedule), `xent+knn_relabel`
    (with a probe); also from a dumped loss dict (stage configs, W&B), so reports label stages exactly
    as runs do."""
    fields = loss if isinstance(loss, dict) else loss.model_dump()
    if fields.get("label"):
        return fields["label"]
    name = fields["path"].split(":")[-1] if fields["name"] == "custom" and fields.get("path") else fields["name"]
    if fields.get("schedule") == "reference":
        name += "-reference"
    probe = fields.get("probe")
    return f"{name}+{probe['method']}_{probe['mode']}" if probe else name
