"""Evaluation during training (`train.eval_every`): the learning curve, and the checkpoint each
selection rule chooses (w2s/experiment/selection.py), kept as predictions, so one training run serves every rule.

At each evaluation point the model predicts the validation split (held out of half B) and test; the
point joins the curve (metrics.json, W&B history under `eval/`). Where a rule's choice moves to this
point, the model also predicts half B, whose predictions are the labels a student of that rule trains
on. Nothing is retrained and no weights are kept: a chosen checkpoint is its predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from w2s.experiment.selection import RULES, improves
from w2s.scoring.metrics import accuracy, test_scores
from w2s.training.batches import Batches
from w2s.training.inference import predict


class Checkpoints:
    """The `evaluate` callback of `w2s.training.loop.train` for one classifier stage."""

    def __init__(
        self,
        data: dict[str, Batches],
        validation_labels: np.ndarray | None,
        truth: dict[str, np.ndarray],
        batch_size: int,
        log: Callable[[dict, str], None],
    ):
        # data: "train_b", "test" and, with a validation split, "validation"
        self.data, self.validation_labels, self.truth = data, validation_labels, truth
        self.batch_size, self.log = batch_size, log
        self.rules = [r for r in RULES if r != "weak_validation" or "validation" in data]
        self.curve: list[dict] = []
        self.chosen: dict[str, tuple[dict, dict[str, np.ndarray]]] = {}  # rule -> (point, split -> probs)
        self.seconds = 0.0

    def __call__(self, model, accelerator, step: int, total: int) -> None:
        start = time.perf_counter()
        probs = {
            name: predict(model, self.data[name], accelerator, self.batch_size, desc=None)
            for name in ("validation", "test")
            if name in self.data
        }
        point = {
            "step": step,
            "progress": step / total,
            "validation_accuracy": (
                accuracy(probs["validation"], self.validation_labels.argmax(axis=1)) if "validation" in probs else None
            ),
            "test_accuracy": accuracy(probs["test"], self.truth["test"]),
        }
        self.curve.append(point)
        self.log({k: v for k, v in point.items() if v is not None}, "eval")
        moved = [
            r for r in self.rules if (r == "final" and step == total) or (r != "final" and self._improves(r, point))
        ]
        if moved:  # the labels of half B at this checkpoint, for the rules that now choose it
            probs["train_b"] = predict(
                model, self.data["train_b"], accelerator, self.batch_size, desc=f"eval half B @{step}"
            )
            for rule in moved:
                self.chosen[rule] = (point, probs)
        self.seconds += time.perf_counter() - start

    def _improves(self, rule: str, point: dict) -> bool:
        best = self.chosen.get(rule)
        return improves(rule, point, best[0] if best else None)

    def result(self, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """(half B, test) probabilities of the checkpoint `rule` chose."""
        _, probs = self.chosen[rule]
        return probs["train_b"], probs["test"]

    def selection(self) -> dict[str, dict]:
        """Per rule, the point it chose with its test scores: metrics.json's `selection`."""
        out = {}
        for rule in self.rules:
            point, probs = self.chosen[rule]
            out[rule] = {**point, **test_scores(probs["test"], self.truth["test"])}
        return out
