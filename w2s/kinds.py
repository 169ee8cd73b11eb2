"""The stage kinds: what each trains, whether its score is a PGR baseline, what result row it writes.

Every module that treats kinds differently reads this table (the planner, the result rows, the W&B
tracker, the report); the code that runs a kind is its class in `w2s.pipeline.stages`. Adding a kind
is one row here, one class there, and where the planner builds it (`w2s/plan.py`): docs/extending.md.
No torch here: the spec checks and the report read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Kind:
    name: str
    trains: str  # what the stage trains, in a few words (`w2s list kinds`)
    # the result row it writes: "baseline" (a model's own score: the weak and ceiling points of PGR),
    # "transfer" (a student, with PGR against its weak model and ceiling), None (an input of other
    # stages: no predictions, no row)
    row: Literal["baseline", "transfer"] | None
    job_type: str  # its W&B runs' job type

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
        ),
        Kind("transfer", "the student on its supervisor's labels of half B, with a loss", "transfer", "transfer"),
        Kind("bootstrap", "the next rung of a bootstrap chain, on the previous rung's labels", "transfer", "bootstrap"),
        Kind(
            "strong_to_strong",
            "the student again, on its own labels (`strong_to_strong_iters`)",
            "transfer",
            "strong_to_strong",
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
