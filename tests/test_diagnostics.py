"""Diagnostics from cached predictions: error inheritance and correction, misfit on the weak labels,
the weak labels' quality; recorded by every transfer and recomputed by the report for stage folders
that predate them; and the misfit-gain correlation across pairs."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import stage_folder, tiny_spec
from w2s import report
from w2s.pipeline.runner import run_experiment
from w2s.report.conclusions import misfit_correlation
from w2s.scoring.metrics import transfer_diagnostics
from w2s.scoring.rows import ERROR_METRICS
from w2s.spec import validate_spec


def _probs(p_pos) -> np.ndarray:
    p = np.asarray(p_pos, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_inheritance_correction_and_misfit_on_a_hand_built_case():
    truth = {"t0": 1, "t1": 0, "t2": 1, "t3": 0, "t4": 1}
    # the supervisor is wrong on t1, t2, t3; the student repeats t1's error and fixes t2 and t3
    supervisor = {
        "test": (list(truth), _probs([0.9, 0.8, 0.3, 0.7, 0.6])),
        "train_b": (["b0", "b1"], _probs([0.8, 0.4])),
    }
    student = {"test": (list(truth), _probs([0.7, 0.9, 0.6, 0.2, 0.4])), "train_b": (["b1", "b0"], _probs([0.1, 0.6]))}
    out = transfer_diagnostics(student, supervisor, truth)
    assert out["supervisor_accuracy"] == pytest.approx(2 / 5)
    assert out["error_inheritance"] == out["agreement_supervisor_wrong"] == pytest.approx(1 / 3)
    assert out["error_correction"] == pytest.approx(2 / 3)
    assert out["agreement_supervisor_right"] == pytest.approx(1 / 2)  # t0 kept, t4 lost
    # by id: b0 0.6 vs 0.8, b1 0.1 vs 0.4; squared distance over both classes = 2 (p - q)^2
    assert out["misfit"] == pytest.approx((2 * 0.2**2 + 2 * 0.3**2) / 2)
    assert out["misfit_disagreement"] == pytest.approx(0.0)


def test_misfit_correlation_across_pairs():
    frame = pd.DataFrame({"misfit": [0.1, 0.2, 0.3, 0.4], "student_minus_weak": [0.01, 0.03, 0.02, 0.05]})
    c = misfit_correlation(frame)
    assert c["n"] == 4 and c["pearson"] == pytest.approx(
        np.corrcoef(frame["misfit"], frame["student_minus_weak"])[0, 1]
    )
    assert c["spearman"] == pytest.approx(0.8)  # ranks 1 2 3 4 against 1 3 2 4
    assert misfit_correlation(frame.head(2))["pearson"] is None


def test_every_transfer_records_them_and_the_report_recomputes_them_for_older_folders(tmp_path):
    spec = tiny_spec(tmp_path, losses=("xent", "logconf"), pairs=[["tiny-16", "tiny-24"]])
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    root = tmp_path / "tiny"
    weak = next(r for r in rows if r["model"] == "tiny-16" and r["kind"] == "ground_truth")
    sup = pd.read_json(stage_folder(root, weak["key"]) / "predictions.jsonl", lines=True, dtype={"id": str})
    for student in (r for r in rows if r["kind"] == "transfer"):
        mine = pd.read_json(stage_folder(root, student["key"]) / "predictions.jsonl", lines=True, dtype={"id": str})
        both = mine.merge(sup, on=["split", "id", "hard_label"], suffixes=("", "_sup"))
        b, test = both[both["split"] == "train_b"], both[both["split"] == "test"]
        assert student["misfit"] == pytest.approx(
            (2 * (b["p_pos"] - b["p_pos_sup"]) ** 2).mean(), rel=1e-5
        )  # float32 labels
        wrong = test[test["predicted_sup"] != test["hard_label"]]
        assert student["error_correction"] == pytest.approx((wrong["predicted"] == wrong["hard_label"]).mean())
        assert student["weak_label_accuracy"] == pytest.approx(
            ((b["p_pos_sup"] > 0.5).astype(int) == b["hard_label"]).mean()
        )
    report.report([root], tmp_path / "first", echo=lambda *a: None)
    for student in (r for r in rows if r["kind"] == "transfer"):  # as a version before the diagnostics wrote it
        path = stage_folder(root, student["key"]) / "metrics.json"
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in metrics.items() if k not in ERROR_METRICS}))
    report.report([root], tmp_path / "again", echo=lambda *a: None)
    first, again = (pd.read_csv(tmp_path / name / "diagnostics.csv") for name in ("first", "again"))
    # the same within float32 (the report reads both stages' probabilities as float32, the stage its own as float64)
    assert again[list(ERROR_METRICS)].to_numpy() == pytest.approx(first[list(ERROR_METRICS)].to_numpy(), rel=1e-5)
    assert first["misfit"].tolist() == pytest.approx(
        [next(r["misfit"] for r in rows if r.get("loss") == loss) for loss in first["loss"]]
    )
    assert "misfit against student − weak" in (tmp_path / "first" / "diagnostics.md").read_text()
