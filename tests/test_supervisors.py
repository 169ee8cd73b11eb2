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
from w2s.spec.training import Gold


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


def _mix(rows, weak, gold: Gold, seed: int):
    confidence = {r["id"]: float(p.max()) for r, p in zip(rows, weak)}
    mixed, chosen, record = mix_gold(rows, weak, confidence, gold, seed)
    return mixed, record["ids"]


def test_gold_mixing_replaces_a_seeded_nested_share_by_ground_truth():
    rows = [{"id": f"train-{i}", "hard_label": i % 2} for i in range(40)]
    weak = _probs([0.3] * 40)  # every weak label says class 0 with 0.7
    quarter, quarter_ids = _mix(rows, weak, Gold(frac=0.25), seed=0)
    half, half_ids = _mix(rows, weak, Gold(frac=0.5), seed=0)
    assert len(quarter_ids) == 10 and len(half_ids) == 20 and set(quarter_ids) < set(half_ids)
    replaced = [i for i, r in enumerate(rows) if r["id"] in quarter_ids]
    assert quarter[replaced, 1].tolist() == [float(rows[i]["hard_label"]) for i in replaced]
    kept = [i for i in range(40) if i not in replaced]
    assert quarter[kept].tolist() == weak[kept].tolist() and weak[:, 1].tolist() == [0.3] * 40  # a copy
    assert _mix(rows, weak, Gold(frac=0.25), seed=1)[1] != quarter_ids
    reversed_ids = _mix(list(reversed(rows)), weak[::-1], Gold(frac=0.25), seed=0)[1]
    assert reversed_ids == sorted(quarter_ids, key=lambda i: -int(i[6:]))
    assert _mix(rows, weak, Gold(n=10), seed=0)[1] == quarter_ids  # a count: the same rows as its share


def test_least_confident_gold_takes_the_supervisors_least_confident_rows_first_seeded_and_nested():
    # a made-up supervisor: p_pos of row i; confidence max(p, 1 - p). Rows 3 and 7 are the least
    # confident (0.5), then 1 and 9 (0.55 / 0.45), then 5 (0.6); the rest 0.8 or more
    p_pos = [0.9, 0.55, 0.1, 0.5, 0.95, 0.6, 0.85, 0.5, 0.2, 0.45]
    rows = [{"id": f"b-{i}", "hard_label": int(i % 3 == 0)} for i in range(10)]
    weak = _probs(p_pos)
    confidence = {r["id"]: max(p, 1 - p) for r, p in zip(rows, p_pos)}
    picks = {}
    for n in (1, 2, 4, 5):
        mixed, chosen, record = mix_gold(rows, weak, confidence, Gold(n=n, select="least_confident"), seed=0)
        picks[n] = set(record["ids"])
        assert record["n_gold"] == n == len(chosen) and record["seed"] == 0
        assert mixed[chosen].tolist() == np.eye(2)[[rows[i]["hard_label"] for i in chosen]].tolist()
    assert picks[2] == {"b-3", "b-7"} and picks[4] == {"b-1", "b-3", "b-7", "b-9"}
    assert picks[5] == picks[4] | {"b-5"}
    assert picks[1] < picks[2] < picks[4] < picks[5]  # nested
    # the tie at the cut of one row (3 and 7 both at 0.5) is broken by the seed, and recorded
    _, _, record = mix_gold(rows, weak, confidence, Gold(n=1, select="least_confident"), seed=0)
    assert record["confidence_cut"] == 0.5 and record["tied_at_cut"] == 2 and record["tied_chosen"] == 1
    by_seed = {
        seed: mix_gold(rows, weak, confidence, Gold(n=1, select="least_confident"), seed)[2]["ids"][0]
        for seed in range(8)
    }
    assert set(by_seed.values()) == {"b-3", "b-7"}  # each seed takes one of the two tied rows, not always the same
    # the choice follows the ids, not the rows' order
    backwards = mix_gold(rows[::-1], weak[::-1], confidence, Gold(n=3, select="least_confident"), seed=0)[2]
    forwards = mix_gold(rows, weak, confidence, Gold(n=3, select="least_confident"), seed=0)[2]
    assert set(backwards["ids"]) == set(forwards["ids"])


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


