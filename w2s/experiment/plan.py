"""The plan: spec -> the stages an experiment needs, each with a content key (w2s/experiment/keys.py).

A ground-truth stage (dataset, model, seed) on half A serves both as weak supervisor and as ceiling
(with `ceiling: half_b`, a student's ceiling is its own ground-truth stage on half B, the rows the
students train on); a zero-shot stage stands in for it where the weak model is used as it is
(`train: false`); a transfer stage trains a model on the predictions of a supervisor stage on half
B. Bootstrapping and strong-to-strong rounds are transfers whose supervisor is itself a transfer, so
they reuse whatever already exists. Two kinds of stage train no classifier but are cached the same
way: `features` (a model's pooled activations of every split at one layer: what linear probes train
on and label probes read) and `lm_finetune` (generative finetuning of a causal LM on the task's
texts, whose weights the model's other stages start from).

`plan` is a pure function of the spec, the run folder's environment and the data's contents;
`plan_run` is how every command plans a run folder (`w2s run`, `validate`, `submit`, `--workers`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from w2s.data import fingerprints
from w2s.experiment import environment
from w2s.experiment.checks import check_runnable
from w2s.experiment.environment import Environment
from w2s.experiment.keys import (
    data_identity,
    loss_identity,
    model_identity,
    network_identity,
    settings_identity,
    stage_key,
)
from w2s.experiment.kinds import EnsembleStage, FeaturesStage, GroundTruthStage, Stage, StudentStage
from w2s.spec import DataSpec, EnsembleSpec, ExperimentSpec, ModelSpec, XentLoss, model_pairs
from w2s.spec.training import Gold
from w2s.training.settings import TrainSettings


@dataclass(frozen=True)
class RunPlan:
    """The stages of a spec in its run folder's environment, and what they were planned from."""

    spec: ExperimentSpec
    env: Environment
    stages: list[Stage]
    contents: list[dict]  # each dataset's fingerprint (w2s.data.fingerprints)

    @property
    def root(self) -> Path:
        return self.spec.run_dir

    def check(self, stages: list[Stage] | None = None) -> None:
        """The pre-run check (w2s/experiment/checks.py) of `stages` (default: all of them)."""
        check_runnable(self.spec, self.stages if stages is None else stages)

    def recorded(self) -> RunPlan:
        """The plan of a process about to train in the folder: `auto` decided and recorded now where
        nothing is recorded yet (the first writer wins; w2s/experiment/environment.py), and planned
        again if another machine recorded other values meanwhile."""
        if self.env.final:
            return self
        env = environment.resolve(self.spec, self.root, record=True)
        if env == self.env:
            return dataclasses.replace(self, env=env)
        return dataclasses.replace(self, env=env, stages=plan(self.spec, env, self.contents))


def plan_run(spec: ExperimentSpec) -> RunPlan:
    """The stages `spec` runs in its run folder (`spec.run_dir`): in the environment the folder
    recorded, or, while it records none, as this machine would decide it (`env.final` False; the
    first process that trains records its own, `RunPlan.recorded`)."""
    env = environment.resolve(spec, spec.run_dir, record=False)
    contents = fingerprints(spec)
    return RunPlan(spec, env, plan(spec, env, contents), contents)


def plan(spec: ExperimentSpec, env: Environment, contents: list[dict]) -> list[Stage]:
    """Every stage of the experiment, dependencies first, each key once: a pure function of the spec,
    the run folder's environment (`w2s.experiment.environment.resolve`) and what each dataset holds
    (`w2s.data.fingerprints`), so every machine that plans a run folder plans the same stages."""
    stages: dict[str, Stage] = {}
    pairs = model_pairs(spec)
    for dataset, fingerprint in zip(spec.datasets, contents, strict=True):
        data = data_identity(dataset, fingerprint)
        for seed in spec.seeds:
            _Planner(spec, stages, dataset, data, seed, env).add_all(pairs)
    return list(stages.values())


def resolve_settings(spec: ExperimentSpec, model: ModelSpec, transfer: bool, env: Environment) -> TrainSettings:
    """The spec's `train` with the model's overrides, in the run folder's environment."""
    t = spec.train
    epochs = model.epochs or ((t.transfer_epochs or t.epochs) if transfer else t.epochs)
    return TrainSettings(
        epochs=epochs,
        lr=model.lr or t.lr,
        batch_size=model.batch_size or t.batch_size,
        minibatch_size=min(model.minibatch_size or t.minibatch_size, model.batch_size or t.batch_size),
        eval_batch_size=model.eval_batch_size or t.eval_batch_size,
        optimizer=t.optimizer,
        weight_decay=t.weight_decay,
        lr_schedule=t.lr_schedule,
        warmup_frac=t.warmup_frac,
        max_grad_norm=t.max_grad_norm,
        mixed_precision=env.mixed_precision,
        dropout=t.dropout,
        data_order=t.data_order,
        compile=env.compile and model.train,  # zero-shot: nothing trains, nothing to compile
        eval_every=t.eval_every,
        validation_frac=t.validation_frac,
        attention=env.attention,  # explicit, or what `auto` resolved to (with dropout: sdpa)
        head_lr=t.head_lr,
    )


