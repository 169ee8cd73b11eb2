"""What a classifier stage reports: accuracy, AUROC, calibration, and agreement with its supervisor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from w2s.pipeline.store import finished_folder, read_predictions
from w2s.plan import Stage
from w2s.results import expected_calibration_error


def scores(p_pos: np.ndarray, rows: list[dict]) -> tuple[float, float | None]:
    y = np.array([r["hard_label"] for r in rows])
    accuracy = float(((p_pos > 0.5) == y).mean())
    auroc = float(roc_auc_score(y, p_pos)) if len(set(y.tolist())) == 2 else None
    return accuracy, auroc


def classifier_metrics(stage: Stage, root: Path, p_b, b_rows, p_test, test_rows, n_train, train_seconds) -> dict:
    test_accuracy, test_auroc = scores(p_test, test_rows)
    metrics = {
        "test_accuracy": test_accuracy,
        "test_auroc": test_auroc,
        "train_b_accuracy": scores(p_b, b_rows)[0],
        "n_train": n_train,
        "n_test": len(test_rows),
        "train_seconds": round(train_seconds, 2),
        "ece": expected_calibration_error(p_test, [r["hard_label"] for r in test_rows]),
        "agreement": None,
        "supervisor_accuracy": None,
        "agreement_supervisor_right": None,
        "agreement_supervisor_wrong": None,
    }
    if stage.supervisor is not None:
        sup = read_predictions(finished_folder(root, stage.supervisor), "test")
        both = [(p, sup[r["id"]], r["hard_label"]) for p, r in zip(p_test, test_rows) if r["id"] in sup]
        student, supervisor, truth = (np.array(c) for c in zip(*both))
        agrees = (student > 0.5) == (supervisor > 0.5)
        supervisor_right = (supervisor > 0.5) == truth
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
