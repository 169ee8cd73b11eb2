"""What a classifier stage reports in its metrics.json: its scores on test (`w2s.scoring.metrics.
test_scores`) and half B, its agreement with its supervisor, the quality of the labels it trained on;
and how an ensemble combines its members' predictions."""

from __future__ import annotations

import numpy as np

from w2s.scoring.metrics import accuracy, expected_calibration_error, test_scores, transfer_diagnostics
from w2s.scoring.rows import TRANSFER_DIAGNOSTICS


def hard_labels(rows: list[dict]) -> np.ndarray:
    return np.array([r["hard_label"] for r in rows])


def classifier_metrics(
    p_b, b_rows, p_test, test_rows, n_train, train_seconds, held_out=frozenset(), supervisor=None
) -> dict:
    """Its scores on test and half B and, for a student, how it relates to its supervisor (`supervisor`:
    its predictions by split, `w2s.pipeline.inputs.supervisor_predictions`; `held_out`: half B's
    validation rows, which the student did not train on)."""
    metrics = {
        **test_scores(p_test, hard_labels(test_rows)),
        "train_b_accuracy": accuracy(p_b, hard_labels(b_rows)),
        "n_train": n_train,
        "n_test": len(test_rows),
        "train_seconds": round(train_seconds, 2),
        **dict.fromkeys(TRANSFER_DIAGNOSTICS),
    }
    if supervisor is not None:
        trained = [i for i, r in enumerate(b_rows) if r["id"] not in held_out]
        student = {
            "test": ([r["id"] for r in test_rows], p_test),
            "train_b": ([b_rows[i]["id"] for i in trained], p_b[trained]),
        }
        metrics.update(transfer_diagnostics(student, supervisor, {r["id"]: r["hard_label"] for r in test_rows}))
    return metrics


def combine(member_probs: list[np.ndarray], how: str) -> np.ndarray:
    """Several supervisors' (n, k) probabilities as one: their mean (`mean`), or their majority vote
    as one-hot labels (`vote`), ties broken by the mean's top class."""
    stacked = np.stack(member_probs)
    mean = stacked.mean(axis=0)
    if how == "mean":
        return mean
    k = stacked.shape[2]
    votes = np.eye(k)[stacked.argmax(axis=2)].sum(axis=0)  # (n, k) vote counts
    top = votes == votes.max(axis=1, keepdims=True)
    winner = np.where(top, mean, -np.inf).argmax(axis=1)
    return np.eye(k)[winner]


def weak_label_quality(rows: list[dict], labels: np.ndarray) -> dict:
    """How good the labels a student trains on are (before a probe or gold mixing changes them):
    their accuracy and calibration against the ground truth of those rows, which only the toolkit sees."""
    y = hard_labels(rows)
    return {
        "weak_label_accuracy": accuracy(labels, y) if len(rows) else None,
        "weak_label_ece": expected_calibration_error(labels, y) if len(rows) else None,
    }


def headline(metrics: dict) -> str:
    """One line on a finished stage, for the run's progress messages."""
    if "test_accuracy" in metrics:
        return f"test accuracy {metrics['test_accuracy']:.3f}"
    if "lm_loss_test" in metrics:
        return f"test LM loss {metrics['lm_loss_test_before']:.3f} -> {metrics['lm_loss_test']:.3f} nats/token"
    return f"{metrics['dim']}-d features of {metrics['n_train_a'] + metrics['n_train_b'] + metrics['n_test']} examples"