def uses_features(model: ModelSpec, dataset: DataSpec) -> bool:
    """Linear probes, and every model on an image dataset, train a head on cached activations (a
    zero-shot model trains nothing)."""
    return model.train and (model.linear_probe or dataset.is_image)


class _Planner:
    """The stages of one (dataset, seed), each built after the stages it reads, into `stages` (shared by
    all datasets and seeds: equal keys are one stage, the first built). A method per kind builds its
    stage and the identity its key hashes."""

    def __init__(
        self, spec: ExperimentSpec, stages: dict[str, Stage], dataset: DataSpec, data: dict, seed: int, env: Environment
    ):
        self.spec, self.stages, self.dataset, self.data, self.seed = spec, stages, dataset, data, seed
        self.env = env
        self.truth: dict[str, Stage] = {}  # ground-truth (half A), zero-shot or ensemble stage per label
        self.ceilings: dict[str, Stage] = {}  # `ceiling: half_b`: the half-B ground-truth stage per student

    def add_all(self, pairs: list[tuple[str, str]]) -> None:
        self.add_baselines(pairs)
        t = self.spec.train
        for rule, gold in ((r, g) for r in t.select for g in t.gold_amounts):
            for loss in self.spec.losses:
                self.add_students(pairs, loss, rule, gold)
            if gold and t.gold_only:  # the same gold rows alone, once whatever the students' losses
                for weak, strong in pairs:
                    self.transfer("gold_only", self.truth[weak], strong, XentLoss(), (weak, strong), rule, gold)

    def add_baselines(self, pairs: list[tuple[str, str]]) -> None:
        """The supervisors (ground truth, zero-shot, ensembles) and the ceilings, in ladder order."""
        spec, truth = self.spec, self.truth
        students = {strong for _, strong in pairs} | {label for chain in spec.bootstrap for label in chain[1:]}
        supervisors = {weak for weak, _ in pairs} | {chain[0] for chain in spec.bootstrap}
        on_b = spec.ceiling == "half_b" and self.dataset.halves != "same"  # with halves: same, B is A
        ensembles = [spec.ensemble(label) for label in supervisors if spec.ensemble(label)]
        supervisors |= {m for e in ensembles for m in e.models}
        for model in spec.models:
            label = model.display
            if label in supervisors or (label in students and not on_b):
                truth[label] = self.ground_truth(model) if model.train else self.zero_shot(model)
            if label in students and on_b:
                self.ceilings[label] = self.ground_truth(model, "train_b")
        for ensemble in ensembles:
            truth[ensemble.label] = self.ensemble(ensemble)

    def add_students(self, pairs: list[tuple[str, str]], loss, rule: str, gold: Gold) -> None:
        """Every pair's transfer and strong-to-strong rounds, and every bootstrap chain, for one loss,
        selection rule and gold share."""
        spec, truth = self.spec, self.truth

        def student(kind, supervisor, strong, chain):
            return self.transfer(kind, supervisor, strong, loss, chain, rule, gold)

        for weak, strong in pairs:
            last = student("transfer", truth[weak], strong, (weak, strong))
            for i in range(spec.strong_to_strong_iters):
                last = student("strong_to_strong", last, strong, (weak,) + (strong,) * (i + 2))
        for chain in spec.bootstrap:
            last = student("transfer", truth[chain[0]], chain[1], tuple(chain[:2]))
            for i in range(2, len(chain)):
                last = student("bootstrap", last, chain[i], tuple(chain[: i + 1]))
            student("transfer", truth[chain[0]], chain[-1], (chain[0], chain[-1]))  # the direct baseline

    def _add(self, record: type[Stage], identity: dict, kind: str, model: ModelSpec, settings, **fields) -> Stage:
        key = stage_key(identity)
        if key not in self.stages:
            self.stages[key] = record(
                kind=kind, dataset=self.dataset, model=model, seed=self.seed, settings=settings, key=key, **fields
            )
        return self.stages[key]

    def _common(self, kind: str, model: ModelSpec, settings: TrainSettings) -> dict:
        return {
            "kind": kind,
            "data": self.data,
            "model": model_identity(model),
            "train": settings_identity(settings),
            "seed": self.seed,
        }

    def lm_finetune(self, model: ModelSpec) -> Stage | None:
        if model.generative_finetune is None:
            return None
        gen, plain = model.generative_finetune, resolve_settings(self.spec, model, False, self.env)
        settings = dataclasses.replace(plain, epochs=gen.epochs, lr=gen.lr or plain.lr)
        identity = {**self._common("lm_finetune", model, settings), "model": network_identity(model)}
        return self._add(Stage, identity, "lm_finetune", model, settings)

    def features(self, model: ModelSpec, layer: int | str) -> Stage:
        settings = resolve_settings(self.spec, model, False, self.env)
        base = self.lm_finetune(model)
        network = {**network_identity(model), "pooling": model.pooling}  # not how the head is trained
        identity = {
            "kind": "features",
            "data": self.data,
            "model": network,
            "seed": self.seed,
            "layer": layer,
            "mixed_precision": settings.mixed_precision,
            "base": base.key if base else None,
        }
        return self._add(FeaturesStage, identity, "features", model, settings, base=base, layer=layer)

    def _inputs(self, model: ModelSpec) -> dict[str, Stage | None]:
        """What a classifier stage starts from (as its record's fields): finetuned weights, cached activations."""
        base = self.lm_finetune(model)
        features = self.features(model, "last") if uses_features(model, self.dataset) else None
        return {"base": base, "features": features}

    def ground_truth(self, model: ModelSpec, split: str = "train_a", member: int = 0) -> Stage:
        settings = resolve_settings(self.spec, model, False, self.env)
        inputs = self._inputs(model)
        identity = {**self._common("ground_truth", model, settings), "train_split": split, **_keys(inputs)}
        if member:  # another training of the same model (an ensemble's repeat): its own training seed
            identity["member"] = member
        fields = {"train_split": split, "member": member, **inputs}
        return self._add(GroundTruthStage, identity, "ground_truth", model, settings, **fields)

    def ensemble(self, ensemble: EnsembleSpec) -> Stage:
        """An ensemble's members (the model's own stage for its first appearance, further trainings
        for its repeats) and the stage that combines their predictions: the weak labels and the PGR
        baseline of its students."""
        members, seen = [], {}
        for label in ensemble.models:
            model = self.spec.model(label)
            seen[label] = seen.get(label, -1) + 1
            # a repeat (the spec allows it only for models that train) is another training of the model
            members.append(self.ground_truth(model, member=seen[label]) if seen[label] else self.truth[label])
        model = self.spec.model(ensemble.models[0]).model_copy(update={"label": ensemble.label})
        settings = resolve_settings(self.spec, model, False, self.env)
        identity = {
            "kind": "ensemble",
            "data": self.data,
            "seed": self.seed,
            "members": [m.key for m in members],
            "combine": ensemble.combine,
        }
        fields = {"members": tuple(members), "combine": ensemble.combine}
        return self._add(EnsembleStage, identity, "ensemble", model, settings, **fields)

    def zero_shot(self, model: ModelSpec) -> Stage:
        settings = resolve_settings(self.spec, model, False, self.env)
        identity = {
            "kind": "zero_shot",
            "data": self.data,
            "model": model_identity(model),
            "seed": self.seed,
            "mixed_precision": settings.mixed_precision,
        }
        return self._add(Stage, identity, "zero_shot", model, settings)

    def transfer(
        self, kind: str, supervisor: Stage, strong: str, loss, chain: tuple[str, ...], rule: str, gold: Gold
    ) -> Stage:
        """A student of `supervisor` (a gold-only stage: `strong` on the gold rows alone; its loss is
        cross-entropy on ground truth, so its key names no loss)."""
        model = self.spec.model(strong)
        settings = resolve_settings(self.spec, model, True, self.env)
        probe_features = self.features(model, loss.probe.layer) if loss.probe is not None else None
        inputs = {**self._inputs(model), "probe_features": probe_features}
        ceiling = self.ceilings.get(strong) or self.truth[strong]
        # the ceiling does not change how a student trains, but its stage folder names the ceiling it is
        # measured against (the report reads that link): another ceiling is another stage
        identity = {
            # every student kind but gold_only: "transfer"
            **self._common("gold_only" if kind == "gold_only" else "transfer", model, settings),
            **({} if kind == "gold_only" else {"loss": loss_identity(loss)}),
            "supervisor": supervisor.key,
            "ceiling": ceiling.key,
            **_keys(inputs),
            # added after KEY_VERSION 5: only when set, so that other students keep their keys
            **({"select": rule} if rule != "final" else {}),
            **gold.identity(),  # each part only when set
        }
        fields = {
            "loss": loss,
            "supervisor": supervisor,
            "weak_truth": supervisor.weak,
            "ceiling_truth": ceiling,
            "chain": chain,
            "select": rule,
            "gold": gold,
            **inputs,
        }
        return self._add(StudentStage, identity, kind, model, settings, **fields)


def _keys(stages: dict[str, Stage | None]) -> dict[str, str | None]:
    """The keys of the stages a stage reads (field -> stage), as its identity names them."""
    return {field: s.key if s is not None else None for field, s in stages.items()}
