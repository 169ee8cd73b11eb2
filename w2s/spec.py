"""The experiment spec: one validated Pydantic model that describes an experiment completely.

A spec is read from YAML, patched by `--set key=value` overrides, and validated before anything
runs. Every model forbids unknown keys, so a typo is an error, never a silently ignored setting.
Registries (datasets, models, losses) are consulted here, so `w2s validate` catches unknown names.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from w2s.aliases import MODEL_ALIASES


class SpecError(ValueError):
    """A problem with the user's input; the CLI prints it as one line and exits with code 2."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (or its type when it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# data


class DataSpec(Strict):
    """One dataset: a registered name, optionally read from local files instead of the hub."""

    name: str = Field(description="Registered dataset (see `w2s list datasets`).")
    id: str | None = Field(None, description="Name used in results and folders; defaults to `name`.")
    data_files: dict[str, str] | None = Field(
        None, description="Local files per split, e.g. {train: a.tsv, test: b.tsv} (csv/tsv/json/jsonl, .gz, parquet)."
    )
    column_names: list[str] | None = Field(None, description="Column names for header-less csv/tsv files.")
    text_columns: list[str] | None = Field(None, description="`local` dataset: columns joined into the text.")
    label_column: str | None = Field(None, description="`local` dataset: the binary label column.")
    n_train: int | None = Field(None, gt=1, description="Cap on the training pool (halves A and B together).")
    n_test: int | None = Field(None, gt=0, description="Cap on the test split.")
    test_frac: float = Field(0.2, gt=0, lt=1, description="Share of the pool held out as test when there is no test split.")
    data_dir: str | None = Field(None, description="Image datasets: a local copy, e.g. ImageNet in ImageFolder layout.")
    max_ctx: int = Field(512, gt=1, description="Maximum tokens per example.")
    ctx_policy: Literal["truncate", "drop"] = Field("truncate", description="What to do with longer examples.")

    @property
    def label(self) -> str:
        return self.id or self.name

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from w2s.data import DATASETS

        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}")
        return name

    @model_validator(mode="after")
    def _local_needs_columns(self) -> DataSpec:
        if self.name == "local":
            if not self.data_files:
                raise ValueError("the `local` dataset needs `data_files`")
            if not self.text_columns or not self.label_column:
                raise ValueError("the `local` dataset needs `text_columns` and `label_column`")
        elif self.text_columns or self.label_column:
            raise ValueError("`text_columns`/`label_column` only apply to the `local` dataset")
        if self.name == "imagenet" and not self.data_dir:
            raise ValueError("imagenet needs `data_dir`: your local copy with train/ and val/ class folders")
        if self.name != "imagenet" and self.data_dir:
            raise ValueError("`data_dir` only applies to the imagenet dataset")
        return self

    @property
    def is_image(self) -> bool:
        from w2s.data import DATASETS

        return DATASETS[self.name].modality == "image"


# ---------------------------------------------------------------------------------------------
# models

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


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

    name: str = Field(description="Alias (see `w2s list models`), Hugging Face hub id, or local checkpoint folder.")
    label: str | None = Field(None, description="Name in results and folders; defaults to `name` (+ layer count).")
    num_layers: int | None = Field(None, gt=0, description="Keep only the first N transformer layers.")
    random_init: bool = Field(False, description="Random weights from the checkpoint's config (tiny test models).")
    config_overrides: dict[str, Any] = Field(default_factory=dict, description="Config fields to change before loading.")
    linear_probe: bool = Field(False, description="Freeze the backbone and train only the head.")
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

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        return self.name if self.num_layers is None else f"{self.name}@{self.num_layers}L"

    @field_validator("name")
    @classmethod
    def _plausible_model(cls, name: str) -> str:
        if name in MODEL_ALIASES or Path(name).expanduser().is_dir():
            return name
        near = difflib.get_close_matches(name, MODEL_ALIASES, n=1, cutoff=0.8)
        if near and "/" not in name:  # minilm-l9: a mistyped alias, not a hub id that fails at load time
            raise ValueError(f"unknown model alias {name!r}; did you mean {near[0]!r}? aliases: "
                             f"{', '.join(MODEL_ALIASES)}")  # fmt: skip
        if _HUB_ID.match(name):
            return name
        if re.fullmatch(r"torchvision:\w+", name):  # image models by torchvision architecture name
            return name
        raise ValueError(
            f"unknown model {name!r}: not an alias ({', '.join(MODEL_ALIASES)}), an existing checkpoint folder, "
            "a hub id like 'gpt2' or 'org/name', or an image model like 'torchvision:alexnet'"
        )


# ---------------------------------------------------------------------------------------------
# training


