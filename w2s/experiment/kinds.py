"""The stage kinds: what each trains and what result row it writes (`KINDS`), and what a stage of
each kind is (`Stage`, and a record for each kind with fields of its own).

A stage trains one model once (or uses it as it is) on one dataset and seed. Every stage has the
fields of `Stage`; what only some kinds have is its kind's record's: a ground-truth stage's half and
repeat (`GroundTruthStage`), a student's loss, supervisor, PGR references and chain (`StudentStage`),
an ensemble's members (`EnsembleStage`), a features stage's layer (`FeaturesStage`). A stage is built
whole, after the stages it reads, and never changed afterwards.

Every module that treats kinds differently reads the table (the planner, the result rows, the W&B
tracker, the report). Adding a kind is its row and record here, where the planner builds it
(`w2s/experiment/plan.py`) and the class that runs it (`w2s/pipeline/stages.py`): docs/extending.md.
No torch here: the spec checks and the report read it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

from w2s.spec import DataSpec, ModelSpec, loss_label
from w2s.spec.training import Gold
from w2s.training.settings import TrainSettings


@dataclass(frozen=True)
class Kind:
    name: str
    trains: str  # what the stage trains, in a few words (`w2s list kinds`)
    # the result row it writes: "baseline" (a model's own score: the weak and ceiling points of PGR),
    # "transfer" (a student, with PGR against its weak model and ceiling), None (an input of other
    # stages: no predictions, no row)
    row: Literal["baseline", "transfer"] | None
    job_type: str  # its W&B runs' job type
    several_models: bool = False  # its score is several models' (no point of one model's curve)

    @property
    def is_baseline(self) -> bool:
        return self.row == "baseline"

    @property
    def is_transfer(self) -> bool:
        return self.row == "transfer"

    @property
    def has_predictions(self) -> bool:
        """It predicts half B and test (a classifier, or a zero-shot model): it writes a result row."""
        return self.row is not None


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "ground_truth",
            "a classifier on ground truth (half A; half B for a `ceiling: half_b` ceiling)",
            "baseline",
            "ground_truth",
        ),
        Kind("zero_shot", "nothing: the model predicts as it is (`train: false`)", "baseline", "zero_shot"),
        Kind(
            "ensemble",
            "nothing: several weak models' predictions combined (their mean, or their vote)",
            "baseline",
            "ensemble",
            several_models=True,
        ),
        Kind("transfer", "the student on its supervisor's labels of half B, with a loss", "transfer", "transfer"),
        Kind("bootstrap", "the next rung of a bootstrap chain, on the previous rung's labels", "transfer", "bootstrap"),
        Kind(
            "strong_to_strong",
            "the student again, on its own labels (`strong_to_strong_iters`)",
            "transfer",
            "strong_to_strong",
        ),
        Kind(
            "gold_only",
            "the student's model on its gold rows alone, with their ground truth (`gold_only`)",
            "transfer",
            "gold_only",
        ),
        Kind("features", "nothing: the frozen model's pooled activations of every split", None, "features"),
        Kind("lm_finetune", "a causal LM on the task's texts, without labels", None, "lm_finetune"),
    )
}

BASELINE_KINDS = tuple(name for name, kind in KINDS.items() if kind.is_baseline)
TRANSFER_KINDS = tuple(name for name, kind in KINDS.items() if kind.is_transfer)
RESULT_KINDS = BASELINE_KINDS + TRANSFER_KINDS  # the kinds that write a result row


def kind_of(name: str | None) -> Kind | None:
    """The table row of a kind name as a stage folder or W&B run records it; None if it is none."""
    return KINDS.get(name) if isinstance(name, str) else None


# ---------------------------------------------------------------------------------------------
# each kind's record


@dataclass(eq=False, frozen=True, kw_only=True)
class Stage:
    """What every stage has. On its own: a zero-shot stage (a model used as it is) or an lm_finetune
    stage (a causal LM finetuned on the task's texts)."""

    kind: str  # a name in w2s.experiment.kinds.KINDS
    dataset: DataSpec
    model: ModelSpec  # the model this stage trains (or uses)
    seed: int
    settings: TrainSettings
    key: str
    base: Stage | None = None  # the lm_finetune stage whose weights this stage starts from

    def reads(self) -> tuple[Stage | None, ...]:
        """The stages whose outputs this one reads (None: an input it does not have)."""
        return (self.base,)

    @property
    def requires(self) -> list[Stage]:
        """Stages that must be finished before this one can run."""
        return [s for s in self.reads() if s is not None]

    @property
    def weak(self) -> Stage | None:
        """The PGR baseline: a baseline stage (w2s/experiment/kinds.py) is its own; features and
        lm_finetune stages have none."""
        return self if KINDS[self.kind].is_baseline else None

    @property
    def ceiling(self) -> Stage | None:
        """The PGR ceiling: a ground-truth stage is its own; a student has its model's."""
        return None

    @property
    def training_seed(self) -> int:
        """The seed of everything random in training."""
        return self.seed

    @property
    def select(self) -> str:
        """The selection rule whose checkpoint is its result: a student's is its chain's; any other
        stage's is the final one (a stage that evaluates keeps every rule's, for their students)."""
        return "final"

    @property
    def has_predictions(self) -> bool:
        """It predicts half B and test, and writes a result row (w2s/experiment/kinds.py)."""
        return KINDS[self.kind].has_predictions

    def models(self) -> str:
        """The model(s) its name shows."""
        return self.model.display

    def name_parts(self) -> list[str]:
        """What its name shows after the models, for its kind."""
        return []

    def recorded(self) -> dict:
        """Its kind's fields as its config.json records them (w2s.pipeline.store.stage_config); every
        kind writes every key, so that readers find one layout."""
        return {
            "loss": None,
            "chain": [],
            "supervisor": None,
            "train_split": None,
            "select": self.select,
            "gold_frac": 0.0,
            "gold_n": 0,
            "gold_select": "random",
            "member": 0,
            "members": [],
            "combine": None,
        }

    @functools.cached_property  # a stage never changes; its name is asked for often
    def name(self) -> str:
        """Readable and matchable with --only/--force, e.g. transfer/sst2/minilm-l1->minilm-l6/xent/s0."""
        return "/".join([self.kind, self.dataset.label, self.models(), *self.name_parts(), f"s{self.seed}"])

    @functools.cached_property
    def folder(self) -> str:
        """Folder name: the readable name made path-safe, then the key."""
        safe = self.name.replace("->", "_to_").replace("/", "__")
        return "".join(c if c.isalnum() or c in "._-" else "-" for c in safe) + "__" + self.key


@dataclass(eq=False, frozen=True, kw_only=True)
class GroundTruthStage(Stage):
    """A classifier on ground truth: the weak supervisor and the ceiling, on half A (or half B: the
    ceiling of `ceiling: half_b`), once or again as an ensemble's repeated member."""

    train_split: str = "train_a"
    member: int = 0  # which training of the model: an ensemble's repeats are 1, 2, ...
    features: Stage | None = None  # linear probes: the features stage whose activations the head trains on

    def reads(self) -> tuple[Stage | None, ...]:
        return (self.features, self.base)

    @property
    def ceiling(self) -> Stage:
        return self

    @property
    def training_seed(self) -> int:
        """An ensemble's repeated member trains from a seed derived from the stage seed (the data
        split stays the stage seed's)."""
        if not self.member:
            return self.seed
        return int(hashlib.sha256(f"{self.seed}:member{self.member}".encode()).hexdigest()[:8], 16)

    def name_parts(self) -> list[str]:
        return (["half-b"] if self.train_split == "train_b" else []) + (
            [f"member-{self.member}"] if self.member else []
        )

    def recorded(self) -> dict:
        return {**super().recorded(), "train_split": self.train_split, "member": self.member}


@dataclass(eq=False, frozen=True, kw_only=True)
class StudentStage(Stage):
    """A strong model trained on its supervisor's labels of half B with a loss: a transfer, a bootstrap
    rung, or a strong-to-strong round."""

    loss: object  # a LossSpec
    supervisor: Stage  # whose predictions on half B are this stage's labels
    weak_truth: Stage  # the original weak model's stage: the PGR baseline
    ceiling_truth: Stage  # this stage's model's ground-truth stage: the PGR ceiling
    chain: tuple[str, ...]  # model labels from the original weak model to this one
    select: str = "final"  # the selection rule of its chain (w2s/experiment/selection.py)
    gold: Gold = Gold()  # how many of its weak labels are replaced by ground truth, and which (w2s/experiment/gold.py)
    features: Stage | None = None  # linear probes: the features stage whose activations the head trains on
    probe_features: Stage | None = None  # the features stage the loss's label probe is fitted on

    def reads(self) -> tuple[Stage | None, ...]:
        return (self.supervisor, self.features, self.probe_features, self.base)

    @property
    def weak(self) -> Stage:
        return self.weak_truth

    @property
    def ceiling(self) -> Stage:
        return self.ceiling_truth

    @property
    def loss_label(self) -> str:
        return loss_label(self.loss)

    def models(self) -> str:
        return "->".join(self.chain)

    def name_parts(self) -> list[str]:
        return (
            [self.loss_label]
            + ([self.select] if self.select != "final" else [])
            + ([self.gold.name_part()] if self.gold else [])
        )

    def recorded(self) -> dict:
        return {
            **super().recorded(),
            "loss": self.loss.model_dump(mode="json"),
            "chain": list(self.chain),
            "supervisor": self.supervisor.key,
            "gold_frac": self.gold.frac,
            "gold_n": self.gold.n,
            "gold_select": self.gold.select,
        }


@dataclass(eq=False, frozen=True, kw_only=True)
class EnsembleStage(Stage):
    """Several weak models' predictions combined (their mean, or their vote): one supervisor."""

    members: tuple[Stage, ...]
    combine: str  # mean | vote

    def reads(self) -> tuple[Stage | None, ...]:
        return (self.base, *self.members)

    def recorded(self) -> dict:
        return {**super().recorded(), "members": [m.key for m in self.members], "combine": self.combine}


@dataclass(eq=False, frozen=True, kw_only=True)
class FeaturesStage(Stage):
    """A frozen model's pooled activations of every split at one layer."""

    layer: int | str  # 'last', 'middle' or a hidden-state index

    def name_parts(self) -> list[str]:
        return [f"layer-{self.layer}"]
