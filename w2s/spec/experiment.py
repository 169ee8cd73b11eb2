"""`ExperimentSpec`: the whole experiment (datasets, ladder, losses, training, tracking) and its cross-checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from w2s.models.names import parse_model_name
from w2s.spec.base import Strict
from w2s.spec.datasets import DataSpec
from w2s.spec.ladder import ModelSpec
from w2s.spec.loss_specs import LossSpec, XentLoss, loss_label
from w2s.spec.recipes import RECIPES, expand_recipe
from w2s.spec.training import TrainSpec


class TrackingSpec(Strict):
    mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="auto: online when W&B credentials are present, offline otherwise."
    )
    project: str = "w2s"
    entity: str | None = None
    log_every: int = Field(10, gt=0, description="Optimizer steps between training log lines.")


class EnsembleSpec(Strict):
    """Several weak supervisors as one: their mean soft label, or their majority vote."""

    label: str = Field(
        pattern=r"^[\w.+@\-]+$",  # it names folders and stands in chains (a->b): no spaces, "/" or ">"
        max_length=100,
        description="Its name in pairs, results and folders: letters, digits and _ . + @ -.",
    )
    models: list[str] = Field(
        min_length=2,
        description="Model labels of the ladder; a label given n times is that model trained n times, "
        "each with its own training seed (same data split).",
    )
    combine: Literal["mean", "vote"] = Field(
        "mean",
        description="mean: the mean of the members' probabilities; vote: the majority class "
        "(ties: the class of the mean), as a hard label.",
    )


class ExperimentSpec(Strict):
    name: str = Field(
        pattern=r"^[\w.\-]+$", max_length=100, description="Experiment name: the results folder and W&B group."
    )
    recipe: Literal[tuple(RECIPES)] = Field(
        "w2s",
        description="reference: every setting in which OpenAI's weak_to_strong code trains differently, "
        "at once (w2s/spec/recipes.py, docs/reference.md); settings the spec writes win.",
    )
    output_dir: str = Field("runs", description="Results land in <output_dir>/<name>/.")
    datasets: list[DataSpec] = Field(min_length=1, description="One dataset or a list.")
    models: list[ModelSpec] = Field(min_length=1, description="The ladder, weakest first.")
    pairs: Literal["upward", "all"] | list[tuple[str, str]] = Field(
        "upward", description="upward: every weak <= strong on the ladder; all; or explicit [weak, strong] labels."
    )
    losses: list[LossSpec] = Field(default_factory=lambda: [XentLoss()], min_length=1)
    seeds: list[Annotated[int, Field(ge=0, lt=2**32)]] = Field(default_factory=lambda: [0], min_length=1)
    ensembles: list[EnsembleSpec] = Field(
        default_factory=list,
        description="Weak supervisors made of several models (co-supervision); a pair's weak model may "
        "name one. With pairs upward/all, each ensemble also supervises every trained model at or "
        "above its strongest member (all: every trained model).",
    )
    bootstrap: list[list[str]] = Field(default_factory=list, description="Chains such as [m1, m2, m4].")
    strong_to_strong_iters: int = Field(0, ge=0, description="Extra rounds in which the student relabels half B.")
    ceiling: Literal["half_a", "half_b"] = Field(
        "half_a",
        description="Which half the strong ceiling trains on with ground truth: half_a (as the weak "
        "supervisor; the reference's sweep.py) or half_b (the rows the students train on "
        "with weak labels; the reference's train_weak_to_strong.py).",
    )
    train: TrainSpec = Field(default_factory=TrainSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    save_model: bool = Field(False, description="Keep model weights in every stage folder.")

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        return expand_recipe(data)

    @field_validator("datasets", mode="before", json_schema_input_type=Union[DataSpec, list[DataSpec]])
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if value.strip(".") == "":
            raise ValueError(f"{value!r} is not a folder name; results go to <output_dir>/<name>/")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        _unique("datasets", [d.label for d in self.datasets])
        labels = [m.display for m in self.models]
        _unique("models", labels)
        _unique("losses", [loss_label(loss) for loss in self.losses])
        _unique("seeds", self.seeds)
        ensembles = [e.label for e in self.ensembles]
        _unique("ensembles", ensembles)
        for i, ensemble in enumerate(self.ensembles):
            if ensemble.label in labels:
                raise ValueError(f"ensembles.{i}.label: {ensemble.label!r} is a model of the ladder; pick another")
            for label in ensemble.models:
                if label in labels and ensemble.models.count(label) > 1 and not self.model(label).train:
                    raise ValueError(
                        f"ensembles.{i}.models: {label} is zero-shot (train: false): it predicts the same "
                        "every time, so repeating it adds nothing"
                    )
                if label not in labels:
                    raise ValueError(
                        f"ensembles.{i}.models: unknown model {label!r}; the ladder has {', '.join(labels)}"
                    )
        if isinstance(self.pairs, list):
            known = f"the ladder has {', '.join(labels)}" + (
                f"; ensembles: {', '.join(ensembles)}" if ensembles else ""
            )
            for weak, strong in self.pairs:
                if strong in ensembles:
                    raise ValueError(
                        f"pairs: {strong!r} is an ensemble; an ensemble only supervises (a pair's weak side)"
                    )
                for label in (weak, strong):
                    if label not in labels + ensembles:
                        raise ValueError(f"pairs: unknown model {label!r}; {known}")
        for chain in self.bootstrap:
            for label in chain:
                if label not in labels:
                    raise ValueError(f"bootstrap: unknown model {label!r}; the ladder has {', '.join(labels)}")
        for chain in self.bootstrap:
            if len(chain) < 3:
                raise ValueError(f"bootstrap: a chain needs at least 3 models, got {chain}")
        if not model_pairs(self) and not self.bootstrap:
            raise ValueError(
                "pairs: no weak -> strong pair to train: every student must train, and here "
                "every model is zero-shot (train: false) or pairs is empty"
            )
        self._check_modality()
        self._check_zero_shot()
        self._check_classes()
        return self

    def _check_zero_shot(self) -> None:
        """Zero-shot models (`train: false`) only supervise: nothing trains them, so they have no ceiling
        and cannot be students; `halves: same` needs every supervisor to be zero-shot."""
        trains = {m.display: m.train for m in self.models}
        index = {m.display: i for i, m in enumerate(self.models)}
        strong = [(f"pairs {[w, s]}", s) for w, s in self.pairs] if isinstance(self.pairs, list) else []
        strong = [(where, label) for where, label in strong if label in trains]
        strong += [(f"bootstrap {chain}", label) for chain in self.bootstrap for label in chain[1:]]
        for where, label in strong:
            if not trains[label]:
                raise ValueError(
                    f"models.{index[label]}.train: {label} is zero-shot (train: false), so it can only "
                    f"supervise, but {where} makes it a student"
                )
        for i, model in enumerate(self.models):
            if model.train and model.class_map is not None:
                raise ValueError(
                    f"models.{i}.class_map: only for zero-shot models (train: false), whose own "
                    "outputs become the weak labels"
                )
            if not model.train and model.label_budget is not None:
                raise ValueError(
                    f"models.{i}.label_budget: {model.display} is zero-shot (train: false): it trains "
                    "on no labels, so a budget means nothing"
                )
        for i, dataset in enumerate(self.datasets):
            if dataset.halves != "same":
                continue
            weak_models = [w for w, _ in model_pairs(self)] + [chain[0] for chain in self.bootstrap]
            for weak in _members(self, weak_models):
                if trains[weak]:
                    raise ValueError(
                        f"datasets.{i}.halves: same trains every model on the whole pool, so {weak} "
                        "would label the rows it trained on; it needs zero-shot supervisors "
                        "(train: false) only, or halves: disjoint"
                    )

    def _check_classes(self) -> None:
        """What is defined for two classes only: the window loss and the label probes."""
        for i, dataset in enumerate(self.datasets):
            k = dataset.num_classes
            for j, model in enumerate(self.models):
                if model.class_map is not None and max(model.class_map) >= k:
                    raise ValueError(
                        f"models.{j}.class_map: class {max(model.class_map)} is out of range; "
                        f"datasets.{i} ({dataset.label}) has classes 0..{k - 1}"
                    )
            if k == 2:
                continue
            for j, loss in enumerate(self.losses):
                if loss.name == "window":
                    raise ValueError(
                        f"losses.{j}: window trains where |p_student - 0.5| < radius, which is defined "
                        f"for two classes; datasets.{i} ({dataset.label}) has {k}"
                    )
                if loss.probe is not None:
                    raise ValueError(
                        f"losses.{j}.probe: label probes clean binary labels; datasets.{i} "
                        f"({dataset.label}) has {k} classes"
                    )

    def _check_modality(self) -> None:
        """Image and text experiments use different models and methods: say so before anything runs."""
        images = {d.is_image for d in self.datasets}
        if len(images) > 1:
            raise ValueError("datasets: image and text datasets need different models; put them in separate specs")
        if images == {True}:
            for i, model in enumerate(self.models):
                for field in ("generative_finetune", "lora", "num_layers"):
                    if getattr(model, field) is not None:
                        raise ValueError(
                            f"models.{i}.{field}: not available for image datasets (models there are "
                            "linear probes on embeddings)"
                        )
            for i, loss in enumerate(self.losses):
                if loss.probe is not None and loss.probe.layer != "last":
                    raise ValueError(f"losses.{i}.probe.layer: image models give one embedding; use layer: last")
        else:
            for i, model in enumerate(self.models):
                if parse_model_name(model.name).is_image:
                    raise ValueError(f"models.{i}.name: {model.name!r} is an image model; the datasets here are text")

    @property
    def run_dir(self) -> Path:
        """The run folder: <output_dir>/<name>."""
        return Path(self.output_dir) / self.name

    def model(self, label: str) -> ModelSpec:
        return next(m for m in self.models if m.display == label)

    def ensemble(self, label: str) -> EnsembleSpec | None:
        return next((e for e in self.ensembles if e.label == label), None)


def _members(spec: ExperimentSpec, labels: list[str]) -> list[str]:
    """Model labels with each ensemble replaced by its members."""
    out = []
    for label in labels:
        ensemble = spec.ensemble(label)
        out += ensemble.models if ensemble else [label]
    return out


def _unique(key: str, values: list) -> None:
    dupes = sorted({str(v) for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"{key}: duplicate entries {', '.join(dupes)} (set `label`/`id` to tell them apart)")


def model_pairs(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """(weak, strong) labels: the explicit pairs, or every pair of the ladder (`upward`: strong at or above
    weak) whose strong model trains: a zero-shot model is never a student."""
    labels = [m.display for m in spec.models]
    if isinstance(spec.pairs, list):
        return [tuple(p) for p in spec.pairs]
    trains = {m.display: m.train for m in spec.models}
    first = 0 if spec.pairs == "all" else None
    pairs = [(w, s) for i, w in enumerate(labels) for s in labels[(i if first is None else first) :] if trains[s]]
    for ensemble in spec.ensembles:  # from its strongest member up
        top = max(labels.index(m) for m in ensemble.models) if first is None else 0
        pairs += [(ensemble.label, s) for s in labels[top:] if trains[s]]
    return pairs
