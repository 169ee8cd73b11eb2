"""Several weak supervisors (ensembles: mean or vote) and gold mixing (a share of ground truth in the
students' labels): hand-built cases with known answers, then end to end on tiny models."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import stage_folder, tiny_spec
from w2s import report
from w2s.errors import SpecError
from w2s.pipeline.evaluation import combine
from w2s.pipeline.inputs import mix_gold
from w2s.pipeline.runner import run_experiment
from w2s.scoring.pgr import pgr
from w2s.spec import validate_spec


def _probs(p_pos: list[float]) -> np.ndarray:
    p = np.array(p_pos)
    return np.stack([1 - p, p], axis=1)


def test_two_supervisors_mean_their_probabilities():
    combined = combine([_probs([0.9, 0.2, 0.6]), _probs([0.5, 0.4, 0.2])], "mean")
    assert combined[:, 1] == pytest.approx([0.7, 0.3, 0.4])


def test_four_supervisors_vote_and_a_tie_goes_to_the_mean():
    members = [
        _probs([0.9, 0.6, 0.6, 0.1]),
        _probs([0.8, 0.6, 0.4, 0.2]),
        _probs([0.7, 0.4, 0.45, 0.3]),
        _probs([0.2, 0.1, 0.3, 0.6]),
    ]
    # row 0: 3 of 4 say 1; row 1: 2-2, mean 0.425 -> 0; row 2: 1 of 4 says 1 -> 0; row 3: 1 of 4 -> 0
    voted = combine(members, "vote")
    assert voted[:, 1].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert voted.sum(axis=1).tolist() == [1.0] * 4
    # three classes: two votes for class 2, one each for 0 and 1
    three = [np.eye(3)[[c]] * 0.8 + 0.2 / 3 for c in (2, 0, 2, 1)]
    assert combine(three, "vote").tolist() == [[0.0, 0.0, 1.0]]


def test_gold_mixing_replaces_a_seeded_nested_share_by_ground_truth():
    rows = [{"id": f"train-{i}", "hard_label": i % 2} for i in range(40)]
    weak = _probs([0.3] * 40)  # every weak label says class 0 with 0.7
    quarter, quarter_ids = mix_gold(rows, weak, 0.25, seed=0)
    half, half_ids = mix_gold(rows, weak, 0.5, seed=0)
    assert len(quarter_ids) == 10 and len(half_ids) == 20 and set(quarter_ids) < set(half_ids)
    replaced = [i for i, r in enumerate(rows) if r["id"] in quarter_ids]
    assert quarter[replaced, 1].tolist() == [float(rows[i]["hard_label"]) for i in replaced]
    kept = [i for i in range(40) if i not in replaced]
    assert quarter[kept].tolist() == weak[kept].tolist() and weak[:, 1].tolist() == [0.3] * 40  # a copy
    assert mix_gold(rows, weak, 0.25, seed=1)[1] != quarter_ids
    assert mix_gold(list(reversed(rows)), weak, 0.25, seed=0)[1] == sorted(quarter_ids, key=lambda i: -int(i[6:]))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ensembles": [{"label": "tiny-16", "models": ["tiny-16", "tiny-16"]}]}, "is a model of the ladder"),
        ({"ensembles": [{"label": "e", "models": ["tiny-16", "nope"]}]}, "ensembles.0.models: unknown model 'nope'"),
        ({"ensembles": [{"label": "e", "models": ["tiny-16"]}]}, "ensembles.0.models"),
        # an empty label named its stage after its first member and read "->tiny-32" in chains
        ({"ensembles": [{"label": "", "models": ["tiny-16", "tiny-16"]}]}, "ensembles.0.label"),
        ({"ensembles": [{"label": "a->b", "models": ["tiny-16", "tiny-16"]}]}, "ensembles.0.label"),
        (
            {"ensembles": [{"label": "e", "models": ["tiny-16", "tiny-16"]}], "pairs": [["tiny-16", "e"]]},
            "'e' is an ensemble; an ensemble only supervises",
        ),
    ],
)
def test_ensemble_settings_are_checked_before_anything_runs(tmp_path, change, message):
    with pytest.raises(SpecError, match=message):
        validate_spec(tiny_spec(tmp_path, **change))


def _mtimes(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in (root / "stages").rglob("*") if p.is_file()}


def _test_probs(folder: Path) -> pd.Series:
    frame = pd.read_json(folder / "predictions.jsonl", lines=True, dtype={"id": str})
    return frame[frame["split"] == "test"].set_index("id")["p_pos"]


def test_ensembles_of_two_and_four_supervise_and_are_the_pgr_baseline(tmp_path):
    ensembles = [
        {"label": "x2", "models": ["tiny-16", "tiny-16"]},
        {"label": "x4-vote", "models": ["tiny-16"] * 4, "combine": "vote"},
    ]
    spec = tiny_spec(tmp_path, ensembles=ensembles)  # pairs upward: each ensemble supervises tiny-16 and tiny-24
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    root = tmp_path / "tiny"
    members = sorted(r["member"] for r in rows if r["kind"] == "ground_truth" and r["model"] == "tiny-16")
    assert members == [0, 1, 2, 3]  # the model's own stage, then three more trainings: one per extra copy
    member_probs = {
        r["member"]: _test_probs(stage_folder(root, r["key"]))
        for r in rows
        if r["kind"] == "ground_truth" and r["model"] == "tiny-16"
    }
    assert not member_probs[0].equals(member_probs[1])  # another training seed, another model
    by_label = {r["model"]: r for r in rows if r["kind"] == "ensemble"}
    for label, n, how in (("x2", 2, "mean"), ("x4-vote", 4, "vote")):
        folder = stage_folder(root, by_label[label]["key"])
        config = json.loads((folder / "config.json").read_text())
        keys = {r["key"]: r["member"] for r in rows if r["kind"] == "ground_truth"}
        assert sorted(keys[k] for k in config["members"]) == list(range(n))
        expected = combine([_probs(member_probs[m].to_numpy()) for m in range(n)], how)[:, 1]
        assert _test_probs(folder).to_numpy() == pytest.approx(expected)
        for student in (r for r in rows if r["kind"] == "transfer" and r["weak_model"] == label):
            assert student["weak_accuracy"] == by_label[label]["test_accuracy"]
            assert student["weak_key"] == by_label[label]["key"] == student["supervisor_key"]
            assert student["pgr"] == pgr(
                student["test_accuracy"], student["weak_accuracy"], student["ceiling_accuracy"]
            )
    assert {r["chain"] for r in rows if r["kind"] == "transfer"} == {
        "tiny-16->tiny-16",
        "tiny-16->tiny-24",
        "tiny-24->tiny-24",
        "x2->tiny-16",
        "x2->tiny-24",
        "x4-vote->tiny-16",
        "x4-vote->tiny-24",
    }
    mtimes = _mtimes(root)
    again = run_experiment(validate_spec(spec), echo=lambda *a: None)  # cached: nothing retrains
    assert [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in rows] and _mtimes(root) == mtimes
    report.report([root], tmp_path / "report", echo=lambda *a: None)
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    ensemble_rows = summary[summary["weak_model"] == "x2"]
    assert len(ensemble_rows) == 2 and (ensemble_rows["weak_accuracy"] == by_label["x2"]["test_accuracy"]).all()


def test_all_gold_is_the_half_b_ceiling_and_no_gold_is_the_plain_student(tmp_path):
    """With gold_frac 1 a student trains on half B's ground truth: with the same seed, settings and
    rows it is the `ceiling: half_b` ceiling, prediction for prediction."""
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], ceiling="half_b")
    spec["train"]["gold_frac"] = [0, 0.5, 1.0]
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    root = tmp_path / "tiny"
    students = {r["gold_frac"]: r for r in rows if r["kind"] == "transfer"}
    assert sorted(students) == [0.0, 0.5, 1.0]
    ceiling = next(r for r in rows if r.get("train_split") == "train_b")
    assert (
        _test_probs(stage_folder(root, students[1.0]["key"])).tolist()
        == _test_probs(stage_folder(root, ceiling["key"])).tolist()
    )
    plain = validate_spec(tiny_spec(tmp_path / "plain", pairs=[["tiny-16", "tiny-24"]], ceiling="half_b"))
    plain_rows = run_experiment(plain, echo=lambda *a: None)
    assert students[0.0]["key"] == next(r["key"] for r in plain_rows if r["kind"] == "transfer")
    half = json.loads((stage_folder(root, students[0.5]["key"]) / "gold.json").read_text())
    everything = json.loads((stage_folder(root, students[1.0]["key"]) / "gold.json").read_text())
    assert students[0.5]["n_gold"] == len(half["ids"]) == round(0.5 * students[0.5]["n_train"])
    assert set(half["ids"]) < set(everything["ids"]) and len(everything["ids"]) == students[1.0]["n_train"]
    assert students[0.5]["weak_label_accuracy"] == students[0.0]["weak_label_accuracy"]  # before mixing
    mtimes = _mtimes(root)
    run_experiment(validate_spec(spec), echo=lambda *a: None)
    assert _mtimes(root) == mtimes  # cached: a rerun trains nothing
    written = report.report([root], tmp_path / "report", echo=lambda *a: None)
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert summary["gold_frac"].tolist() == [0.0, 0.5, 1.0]
    assert summary["test_accuracy"].tolist() == pytest.approx([students[g]["test_accuracy"] for g in (0, 0.5, 1.0)])
    assert tmp_path / "report" / "gold_frac.png" in written
