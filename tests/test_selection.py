"""Model selection without ground truth: evaluation points, the three rules, one training run per
ground-truth stage for every rule, students per rule, the curves in metrics.json, W&B's log and the report."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import stage_folder, tiny_spec
from w2s import report
from w2s.errors import SpecError
from w2s.experiment.selection import choose, validation_ids
from w2s.pipeline.runner import run_experiment
from w2s.scoring.pgr import pgr
from w2s.spec import validate_spec
from w2s.training.loop import evaluation_steps

RULES = ("final", "weak_validation", "oracle")


def test_evaluation_points_fall_every_n_steps_or_every_fraction_and_always_last():
    assert evaluation_steps(10, 3) == [3, 6, 9, 10]
    assert evaluation_steps(10, 0.25) == [3, 5, 8, 10]
    assert evaluation_steps(16, 0.125) == [2, 4, 6, 8, 10, 12, 14, 16]
    assert evaluation_steps(4, 10) == [4]
    assert evaluation_steps(10, None) == []


def test_each_rule_chooses_its_point_and_ties_go_to_the_earlier_step():
    curve = [
        {"step": 2, "validation_accuracy": 0.6, "test_accuracy": 0.70},
        {"step": 4, "validation_accuracy": 0.8, "test_accuracy": 0.65},
        {"step": 6, "validation_accuracy": 0.8, "test_accuracy": 0.90},
        {"step": 8, "validation_accuracy": 0.7, "test_accuracy": 0.90},
    ]
    assert [choose(curve, rule) for rule in RULES] == [3, 1, 2]


def test_the_validation_split_is_a_seeded_share_of_half_b():
    rows = [{"id": f"train-{i}"} for i in range(50)]
    chosen = validation_ids(rows, 0.2, seed=0)
    assert len(chosen) == 10 and chosen <= {r["id"] for r in rows}
    assert validation_ids(list(reversed(rows)), 0.2, seed=0) == chosen  # by id, not row order
    assert validation_ids(rows, 0.2, seed=1) != chosen
    assert len(validation_ids(rows, 0.001, seed=0)) == 1 and validation_ids(rows, 0.0, seed=0) == set()


@pytest.mark.parametrize(
    "train, message",
    [
        ({"select": "oracle"}, "select: oracle chooses among evaluated checkpoints; set eval_every"),
        ({"eval_every": 2, "select": "weak_validation"}, "select: weak_validation needs a validation split"),
        ({"validation_frac": 0.2}, "validation_frac: the validation split is only read when evaluating"),
        ({"eval_every": 2, "select": ["final", "final"]}, "select: duplicate entries"),
        ({"eval_every": 0}, "eval_every: 0 is not positive"),
        ({"eval_every": 1.5}, "eval_every: 1.5 is neither a number of steps"),
    ],
)
def test_selection_settings_are_checked_before_anything_runs(tmp_path, train, message):
    spec = tiny_spec(tmp_path)
    spec["train"].update(train)
    with pytest.raises(SpecError, match=message):
        validate_spec(spec)


def _spec(tmp_path: Path, **train) -> dict:
    """A tiny task that moves during training (4 epochs at a high rate), evaluated every 2 steps."""
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    spec["datasets"].update(n_train=128, n_test=64)
    spec["train"].update(epochs=4, lr=3e-3, eval_every=2, **train)
    return spec


def _predictions(folder: Path, rule: str | None = None) -> pd.DataFrame:
    name = "predictions.jsonl" if rule is None else f"predictions.{rule}.jsonl"
    return pd.read_json(folder / name, lines=True, dtype={"id": str})


def _accuracy(frame: pd.DataFrame, split: str = "test", ids=None) -> float:
    frame = frame[frame["split"] == split]
    if ids is not None:
        frame = frame[frame["id"].isin(ids)]
    return float((frame["predicted"] == frame["hard_label"]).mean())


def _file_of(folder: Path, rule: str, own: str) -> pd.DataFrame:
    """The predictions of the checkpoint `rule` chose: the stage's own file for its own rule."""
    return _predictions(folder, None if rule == own else rule)