_PRECISION_NAMES = Literal["auto", "no", "fp32", "bf16", "fp16"]


class TrainSpec(Strict):
    epochs: float = Field(2, gt=0, description="Epochs for ground-truth training (weak supervisor, ceiling).")
    transfer_epochs: float | None = Field(None, gt=0, description="Epochs for weak-to-strong training; default `epochs`.")
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, gt=0, description="Examples per optimizer step, over all processes.")
    minibatch_size: int = Field(8, gt=0, description="Examples per forward pass per process (memory knob).")
    eval_batch_size: int = Field(64, gt=0)
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_frac: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(None, gt=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the device computes it natively, fp16 on CUDA without bf16, "
        "else fp32 (w2s/precision.py); 'no' (or fp32) for fp32."
    )

    @field_validator("mixed_precision", mode="before", json_schema_input_type=Union[_PRECISION_NAMES, Literal[False], None])
    @classmethod
    def _precision_names(cls, value: Any) -> Any:
        # YAML reads `no` as false; fp32 is what people call it; None (unset) is auto
        return "no" if value is False or value == "fp32" else "auto" if value is None else value


# ---------------------------------------------------------------------------------------------
# losses: a discriminated union on `name`; any of them can clean the weak labels with a probe first


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


class LogconfLoss(_ConfidenceLoss):
    """Auxiliary confidence loss (Burns et al. 2023, sec. 4.3.2)."""

    name: Literal["logconf"] = "logconf"


class ProductLoss(_Loss):
    """Cross-entropy against weak^alpha * student^beta (renormalised)."""

    name: Literal["product"] = "product"
    alpha: float = Field(1.0, ge=0)
    beta: float = Field(1.0, ge=0)
    warmup_frac: float = Field(0.1, ge=0, le=1, description="Plain cross-entropy before this share of training.")


class WindowLoss(_Loss):
    """Cross-entropy only on examples where the student is unsure: |p_student - 0.5| < radius."""

    name: Literal["window"] = "window"
    radius: float | Literal["midweak"] = Field(
        0.15, description="Train where |p_student - 0.5| < radius: a number in (0, 0.5], or 'midweak' (median weak confidence)."
    )

    @field_validator("radius", mode="before")
    @classmethod
    def _in_range(cls, value: Any) -> Any:
        # checked here, before the float|'midweak' union, so a bad value gives one clear message
        ok = value == "midweak" or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 0.5)
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
    """E.g. `xent`, `MyLoss` (custom), `xent+knn_relabel` (with a probe); also from a dumped loss dict
    (stage configs, W&B), so reports label stages exactly as runs do."""
    fields = loss if isinstance(loss, dict) else loss.model_dump()
    if fields.get("label"):
        return fields["label"]
    name = fields["path"].split(":")[-1] if fields["name"] == "custom" and fields.get("path") else fields["name"]
    probe = fields.get("probe")
    return f"{name}+{probe['method']}_{probe['mode']}" if probe else name


# ---------------------------------------------------------------------------------------------
# tracking


class TrackingSpec(Strict):
    mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="auto: online when W&B credentials are present, offline otherwise."
    )
    project: str = "w2s"
    entity: str | None = None
    log_every: int = Field(10, gt=0, description="Optimizer steps between training log lines.")


# ---------------------------------------------------------------------------------------------
# the experiment


