"""The fault soak (benchmarks/fault_soak.py), reduced: a sweep of 8 stages, SIGKILLed three times
(aimed at random, at a stage written but not yet renamed, and right after a stage is published),
resumed, then one round with two processes side by side; every result must equal an uninterrupted
run's. Also: the soak's checker does notice a lost, damaged or half-published stage."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_fault_soak():
    spec = importlib.util.spec_from_file_location("fault_soak", REPO / "benchmarks" / "fault_soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fault_soak = load_fault_soak()


@pytest.fixture(scope="module")
def soaked(tmp_path_factory):
    out = tmp_path_factory.mktemp("soak")
    summary = fault_soak.soak_run(out, kills=3, seed=0, concurrent_kills=1, ladder=2)
    return summary, out


def stage_files(root: Path) -> dict:
    """Per stage folder: metrics without timings (train_seconds, predict_seconds, ...), and the predictions
    as bytes."""
    out = {}
    for folder in sorted((root / "stages").iterdir()):
        metrics = fault_soak.strip_timing(json.loads((folder / "metrics.json").read_text()))
        assert "train_seconds" not in metrics and "predict_seconds" not in metrics
        out[folder.name] = (metrics, (folder / "predictions.jsonl").read_bytes())
    return out


def test_killed_and_concurrent_runs_end_identical_to_an_uninterrupted_run(soaked):
    summary, out = soaked
    assert summary["ok"], summary["problems"]
    assert summary["stages"] == 2 + 3 * 2  # ground truth for 2 models, 3 upward pairs x 2 losses
    assert summary["kills"] == 4
    assert summary["kills_by_target"]["publish-tmp"] == 1 and summary["kills_by_target"]["published"] == 1
    assert summary["kills_by_target"]["random"] == 1 and summary["kills_by_target"]["concurrent-random"] == 1
    assert summary["metrics_identical"] and summary["stages_lost"] == 0 and summary["leftover_temp_folders"] == 0
    assert json.loads((out / "fault_soak.json").read_text())["kills"] == 4

    # independently of the soak's own checker: every stage, once, with the reference's numbers
    reference = stage_files(out / "reference" / "soak")
    assert len(reference) == 8
    finals = [out / "killed" / f"round{summary['rounds']}" / "soak", out / "concurrent" / "soak"]
    for root in finals:
        assert stage_files(root) == reference  # no .tmp-*/.old-* folder either: iterdir() sees them
        rows, ref_rows = (fault_soak.read_jsonl(r / "results.jsonl") for r in (root, out / "reference" / "soak"))
        assert [dict(r, train_seconds=None) for r in rows] == [dict(r, train_seconds=None) for r in ref_rows]
    # the kill aimed at publishing did land while a written stage waited for its rename
    aimed = [k for k in summary["kill_log"] if k["target"] == "publish-tmp"]
    assert aimed[0]["landed"] == "stage written, not yet renamed"


def test_the_checker_sees_lost_damaged_and_half_published_stages(soaked, tmp_path):
    _, out = soaked
    ref = out / "reference" / "soak"
    copy = tmp_path / "copy"
    shutil.copytree(ref, copy, ignore=shutil.ignore_patterns("wandb"))
    assert fault_soak.comparison_problems("copy", fault_soak.compare(ref, copy)) == []

    names = sorted(p.name for p in (copy / "stages").iterdir())
    shutil.rmtree(copy / "stages" / names[0])  # lost
    predictions = copy / "stages" / names[1] / "predictions.jsonl"
    predictions.write_text(predictions.read_text().replace('"p_pos": 0.', '"p_pos": 0.0', 1))  # damaged
    (copy / "stages" / f".tmp-{names[2]}-123").mkdir()  # a half-published leftover
    metrics = copy / "stages" / names[3] / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"train_seconds": ', '"train_seconds": 1'))  # timing: ignored

    found = fault_soak.compare(ref, copy)
    assert found["missing"] == [names[0]]
    assert found["differing"] == {names[1]: ["predictions.jsonl"]}
    assert found["leftovers"] == [f".tmp-{names[2]}-123"]
    assert found["results_equal"]  # results.jsonl was not touched
    assert len(fault_soak.comparison_problems("copy", found)) == 3

    # between kills: a stage seen published that vanishes, or is damaged, counts as lost
    watch = fault_soak.Watch(fault_soak.Soak(out=tmp_path, code=tmp_path, env={}, ref=ref), copy)
    watch.ever = set(names)
    watch.check("after a kill")
    assert watch.lost == {names[0], names[1]} and len(watch.problems) == 2
