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
from w2s.report.misfit import bound_columns, choice_markdown, supervisor_choice
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


def test_the_misfit_bound_in_squared_loss_on_hand_made_predictions():
    """Two test rows, classes (0, 1), truth 1 then 0. Supervisor p_pos 0.6, 0.3; student 0.8, 0.1.
    Brier (both classes): supervisor 2(0.4^2) + 2(0.3^2) over 2 = 0.25; student 2(0.2^2) + 2(0.1^2)
    over 2 = 0.05; gain 0.20. Misfit 2(0.2^2) + 2(0.2^2) over 2 = 0.08. Slack 0.12 = the mean of
    2 (p_s - y).(p_w - p_s): row 1 2(2)(-0.2)(-0.2) = 0.16, row 2 2(2)(0.1)(0.2) = 0.08."""
    truth = {"t0": 1, "t1": 0}
    supervisor = {"test": (["t0", "t1"], _probs([0.6, 0.3])), "train_b": (["b0"], _probs([0.5]))}
    student = {"test": (["t1", "t0"], _probs([0.1, 0.8])), "train_b": (["b0"], _probs([0.5]))}  # other order
    out = transfer_diagnostics(student, supervisor, truth)
    assert out["brier_gain"] == pytest.approx(0.20)
    assert out["misfit_test"] == pytest.approx(0.08)
    assert out["bound_slack"] == pytest.approx(0.12)
    assert out["bound_slack_se"] == pytest.approx(np.std([0.16, 0.08], ddof=1) / np.sqrt(2))
    # a student that moves away from the truth: gain < misfit, the bound fails
    worse = {"test": (["t0", "t1"], _probs([0.2, 0.9])), "train_b": (["b0"], _probs([0.5]))}
    assert transfer_diagnostics(worse, supervisor, truth)["bound_slack"] < 0
    frame = pd.DataFrame({"bound_slack": [0.12, -0.5, 0.01, None], "bound_slack_se": [0.02, 0.1, 0.05, None]})
    assert bound_columns(frame)["bound"].tolist() == ["holds", "violated", "within noise", ""]
    assert bound_columns(frame)["bound_slack_low"][0] == pytest.approx(0.12 - 1.959964 * 0.02)


def _per_seed(rows):
    base = dict(experiment="e", dataset="d", kind="transfer", model="s", loss="xent", select="final", seed=0)
    return pd.DataFrame([{**base, **r} for r in rows])


def test_choosing_a_supervisor_by_misfit_on_hand_made_numbers():
    per_seed = _per_seed(
        [  # seed 0: misfit ranks the gains exactly (rho 1), and the largest gain is not the best student
            dict(weak_model="a", misfit=0.30, student_minus_weak=0.10, test_accuracy=0.70),
            dict(weak_model="b", misfit=0.20, student_minus_weak=0.05, test_accuracy=0.80),
            dict(weak_model="c", misfit=0.10, student_minus_weak=0.01, test_accuracy=0.85),
            # seed 1: misfit ranks them backwards (rho -1)
            dict(weak_model="a", misfit=0.10, student_minus_weak=0.10, test_accuracy=0.70, seed=1),
            dict(weak_model="b", misfit=0.20, student_minus_weak=0.05, test_accuracy=0.80, seed=1),
            dict(weak_model="c", misfit=0.30, student_minus_weak=0.01, test_accuracy=0.85, seed=1),
            # another student with one supervisor: nothing to choose
            dict(weak_model="a", model="t", misfit=0.3, student_minus_weak=0.1, test_accuracy=0.7),
            # a bootstrap rung is no direct transfer
            dict(weak_model="a", kind="bootstrap", misfit=0.9, student_minus_weak=0.9, test_accuracy=0.9),
        ]
    )
    choice = supervisor_choice(per_seed).set_index("seed")
    assert list(choice.index) == [0, 1] and choice["n_supervisors"].tolist() == [3, 3]
    assert choice["spearman"].tolist() == pytest.approx([1.0, -1.0])
    assert choice["picked"].tolist() == ["a", "c"] and choice["best_gain"].tolist() == ["a", "a"]
    assert choice["picks_best_gain"].tolist() == [True, False]
    assert choice["best_student"].tolist() == ["c", "c"]
    assert choice["regret"].tolist() == pytest.approx([0.15, 0.0])
    text = choice_markdown(choice.reset_index())
    assert "over 2 students (settings x seeds) with 3 supervisors each" in text
    assert "in 1 of 2 (chance 0.67 of 2)" in text and "the best student in 1 of 2" in text
    one = choice_markdown(choice.reset_index().iloc[:1])
    assert "over 1 student (a setting and seed) with 3 supervisors each" in one and "(chance 0.33 of 1)" in one
    mixed = choice.reset_index().assign(n_supervisors=[2, 4])
    assert "with 2-4 supervisors each" in choice_markdown(mixed) and "(chance 0.75 of 2)" in choice_markdown(mixed)


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
    # the same within float32 (the report reads both stages' probabilities as float32, the stage its own as
    # float64; a gain in Brier score is a difference of two near-equal scores: absolutely to 1e-7)
    again_values, first_values = (f[list(ERROR_METRICS)].to_numpy() for f in (again, first))
    assert again_values == pytest.approx(first_values, rel=1e-5, abs=1e-7)
    assert first["misfit"].tolist() == pytest.approx(
        [next(r["misfit"] for r in rows if r.get("loss") == loss) for loss in first["loss"]]
    )
    assert "misfit against student − weak" in (tmp_path / "first" / "diagnostics.md").read_text()