def test_least_confident_gold_counts_and_the_gold_only_baseline_train_on_exactly_the_chosen_rows(tmp_path):
    """gold_n with least_confident: each student's gold.json holds the supervisor's least confident rows
    of half B (by its predictions there); the gold-only stage trains on exactly those rows, once for
    every loss; the students without gold keep their keys."""
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], losses=("xent", "logconf"))
    spec["train"].update(gold_n=[0, 6, 12], gold_select="least_confident", gold_only=True)
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    root = tmp_path / "tiny"
    weak = next(r for r in rows if r["kind"] == "ground_truth" and r["model"] == "tiny-16")
    frame = pd.read_json(stage_folder(root, weak["key"]) / "predictions.jsonl", lines=True, dtype={"id": str})
    half_b = frame[frame["split"] == "train_b"]
    confidence = dict(zip(half_b["id"], np.maximum(half_b["p_pos"], 1 - half_b["p_pos"])))
    ranked = sorted(confidence.values())
    chosen = {}
    for n in (6, 12):
        students = [r for r in rows if r["kind"] == "transfer" and r["gold_n"] == n]
        assert sorted(r["loss"] for r in students) == ["logconf", "xent"]
        for r in students:
            gold = json.loads((stage_folder(root, r["key"]) / "gold.json").read_text())
            assert r["n_gold"] == n == len(gold["ids"]) and gold["gold_select"] == "least_confident"
            # the least confident n: every chosen row at most as confident as every row left out
            assert max(confidence[i] for i in gold["ids"]) == pytest.approx(ranked[n - 1], abs=1e-6)
            chosen.setdefault(n, set(gold["ids"]))
            assert set(gold["ids"]) == chosen[n]  # one choice for both losses
            assert r["stage"].endswith(f"gold-n{n}-least_confident/s0")
        (only,) = [r for r in rows if r["kind"] == "gold_only" and r["gold_n"] == n]  # once, whatever the loss
        assert only["n_train"] == n and only["weak_key"] == weak["key"]
        # as many optimizer steps as its students: their epochs over their rows, in passes over n rows
        epochs = json.loads((stage_folder(root, only["key"]) / "metrics.json").read_text())["epochs"]
        student_rows = next(r["n_train"] for r in rows if r["kind"] == "transfer")
        assert epochs == pytest.approx(spec["train"]["epochs"] * student_rows / n, rel=1e-3)
        logs = [stage_folder(root, r["key"]) / "log.jsonl" for r in (only, students[0])]
        assert [json.loads(f.read_text().splitlines()[-1])["step"] for f in logs] == [
            student_rows // 16
        ] * 2  # batch 16
        assert set(json.loads((stage_folder(root, only["key"]) / "gold.json").read_text())["ids"]) == chosen[n]
        assert only["pgr"] == pgr(only["test_accuracy"], only["weak_accuracy"], only["ceiling_accuracy"])
    assert chosen[6] < chosen[12]  # nested
    plain = validate_spec(tiny_spec(tmp_path / "plain", pairs=[["tiny-16", "tiny-24"]], losses=("xent", "logconf")))
    plain_keys = {r["key"] for r in run_experiment(plain, echo=lambda *a: None) if r["kind"] == "transfer"}
    assert plain_keys == {r["key"] for r in rows if r["kind"] == "transfer" and not r["gold_n"]}
    report.report([root], tmp_path / "report", echo=lambda *a: None)
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert sorted(summary.loc[summary["kind"] == "gold_only", "gold_n"]) == [6, 12]
    assert "| n12 least_confident |" in (tmp_path / "report" / "summary.md").read_text()
    assert "gold only" in (tmp_path / "report" / "summary.md").read_text()