class ExperimentSpec(Strict):
    name: str = Field(pattern=r"^[\w.\-]+$", description="Experiment name: the results folder and W&B group.")
    output_dir: str = Field("runs", description="Results land in <output_dir>/<name>/.")
    datasets: list[DataSpec] = Field(min_length=1, description="One dataset or a list.")
    models: list[ModelSpec] = Field(min_length=1, description="The ladder, weakest first.")
    pairs: Literal["upward", "all"] | list[tuple[str, str]] = Field(
        "upward", description="upward: every weak <= strong on the ladder; all; or explicit [weak, strong] labels."
    )
    losses: list[LossSpec] = Field(default_factory=lambda: [XentLoss()], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    bootstrap: list[list[str]] = Field(default_factory=list, description="Chains such as [m1, m2, m4].")
    strong_to_strong_iters: int = Field(0, ge=0, description="Extra rounds in which the student relabels half B.")
    train: TrainSpec = Field(default_factory=TrainSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    save_model: bool = Field(False, description="Keep model weights in every stage folder.")

    @field_validator("datasets", mode="before", json_schema_input_type=Union[DataSpec, list[DataSpec]])
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        _unique("datasets", [d.label for d in self.datasets])
        labels = [m.display for m in self.models]
        _unique("models", labels)
        _unique("losses", [loss_label(loss) for loss in self.losses])
        _unique("seeds", self.seeds)
        named = [("pairs", p) for p in self.pairs] if isinstance(self.pairs, list) else []
        named += [("bootstrap", chain) for chain in self.bootstrap]
        for key, group in named:
            for label in group:
                if label not in labels:
                    raise ValueError(f"{key}: unknown model {label!r}; the ladder has {', '.join(labels)}")
        for chain in self.bootstrap:
            if len(chain) < 3:
                raise ValueError(f"bootstrap: a chain needs at least 3 models, got {chain}")
        self._check_modality()
        return self

    def _check_modality(self) -> None:
        """Image and text experiments use different models and methods: say so before anything runs."""
        images = {d.is_image for d in self.datasets}
        if len(images) > 1:
            raise ValueError("datasets: image and text datasets need different models; put them in separate specs")
        if images == {True}:
            for i, model in enumerate(self.models):
                for field in ("generative_finetune", "lora", "num_layers"):
                    if getattr(model, field) is not None:
                        raise ValueError(f"models.{i}.{field}: not available for image datasets (models there are "
                                         "linear probes on embeddings)")  # fmt: skip
            for i, loss in enumerate(self.losses):
                if loss.probe is not None and loss.probe.layer != "last":
                    raise ValueError(f"losses.{i}.probe.layer: image models give one embedding; use layer: last")
        else:
            for i, model in enumerate(self.models):
                if model.name.startswith("torchvision:"):
                    raise ValueError(f"models.{i}.name: {model.name!r} is an image model; the datasets here are text")

    def model(self, label: str) -> ModelSpec:
        return next(m for m in self.models if m.display == label)


def _unique(key: str, values: list) -> None:
    dupes = sorted({str(v) for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"{key}: duplicate entries {', '.join(dupes)} (set `label`/`id` to tell them apart)")


# ---------------------------------------------------------------------------------------------
# loading


def load_spec(path: str | Path, overrides: list[str] = ()) -> ExperimentSpec:
    """Read a YAML spec, apply `key.sub=value` overrides (values parsed as YAML), validate."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.y*ml"))[:5]
        inside = f"; YAML files in it: {', '.join(found)}" if found else ""
        raise SpecError(f"{path}: is a directory; give a spec file (YAML){inside}")
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file; a spec is YAML (see experiments/quickstart.yaml)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping of keys such as name, datasets, models")
    for item in overrides:
        apply_override(raw, item)
    return validate_spec(raw, source=str(path))


def apply_override(raw: dict, item: str) -> None:
    """`a.b.0.c=value`: set a nested key (list items by index); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4 or seeds=[0,1]")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise SpecError(f"--set {key}: value {text!r} is not valid YAML") from None
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        try:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        except (ValueError, IndexError, AttributeError):
            raise SpecError(f"--set {key}: {'.'.join(parts[: i + 1])} does not exist in the spec") from None
    last = parts[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise SpecError(f"--set {key}: no list item {last!r}") from None
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise SpecError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")


def validate_spec(raw: dict, source: str = "spec") -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(f"{source}: {describe_error(err, raw)}") from None


def describe_error(err: ValidationError, raw: Any) -> str:
    """The first validation error as one line: the dotted key, what is wrong, and what is valid."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    # pydantic puts union tags into the location (e.g. losses.0.logconf.aux_coef); drop them
    loc = [p for p in loc if p not in (*_LOSS_CLASSES, "list[tuple[str,str]]")]
    loc = [p for p in loc if not p.startswith(("literal[", "function-", "constrained-"))]
    key = ".".join(loc)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1], raw)
        msg = f"unknown key; valid keys here: {', '.join(valid)}" if valid else "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    return f"{key}: {msg}" if key else msg  # whole-spec checks name their keys in the message


def _valid_keys(parent: list[str], raw: Any) -> list[str]:
    """The field names allowed at `parent` (a validation location), by walking the spec models."""
    model: Any = ExperimentSpec
    node = raw
    for part in parent:
        if part.isdigit():  # a list item: same model, the item's raw value
            node = node[int(part)] if isinstance(node, list) and int(part) < len(node) else node
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return []
        node = node.get(part, {}) if isinstance(node, dict) else {}
        model = _model_in(field.annotation)
    if model is XentLoss and isinstance(node, dict):  # the loss union: pick the member by its name
        model = _LOSS_CLASSES.get(node.get("name"), model)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    fields = list(model.model_fields)
    return sorted(fields, key=lambda f: f != "name")  # `name` first: loss models inherit label and probe



def _model_in(annotation: Any) -> Any:
    """The first BaseModel class inside an annotation such as list[DataSpec] or the loss union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def json_schema() -> dict:
    return ExperimentSpec.model_json_schema()