def test_one_run_per_ground_truth_stage_serves_every_rule_and_each_rule_has_its_students(tmp_path):
    spec = _spec(tmp_path, validation_frac=0.25, select=list(RULES))
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    root = tmp_path / "tiny"
    assert sorted((r["kind"], r["select"]) for r in rows) == [
        ("ground_truth", "final"),
        ("ground_truth", "final"),
        ("transfer", "final"),
        ("transfer", "oracle"),
        ("transfer", "weak_validation"),
    ]
    held_out = None
    for row in rows:
        folder = stage_folder(root, row["key"])
        metrics = json.loads((folder / "metrics.json").read_text())
        curve, selection = metrics["curve"], metrics["selection"]
        # 64 rows of half A (ground truth) or 48 of half B's 64 after 16 held out (students), 4 epochs of 16
        total = 16 if row["kind"] == "ground_truth" else 12
        assert metrics["n_validation"] == 16 and metrics["n_train"] == total * 4
        assert [p["step"] for p in curve] == evaluation_steps(total, 2)
        for rule in RULES:
            assert selection[rule]["step"] == curve[choose(curve, rule)]["step"]
            chosen = _file_of(folder, rule, row["select"])
            assert selection[rule]["test_accuracy"] == pytest.approx(_accuracy(chosen))
            assert row[f"{rule}_test_accuracy"] == selection[rule]["test_accuracy"]
        assert row["test_accuracy"] == selection[row["select"]]["test_accuracy"]
        # the log holds the curve, a line per evaluation point, as W&B's history does
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        evals = [line for line in log if line.get("section") == "eval"]
        assert [e["step"] for e in evals] == [p["step"] for p in curve]
        assert [e["test_accuracy"] for e in evals] == [p["test_accuracy"] for p in curve]
        if row["kind"] == "ground_truth":
            b = _predictions(folder)
            ids = set(b.loc[b["split"] == "train_b", "id"])
            held_out = held_out or validation_ids([{"id": i} for i in ids], 0.25, 0)

    weak, ceiling = (
        next(r for r in rows if r["model"] == m and r["kind"] == "ground_truth") for m in ("tiny-16", "tiny-24")
    )
    weak_folder = stage_folder(root, weak["key"])
    for student in (r for r in rows if r["kind"] == "transfer"):
        rule = student["select"]
        # the weak model and the ceiling at the checkpoints the student's rule chose for them
        assert student["weak_accuracy"] == weak[f"{rule}_test_accuracy"]
        assert student["ceiling_accuracy"] == ceiling[f"{rule}_test_accuracy"]
        assert student["pgr"] == pgr(student["test_accuracy"], student["weak_accuracy"], student["ceiling_accuracy"])
        # it trained on the supervisor's labels of that checkpoint, on half B without the held-out rows
        labels = _file_of(weak_folder, rule, "final")
        trained_on = set(labels.loc[labels["split"] == "train_b", "id"]) - held_out
        assert student["weak_label_accuracy"] == pytest.approx(_accuracy(labels, "train_b", trained_on))

    # a rerun trains nothing: every folder stays as it was
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "stages").rglob("*") if p.is_file()}
    again = run_experiment(validate_spec(spec), echo=lambda *a: None)
    assert [r["key"] for r in again] == [r["key"] for r in rows]
    assert {p: p.stat().st_mtime_ns for p in (root / "stages").rglob("*") if p.is_file()} == mtimes

    # the report: PGR per rule in the summary, the curves with their chosen points, the figure
    written = report.report([root], tmp_path / "report", echo=lambda *a: None)
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert sorted(summary["select"]) == sorted(RULES)
    for _, line in summary.iterrows():
        student = next(r for r in rows if r["kind"] == "transfer" and r["select"] == line["select"])
        assert line["pgr"] == pytest.approx(student["pgr"]) if student["pgr"] is not None else pd.isna(line["pgr"])
    curves = pd.read_csv(tmp_path / "report" / "curves.csv")
    assert len(curves) == 3 * len(evaluation_steps(12, 2))
    assert (curves.groupby("select")["chosen"].sum() == 1).all()
    for _, point in curves.iterrows():
        expected = pgr(point["test_accuracy"], point["weak_accuracy"], point["ceiling_accuracy"])
        assert point["pgr"] == pytest.approx(expected) if expected is not None else pd.isna(point["pgr"])
    assert tmp_path / "report" / "pgr_vs_progress.png" in written
    assert "select" in (tmp_path / "report" / "summary.md").read_text().splitlines()[0]


def test_evaluating_during_training_leaves_the_final_model_as_it_was(tmp_path):
    plain = tiny_spec(tmp_path / "plain", pairs=[["tiny-16", "tiny-24"]])
    plain["datasets"].update(n_train=128, n_test=64)
    plain["train"].update(epochs=4, lr=3e-3)
    evaluated = _spec(tmp_path / "evaluated")  # the same, evaluated every 2 steps (no validation split)
    keys = {}
    for name, spec in (("plain", plain), ("evaluated", evaluated)):
        rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
        keys[name] = {(r["kind"], r["model"]): r["key"] for r in rows}
    assert keys["plain"] != keys["evaluated"]  # evaluation points are part of a stage's identity
    for stage in keys["plain"]:
        before = _predictions(stage_folder(tmp_path / "plain" / "tiny", keys["plain"][stage]))
        after = _predictions(stage_folder(tmp_path / "evaluated" / "tiny", keys["evaluated"][stage]))
        assert before["p_pos"].tolist() == after["p_pos"].tolist()  # bit for bit: predicting draws nothing
