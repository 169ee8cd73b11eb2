"""The experiment spec: one validated Pydantic model that describes an experiment completely.

A spec is read from YAML, patched by `--set key=value` overrides, and validated before anything
runs. Every model forbids unknown keys, so a typo is an error, never a silently ignored setting.
Registries (datasets, models, losses) are consulted here, so `w2s validate` catches unknown names.

Submodules (import from `w2s.spec` itself; every public name is re-exported here). Its errors,
`SpecError` and `first_line`, are `w2s.errors`'s, as every layer's are.

- `base`: `Strict`, the base model that forbids unknown keys.
- `datasets`: `DataSpec`, checked against the dataset registry.
- `ladder`: `ModelSpec`, `LoraSpec`, `GenerativeSpec`: the model ladder.
- `training`: `TrainSpec`, and `SELECTION_RULES` (the names `train.select` takes).
- `loss_specs`: the loss union `LossSpec` and its members, `loss_label`, `describe_losses`.
- `experiment`: `TrackingSpec` and `ExperimentSpec` with its whole-spec checks, `model_pairs`.
- `recipes`: named recipes (`recipe: reference`), expanded before validation; `describe_recipe`.
- `loading`: `load_spec`, `read_spec`, `apply_override`, `validate_spec`, `describe_error`, `json_schema`.
"""

from __future__ import annotations

from w2s.spec.base import Strict
from w2s.spec.datasets import DataSpec, dataset_label
from w2s.spec.experiment import EnsembleSpec, ExperimentSpec, TrackingSpec, model_pairs
from w2s.spec.ladder import GenerativeSpec, LoraSpec, ModelSpec, model_label
from w2s.spec.loading import (
    apply_override,
    describe_error,
    json_schema,
    load_spec,
    pair_spec,
    read_spec,
    validate_spec,
)
from w2s.spec.loss_specs import (
    CustomLoss,
    EntropyLoss,
    KLLoss,
    LogconfLoss,
    LossSpec,
    ProbeSpec,
    ProductLoss,
    WindowLoss,
    XentLoss,
    describe_losses,
    loss_label,
)
from w2s.spec.recipes import RECIPES, describe_recipe
from w2s.spec.training import SELECTION_RULES, TrainSpec

__all__ = [
    "CustomLoss",
    "DataSpec",
    "EnsembleSpec",
    "EntropyLoss",
    "ExperimentSpec",
    "GenerativeSpec",
    "KLLoss",
    "LogconfLoss",
    "LoraSpec",
    "LossSpec",
    "ModelSpec",
    "ProbeSpec",
    "ProductLoss",
    "RECIPES",
    "SELECTION_RULES",
    "Strict",
    "TrackingSpec",
    "TrainSpec",
    "WindowLoss",
    "XentLoss",
    "apply_override",
    "dataset_label",
    "describe_error",
    "describe_losses",
    "describe_recipe",
    "json_schema",
    "load_spec",
    "loss_label",
    "model_label",
    "model_pairs",
    "pair_spec",
    "read_spec",
    "validate_spec",
]
