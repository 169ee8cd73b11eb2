"""The stage graph: spec -> the list of stages an experiment needs, each with a content key.

A stage trains one model once. A ground-truth stage (dataset, model, seed) on half A serves both as
weak supervisor and as ceiling (with `ceiling: half_b`, a student's ceiling is its own ground-truth
stage on half B, the rows the students train on); a zero-shot stage stands in for it where the weak model is used as it is
(`train: false`: it predicts, nothing trains it); a transfer stage trains a model on the predictions of a supervisor
stage on half B. Bootstrapping and strong-to-strong rounds are transfers whose supervisor is
itself a transfer, so they reuse whatever already exists.

Two kinds of stage train no classifier but are cached the same way: `features` (a model's pooled
activations of every split at one layer: what linear probes train on and label probes read) and
`lm_finetune` (generative finetuning of a causal LM on the task's texts, whose weights the model's
other stages start from).

A stage's key hashes everything that changes its result (model, the data's contents, training
settings with the resolved precision, loss, seed, the keys of the stages it reads, and the version
of the code that computes it) and nothing that does not (paths, tracking, display labels,
per-device batch size when the effective batch is the same). Equal keys are the same stage,
trained once; a changed setting re-runs exactly the stages whose key it enters.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from w2s.aliases import parse_model_name
from w2s.kinds import KINDS
from w2s.spec import DataSpec, ExperimentSpec, ModelSpec, loss_label, model_pairs

if TYPE_CHECKING:
    from w2s.environment import Environment

# The version of what stages compute. Bump it in the same commit as any change to the numbers a
# stage produces from the same settings and data: the trainer, a loss, a formatter, tokenization,
# splitting, the generated datasets, pooling, metrics. Every cached stage then reruns once.
# Changes that leave every number as it was (logging, speed, messages) do not bump it.
KEY_VERSION = 5  # 5: optimizer batches drawn before micro-batches; whole-batch losses (w2s/train.py)


@dataclass(frozen=True)
class TrainSettings:
    """Training settings of one stage, resolved from the spec's `train` and the model's overrides
    (`resolve_settings`); the trainer reads them, the stage key hashes them."""

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
    eval_every: float | None = None  # evaluation points (w2s/selection.py); None: the final step only
    validation_frac: float = 0.0  # share of half B held out for validation
    attention: str = "sdpa"  # the attention kernels (w2s.train.attention_kernels)


@dataclass(eq=False, frozen=True)
class Stage:
    """One stage, built whole (dependencies first) and never changed afterwards."""

    kind: str  # a name in w2s.kinds.KINDS
    dataset: DataSpec
    model: ModelSpec  # the model this stage trains
    seed: int
    settings: TrainSettings
    key: str
    loss: object | None = None  # a LossSpec; None means cross-entropy on ground truth
    supervisor: Stage | None = None  # whose predictions on half B are this stage's labels
    weak_truth: Stage | None = None  # transfers: ground-truth stage of the original weak model (PGR baseline)
    ceiling_truth: Stage | None = None  # transfers: ground-truth stage of this stage's model (PGR ceiling)
    chain: tuple[str, ...] = ()  # model labels from the original weak model to this one
    features: Stage | None = None  # the features stage whose activations this stage trains a linear probe on
    probe_features: Stage | None = None  # the features stage the loss's label probe is fitted on
    base: Stage | None = None  # lm_finetune stage whose weights this stage starts from
    layer: int | str | None = None  # features stages: which hidden state ('last', 'middle' or an index)
    train_split: str = "train_a"  # ground-truth stages: the half they train on (train_b: a `ceiling: half_b` ceiling)
    select: str = "final"  # students: the selection rule of their chain (w2s/selection.py); others record every rule
    gold_frac: float = 0.0  # students: the share of their weak labels replaced by ground truth
    member: int = 0  # ground-truth stages: which training of the model (an ensemble's repeats: 1, 2, ...)
    members: tuple[Stage, ...] = ()  # ensembles: the stages whose predictions they combine
    combine: str | None = None  # ensembles: mean or vote

    @property
    def weak(self) -> Stage | None:
        """The PGR baseline: a ground-truth or zero-shot stage is its own; features and lm_finetune stages
        have none."""
        return self if KINDS[self.kind].is_baseline else self.weak_truth

    @property
    def ceiling(self) -> Stage | None:
        """The PGR ceiling: a ground-truth stage is its own; features and lm_finetune stages have none."""
        return self if self.kind == "ground_truth" else self.ceiling_truth

    @property
    def requires(self) -> list[Stage]:
        """Stages that must be finished before this one can run."""
        deps = (self.supervisor, self.features, self.probe_features, self.base, *self.members)
        return [s for s in deps if s is not None]

    @property
    def training_seed(self) -> int:
        """The seed of everything random in training: the stage seed, or for an ensemble's repeated
        member one derived from it (the data split stays the stage seed's)."""
        if not self.member:
            return self.seed
        return int(hashlib.sha256(f"{self.seed}:member{self.member}".encode()).hexdigest()[:8], 16)

    @property
    def has_predictions(self) -> bool:
        """It predicts half B and test, and writes a result row (w2s/kinds.py)."""
        return KINDS[self.kind].has_predictions

    @property
    def loss_label(self) -> str | None:
        return loss_label(self.loss) if self.loss is not None else None

    @functools.cached_property  # a stage never changes; its name is asked for often
    def name(self) -> str:
        """Readable and matchable with --only/--force, e.g. transfer/sst2/minilm-l1->minilm-l6/xent/s0."""
        models = "->".join(self.chain) if self.chain else self.model.display
        extra = [self.loss_label] if self.loss else [f"layer-{self.layer}"] if self.kind == "features" else []
        extra += [self.select] if self.select != "final" else []
        extra += [f"gold-{self.gold_frac:g}"] if self.gold_frac else []
        if self.kind == "ground_truth" and self.train_split == "train_b":
            extra = ["half-b"]
        extra += [f"member-{self.member}"] if self.member else []
        parts = [self.kind, self.dataset.label, models] + extra + [f"s{self.seed}"]
        return "/".join(parts)

    @functools.cached_property
    def folder(self) -> str:
        """Folder name: the readable name made path-safe, then the key."""
        safe = self.name.replace("->", "_to_").replace("/", "__")
        return "".join(c if c.isalnum() or c in "._-" else "-" for c in safe) + "__" + self.key


def _network_identity(model: ModelSpec) -> dict:
    """What makes two ladder rungs the same network before any training (not labels or memory settings)."""
    checkpoint, layers = model.name, model.num_layers
    name = parse_model_name(model.name)
    if name.kind == "alias":  # its family's checkpoint: two families never share keys
        checkpoint, layers = name.family.checkpoint, model.num_layers or name.layers
    fields = model.model_dump(include={"random_init", "config_overrides", "dtype", "trust_remote_code"})
    return {"checkpoint": checkpoint, "layers": layers, **fields}


def _model_identity(model: ModelSpec) -> dict:
    """The network plus how a classifier is built and trained on it (a zero-shot model: how its outputs
    map to the task's classes)."""
    fields = {"linear_probe", "pooling", "lora", "label_budget", "train", "class_map"}
    return {**_network_identity(model), **model.model_dump(include=fields)}


def _loss_identity(loss) -> dict:
    fields = loss.model_dump(exclude={"label"})
    probe = fields["probe"]
    if probe is not None:  # leave out the settings this probe ignores
        unused = {"contamination": probe["mode"] == "relabel", "k": probe["method"] == "logreg"}
        fields["probe"] = {k: v for k, v in probe.items() if not unused.get(k)}
    return fields


def uses_features(model: ModelSpec, dataset: DataSpec) -> bool:
    """Linear probes, and every model on an image dataset, train a head on cached activations (a
    zero-shot model trains nothing)."""
    return model.train and (model.linear_probe or dataset.is_image)


def _data_identity(dataset: DataSpec, contents: dict) -> dict:
    """How the rows are read and split, and what the files hold (`data.fingerprint`), not where they are."""
    return {
        **dataset.model_dump(exclude={"id", "data_files", "data_dir"}),
        "contents": contents,
        "splits": sorted(dataset.data_files or ()),
    }


def _settings_identity(settings: TrainSettings) -> dict:
    """What changes a stage's numbers (`compile` too: it can move the last bits), not memory knobs.
    Settings added after KEY_VERSION 5 enter only when set, so that stages without them keep their keys."""
    added = {"eval_every": None, "validation_frac": 0.0, "attention": "sdpa"}
    return {
        k: v
        for k, v in dataclasses.asdict(settings).items()
        if k not in ("minibatch_size", "eval_batch_size") and (k not in added or v != added[k])
    }


def stage_key(payload: dict) -> str:
    text = json.dumps({**payload, "key_version": KEY_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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
        attention=t.attention,
    )


def plan(spec: ExperimentSpec, env: Environment, contents: list[dict]) -> list[Stage]:
    """Every stage of the experiment, dependencies first, each key once: a pure function of the spec,
    the run folder's environment (`w2s.environment.resolve`) and what each dataset holds
    (`w2s.data.fingerprints`), so every machine that plans a run folder plans the same stages.
    `w2s.environment.plan_here` plans as this machine would."""
    stages: dict[str, Stage] = {}
    pairs = model_pairs(spec)
    for dataset, fingerprint in zip(spec.datasets, contents, strict=True):
        data = _data_identity(dataset, fingerprint)
        for seed in spec.seeds:
            _Planner(spec, stages, dataset, data, seed, env).add_all(pairs)
    return list(stages.values())


class _Planner:
    """The stages of one (dataset, seed), each built after the stages it reads, into `stages` (shared by
    all datasets and seeds: equal keys are one stage, the first built)."""

    def __init__(
        self, spec: ExperimentSpec, stages: dict[str, Stage], dataset: DataSpec, data: dict, seed: int, env: Environment
    ):
        self.spec, self.stages, self.dataset, self.data, self.seed = spec, stages, dataset, data, seed
        self.env = env
        self.truth: dict[str, Stage] = {}  # ground-truth (half A), zero-shot or ensemble stage per label
        self.ceilings: dict[str, Stage] = {}  # `ceiling: half_b`: the half-B ground-truth stage per student

    def add_all(self, pairs: list[tuple[str, str]]) -> None:
        spec, truth = self.spec, self.truth
        students = {strong for _, strong in pairs} | {label for chain in spec.bootstrap for label in chain[1:]}
        supervisors = {weak for weak, _ in pairs} | {chain[0] for chain in spec.bootstrap}
        on_b = spec.ceiling == "half_b" and self.dataset.halves != "same"  # with halves: same, B is A
        ensembles = [spec.ensemble(label) for label in supervisors if spec.ensemble(label)]
        supervisors |= {m for e in ensembles for m in e.models}
        for model in spec.models:  # ladder order: supervisors and ceilings first
            label = model.display
            if label in supervisors or (label in students and not on_b):
                truth[label] = self.ground_truth(model) if model.train else self.zero_shot(model)
            if label in students and on_b:
                self.ceilings[label] = self.ground_truth(model, "train_b")
        for ensemble in ensembles:
            truth[ensemble.label] = self.ensemble(ensemble)
        t = spec.train
        for rule, gold, loss in ((r, g, loss) for r in t.select for g in t.gold_frac for loss in spec.losses):

            def student(kind, supervisor, strong, chain):
                return self.transfer(kind, supervisor, strong, loss, chain, rule, gold)  # noqa: B023 (called at once)

            for weak, strong in pairs:
                last = student("transfer", truth[weak], strong, (weak, strong))
                for i in range(spec.strong_to_strong_iters):
                    last = student("strong_to_strong", last, strong, (weak,) + (strong,) * (i + 2))
            for chain in spec.bootstrap:
                last = student("transfer", truth[chain[0]], chain[1], tuple(chain[:2]))
                for i in range(2, len(chain)):
                    last = student("bootstrap", last, chain[i], tuple(chain[: i + 1]))
                student("transfer", truth[chain[0]], chain[-1], (chain[0], chain[-1]))  # the direct baseline

    def _add(self, identity: dict, kind: str, model: ModelSpec, settings: TrainSettings, **fields) -> Stage:
        key = stage_key(identity)
        if key not in self.stages:
            self.stages[key] = Stage(kind, self.dataset, model, self.seed, settings, key, **fields)
        return self.stages[key]

    def _common(self, kind: str, model: ModelSpec, settings: TrainSettings) -> dict:
        return {
            "kind": kind,
            "data": self.data,
            "model": _model_identity(model),
            "train": _settings_identity(settings),
            "seed": self.seed,
        }

    def lm_finetune(self, model: ModelSpec) -> Stage | None:
        if model.generative_finetune is None:
            return None
        gen, plain = model.generative_finetune, resolve_settings(self.spec, model, False, self.env)
        settings = dataclasses.replace(plain, epochs=gen.epochs, lr=gen.lr or plain.lr)
        identity = {**self._common("lm_finetune", model, settings), "model": _network_identity(model)}
        return self._add(identity, "lm_finetune", model, settings)

    def features(self, model: ModelSpec, layer: int | str) -> Stage:
        settings = resolve_settings(self.spec, model, False, self.env)
        base = self.lm_finetune(model)
        network = {**_network_identity(model), "pooling": model.pooling}  # not how the head is trained
        identity = {
            "kind": "features",
            "data": self.data,
            "model": network,
            "seed": self.seed,
            "layer": layer,
            "mixed_precision": settings.mixed_precision,
            "base": base.key if base else None,
        }
        return self._add(identity, "features", model, settings, base=base, layer=layer)

    def _inputs(self, model: ModelSpec) -> dict[str, Stage | None]:
        """What a classifier stage starts from (as Stage fields): finetuned weights, cached activations."""
        base = self.lm_finetune(model)
        features = self.features(model, "last") if uses_features(model, self.dataset) else None
        return {"base": base, "features": features}

    def ground_truth(self, model: ModelSpec, split: str = "train_a", member: int = 0) -> Stage:
        settings = resolve_settings(self.spec, model, False, self.env)
        inputs = self._inputs(model)
        identity = {**self._common("ground_truth", model, settings), "train_split": split, **_keys(inputs)}
        if member:  # another training of the same model (an ensemble's repeat): its own training seed
            identity["member"] = member
        return self._add(identity, "ground_truth", model, settings, train_split=split, member=member, **inputs)

    def ensemble(self, ensemble) -> Stage:
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
        return self._add(identity, "ensemble", model, settings, members=tuple(members), combine=ensemble.combine)

    def zero_shot(self, model: ModelSpec) -> Stage:
        settings = resolve_settings(self.spec, model, False, self.env)
        identity = {
            "kind": "zero_shot",
            "data": self.data,
            "model": _model_identity(model),
            "seed": self.seed,
            "mixed_precision": settings.mixed_precision,
        }
        return self._add(identity, "zero_shot", model, settings)

    def transfer(
        self,
        kind: str,
        supervisor: Stage,
        strong: str,
        loss,
        chain: tuple[str, ...],
        rule: str = "final",
        gold_frac: float = 0.0,
    ) -> Stage:
        model = self.spec.model(strong)
        settings = resolve_settings(self.spec, model, True, self.env)
        probe_features = self.features(model, loss.probe.layer) if loss.probe is not None else None
        inputs = {**self._inputs(model), "probe_features": probe_features}
        ceiling = self.ceilings.get(strong) or self.truth[strong]
        # the ceiling does not change how a student trains, but its stage folder names the ceiling it is
        # measured against (the report reads that link): another ceiling is another stage
        identity = {
            **self._common("transfer", model, settings),
            "loss": _loss_identity(loss),
            "supervisor": supervisor.key,
            "ceiling": ceiling.key,
            **_keys(inputs),
            # added after KEY_VERSION 5: only when set, so that other students keep their keys
            **({"select": rule} if rule != "final" else {}),
            **({"gold_frac": gold_frac} if gold_frac else {}),
        }
        return self._add(
            identity,
            kind,
            model,
            settings,
            loss=loss,
            supervisor=supervisor,
            weak_truth=supervisor.weak,
            ceiling_truth=ceiling,
            chain=chain,
            select=rule,
            gold_frac=gold_frac,
            **inputs,
        )


def _keys(stages: dict[str, Stage | None]) -> dict[str, str | None]:
    """The keys of the stages a stage reads (Stage field -> stage), as its identity names them."""
    return {field: s.key if s is not None else None for field, s in stages.items()}
