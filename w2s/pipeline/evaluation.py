"""What a classifier stage reports in its metrics.json: its scores (w2s/metrics.py) on test and
half B, and its agreement with its supervisor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from w2s import metrics as scores
from w2s.pipeline.store import finished_folder, read_probabilities
from w2s.plan import Stage


def hard_labels(rows: list[dict]) -> np.ndarray:
    return np.array([r["hard_label"] for r in rows])


def auroc(probs: np.ndarray, rows: list[dict]) -> dict:
    """{"test_auroc": binary AUROC or None, "test_auroc_macro_ovr": for k > 2 (else absent)}."""
    y = hard_labels(rows)
    if probs.shape[1] == 2:
        return {"test_auroc": scores.auroc(probs, y)}
    return {"test_auroc": None, "test_auroc_macro_ovr": scores.macro_ovr_auroc(probs, y)}


def classifier_metrics(stage: Stage, root: Path, p_b, b_rows, p_test, test_rows, n_train, train_seconds) -> dict:
    metrics = {
        "test_accuracy": scores.accuracy(p_test, hard_labels(test_rows)),
        **auroc(p_test, test_rows),
        "train_b_accuracy": scores.accuracy(p_b, hard_labels(b_rows)),
        "n_train": n_train,
        "n_test": len(test_rows),
        "train_seconds": round(train_seconds, 2),
        "ece": scores.expected_calibration_error(p_test, hard_labels(test_rows)),
        "agreement": None,
        "supervisor_accuracy": None,
        "agreement_supervisor_right": None,
        "agreement_supervisor_wrong": None,
    }
    if stage.supervisor is not None:
        ids, sup_probs = read_probabilities(finished_folder(root, stage.supervisor), "test")
        where = {id_: i for i, id_ in enumerate(ids)}
        both = [(j, where[r["id"]]) for j, r in enumerate(test_rows) if r["id"] in where]
        student = p_test[[j for j, _ in both]].argmax(axis=1)
        supervisor = sup_probs[[i for _, i in both]].argmax(axis=1)
        truth = hard_labels([test_rows[j] for j, _ in both])
        agrees = student == supervisor
        supervisor_right = supervisor == truth
        metrics["agreement"] = float(agrees.mean())
        metrics["supervisor_accuracy"] = float(supervisor_right.mean())
        # does the student copy the supervisor's mistakes, or only its correct answers?
        metrics["agreement_supervisor_right"] = _mean_or_none(agrees[supervisor_right])
        metrics["agreement_supervisor_wrong"] = _mean_or_none(agrees[~supervisor_right])
    return metrics


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def headline(metrics: dict) -> str:
    """One line on a finished stage, for the run's progress messages."""
    if "test_accuracy" in metrics:
        return f"test accuracy {metrics['test_accuracy']:.3f}"
    if "lm_loss_test" in metrics:
        return f"test LM loss {metrics['lm_loss_test_before']:.3f} -> {metrics['lm_loss_test']:.3f} nats/token"
    return f"{metrics['dim']}-d features of {metrics['n_train_a'] + metrics['n_train_b'] + metrics['n_test']} examples"
