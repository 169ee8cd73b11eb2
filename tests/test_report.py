"""Reports: PGR and its intervals on hand-made predictions with known answers, the tables and
figures from a hand-written results folder, W&B records, and the CLI's errors."""

import json
import os
import shutil
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from w2s import report
from w2s.cli import main
from w2s.errors import SpecError
from w2s.report.records import records_of
from w2s.scoring import metrics as w2s_metrics
from w2s.scoring.pgr import pgr_interval


def predictions(n: int, accuracy: float, shift: int = 0) -> list[dict]:
    """n test rows whose first round(accuracy * n) examples (after rotating by `shift`) are right,
    so accuracies are exact and better models are right on a superset of examples."""
    n_right = round(accuracy * n)
    rows = []
    for i in range(n):
        y = i % 2
        right = (i - shift) % n < n_right
        confidence = 0.6 + 0.3 * ((i * 7) % 11) / 10  # spread, so AUROC is not just accuracy
        p = confidence if (y == 1) == right else 1 - confidence
        rows.append({"split": "test", "id": f"test-{i}", "hard_label": y, "p_pos": p})
    return rows


def write_stage(
    root: Path,
    kind: str,
    model: str,
    params: int,
    accuracy: float,
    seed: int = 0,
    n: int = 200,
    dataset: str = "toy",
    loss: str | None = None,
    chain=(),
    weak=None,
    ceiling=None,
    shift: int = 0,
) -> str:
    """One finished stage folder in the layout `w2s run` writes; returns its key."""
    name = "/".join([kind, dataset, "->".join(chain) or model] + ([loss] if loss else []) + [f"s{seed}"])
    key = f"k{zlib.crc32(name.encode()):010d}"
    folder = root / "stages" / (name.replace("->", "_to_").replace("/", "__") + "__" + key)
    folder.mkdir(parents=True)
    rows = predictions(n, accuracy, shift)
    rows.insert(0, {"split": "train_b", "id": "train-0", "hard_label": 1, "p_pos": 0.9})
    agreement = supervisor_accuracy = None
    if weak:
        supervisor = {r["id"]: r for r in json_lines(root, weak)}
        test = [r for r in rows if r["split"] == "test"]
        agreement = float(np.mean([(r["p_pos"] > 0.5) == (supervisor[r["id"]]["p_pos"] > 0.5) for r in test]))
    config = {
        "stage": name,
        "kind": kind,
        "key": key,
        "dataset": {"name": "synthetic", "id": dataset},
        "model": {"name": "minilm-l6", "label": model, "num_layers": None},
        "seed": seed,
        "loss": {"name": loss, "label": None} if loss else None,
        "chain": list(chain),
        "supervisor": weak,
        "weak": weak or key,
        "ceiling": ceiling or key,
    }
    y = np.array([r["hard_label"] for r in rows[1:]])
    p = np.array([r["p_pos"] for r in rows[1:]])
    metrics = {
        "test_accuracy": accuracy,
        "test_auroc": float(w2s_metrics.metric_values(y, p, "auroc")),
        "n_train": 100,
        "n_test": n,
        "non_embedding_parameters": params,
        "agreement": agreement,
        "supervisor_accuracy": supervisor_accuracy,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return key


def write_pair(root: Path, weak_acc: float, ceiling_acc: float, student_acc: float, n: int = 200, seed: int = 0) -> str:
    """small (weak) and large (ceiling) ground truths and one xent transfer small->large; returns its key."""
    weak = write_stage(root, "ground_truth", "small", 1000, weak_acc, seed, n=n)
    strong = write_stage(root, "ground_truth", "large", 10**6, ceiling_acc, seed, n=n)
    return write_stage(
        root,
        "transfer",
        "large",
        10**6,
        student_acc,
        seed,
        n=n,
        loss="xent",
        chain=("small", "large"),
        weak=weak,
        ceiling=strong,
    )


def json_lines(root: Path, key: str) -> list[dict]:
    (folder,) = (root / "stages").glob(f"*__{key}")
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


LADDER = {"small": (1_000, 0.60), "medium": (30_000, 0.75), "large": (1_000_000, 0.90)}
RECOVERED = {"xent": 0.5, "logconf": 0.8}  # share of the gap each loss recovers


def write_experiment(root: Path, ladder=LADDER, seeds=(0, 1), losses=RECOVERED, n: int = 200) -> Path:
    """A finished upward sweep whose students recover a known share of the gap, exactly."""
    for seed in seeds:
        truth = {
            m: write_stage(root, "ground_truth", m, size, acc, seed, n, shift=seed) for m, (size, acc) in ladder.items()
        }
        models = list(ladder)
        for loss, share in losses.items():
            for i, weak in enumerate(models):
                for strong in models[i:]:
                    w, c = ladder[weak][1], ladder[strong][1]
                    accuracy = round((w + share * (c - w)) * n) / n
                    write_stage(
                        root,
                        "transfer",
                        strong,
                        ladder[strong][0],
                        accuracy,
                        seed,
                        n,
                        loss=loss,
                        chain=(weak, strong),
                        weak=truth[weak],
                        ceiling=truth[strong],
                        shift=seed,
                    )
    return root


# ---------------------------------------------------------------------------------------------
# PGR and its intervals


def columns(rows, metric: str = "accuracy"):
    """(labels, what the metric scores): predicted classes for accuracy, p_pos for AUROC."""
    y, p_pos = (np.array([r[k] for r in rows]) for k in ("hard_label", "p_pos"))
    return y, (p_pos > 0.5).astype(int) if metric == "accuracy" else p_pos


@pytest.mark.parametrize("metric", ["accuracy", "auroc"])
def test_pgr_interval_contains_known_value_and_narrows_with_more_examples(metric):
    widths = []
    for n in (100, 2000):
        y, weak = columns(predictions(n, 0.6), metric)
        _, ceiling = columns(predictions(n, 0.9), metric)
        _, student = columns(predictions(n, 0.75), metric)
        result = w2s_metrics.bootstrap_seed(y, weak, ceiling, student, metric)
        values = [float(w2s_metrics.metric_values(y, p, metric)) for p in (weak, ceiling, student)]
        point = (values[2] - values[0]) / (values[1] - values[0])
        low, high = pgr_interval(result.bootstrap_distribution, *values)
        assert low < point < high
        if metric == "accuracy":
            assert point == pytest.approx(0.5)
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # ~sqrt(20) narrower with 20x the test examples
    assert widths[1] < 0.1


def test_interval_is_reproducible():
    y, weak = columns(predictions(200, 0.6))
    _, ceiling = columns(predictions(200, 0.9))
    _, student = columns(predictions(200, 0.75))
    first = w2s_metrics.bootstrap_seed(y, weak, ceiling, student).confidence_interval
    again = w2s_metrics.bootstrap_seed(y, weak, ceiling, student).confidence_interval
    assert np.array_equal(first.low, again.low) and np.array_equal(first.high, again.high)


def test_seed_rows_pgr_and_interval_from_stage_folders(tmp_path):
    root = tmp_path / "exp"
    write_pair(root, 0.6, 0.9, 0.75)
    rows, _ = report.seed_rows(report.load_records(root))
    (row,) = rows.to_dict("records")
    assert row["pgr"] == pytest.approx(0.5) and row["pgr_low"] < 0.5 < row["pgr_high"]
    assert (row["weak_accuracy"], row["ceiling_accuracy"], row["test_accuracy"]) == (0.6, 0.9, 0.75)
    assert pd.isna(row["pgr_note"])
    # nested right-sets: where the supervisor was right the student agrees; on 15 of its 80 mistakes it does not
    assert row["agreement_supervisor_right"] == 1.0
    assert row["agreement_supervisor_wrong"] == pytest.approx(1 - 30 / 80)


def test_agreement_split_is_read_from_metrics_json_when_the_run_wrote_it(tmp_path):
    """Stage folders from before the split was in metrics.json get it recomputed (above); where the
    run wrote it, and in W&B summaries, the table carries the run's own values."""
    root = tmp_path / "exp"
    key = write_pair(root, 0.6, 0.9, 0.75)
    (folder,) = (root / "stages").glob(f"*__{key}")
    metrics = json.loads((folder / "metrics.json").read_text())
    split = {"agreement_supervisor_right": 0.25, "agreement_supervisor_wrong": None}  # not what predictions give
    (folder / "metrics.json").write_text(json.dumps({**metrics, **split}))
    (row,) = report.seed_rows(report.load_records(root))[0].to_dict("records")
    assert row["agreement_supervisor_right"] == 0.25 and pd.isna(row["agreement_supervisor_wrong"])
    run = wandb_run("transfer", "large", 0.75, 0, "small", "xent", agreement=0.8, agreement_supervisor_right=0.9)
    records = [report.record_from_wandb(r) for r in (*recorded_runs()[:2], run)]
    (row,) = report.seed_rows(records)[0].to_dict("records")
    assert row["agreement_supervisor_right"] == 0.9 and pd.isna(row["agreement_supervisor_wrong"])


def test_pgr_undefined_when_ceiling_does_not_beat_weak(tmp_path):
    root = tmp_path / "exp"
    write_pair(root, 0.700, 0.705, 0.800)
    rows, draws = report.seed_rows(report.load_records(root))
    (row,) = rows.to_dict("records")
    assert pd.isna(row["pgr"]) and pd.isna(row["pgr_low"]) and pd.isna(row["pgr_high"])
    assert "ceiling - weak = 0.005 < 0.01" in row["pgr_note"]
    (summary,) = report.summary_rows(rows, draws).to_dict("records")
    assert pd.isna(summary["pgr"]) and "< 0.01" in summary["pgr_note"]


def test_interval_is_unbounded_when_the_gap_is_within_noise(tmp_path):
    """Gap 0.02 on 100 examples: the point is defined, but the gap is not distinguishable from 0, so
    Fieller's set is unbounded; the student-minus-weak difference keeps a finite interval."""
    root = tmp_path / "exp"
    write_pair(root, 0.70, 0.72, 0.71, n=100)
    (row,) = report.seed_rows(report.load_records(root))[0].to_dict("records")
    assert row["pgr"] == pytest.approx(0.5)
    assert (row["pgr_low"], row["pgr_high"]) == (-np.inf, np.inf) and row["pgr_note"].startswith("CI unbounded")
    assert row["student_minus_weak"] == pytest.approx(0.01)
    assert -0.2 < row["student_minus_weak_low"] < 0.01 < row["student_minus_weak_high"] < 0.2
    markdown = report.markdown(report.seed_rows(report.load_records(root))[0], "accuracy", per_seed=True)
    assert "0.500 [−∞, ∞]" in markdown
    written = report.report([root], tmp_path / "out")  # the figures draw it without a band
    assert {"pgr_vs_size.pdf", "pgr_by_loss.png"} <= {p.name for p in written}


def test_fieller_interval_matches_its_formula_and_brackets_the_ratio():
    """Draws with known (co)variances: the interval is the roots of the quadratic, by hand."""
    rng = np.random.default_rng(0)
    weak = 0.6 + 0.01 * rng.standard_normal(4000)
    ceiling = weak + 0.2 + 0.01 * rng.standard_normal(4000)
    student = weak + 0.1 + 0.01 * rng.standard_normal(4000)
    draws = np.stack([weak, ceiling, student])
    low, high = pgr_interval(draws, 0.6, 0.8, 0.7)
    num, den = student - weak, ceiling - weak
    z2 = 1.959963984540054**2
    # (N - rD)^2 = z^2 (Var N - 2r Cov + r^2 Var D)  <=>  a r^2 - 2 b r + c = 0
    a = 0.2**2 - z2 * den.var(ddof=1)
    b = 0.1 * 0.2 - z2 * np.cov(num, den)[0, 1]
    c = 0.1**2 - z2 * num.var(ddof=1)
    roots = sorted(np.roots([a, -2 * b, c]).real)
    assert (low, high) == pytest.approx(roots) and low < 0.5 < high
    assert 0.35 < low and high < 0.65  # about 0.5 +- 1.96 x 0.07 (the ratio's delta-method sd)


def test_seeds_that_agree_give_a_finite_interval_despite_a_small_gap(tmp_path):
    """The issue's case: a gap of a few points, PGR about 0.5 in every seed. The percentile
    interval of the ratio was undefined; Fieller's is finite and brackets every seed's PGR."""
    root = tmp_path / "exp"
    for seed, (w, c, s) in enumerate([(0.80, 0.84, 0.82), (0.80, 0.84, 0.82), (0.79, 0.83, 0.813)]):
        write_pair(root, w, c, s, n=3000, seed=seed)
    per_seed, draws = report.seed_rows(report.load_records(root))
    (summary,) = report.summary_rows(per_seed, draws).to_dict("records")
    assert summary["pgr"] == pytest.approx(0.525, abs=0.01)
    assert np.isfinite([summary["pgr_low"], summary["pgr_high"]]).all()
    assert summary["pgr_low"] < per_seed["pgr"].min() <= per_seed["pgr"].max() < summary["pgr_high"]
    assert 0 < summary["student_minus_weak_low"] < summary["student_minus_weak"] < summary["student_minus_weak_high"]


def test_aggregate_over_seeds_averages_whole_seeds():
    draws = [np.array([[0.6], [0.9], [0.75]]), np.array([[0.6], [0.8], [0.76]])]
    means = w2s_metrics.aggregate_seeds(draws)
    assert means.shape == (3, w2s_metrics.N_RESAMPLES)
    assert set(np.round(means[1], 6)) == {0.9, 0.8, 0.85}  # seed 0 twice, seed 1 twice, one of each


# ---------------------------------------------------------------------------------------------
# the whole report


def test_report_from_results_folder_writes_tables_and_figures(tmp_path):
    root = write_experiment(tmp_path / "runs" / "sweep")
    (root / "stages" / ".tmp-unfinished").mkdir()  # a killed run's leftovers: ignored
    written = report.report([root])
    out = root / "report"
    names = {p.name for p in written}
    for stem in ("accuracy_vs_size", "pgr_vs_size", "pgr_by_loss", "agreement"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (out / f"{stem}.png").stat().st_size > 5000
    per_seed = pd.read_csv(out / "per_seed.csv")
    assert list(per_seed.columns) == report.SEED_COLUMNS
    assert len(per_seed) == 6 * 2 * 2  # upward pairs x losses x seeds
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == report.SUMMARY_COLUMNS
    assert len(summary) == 6 * 2 and set(summary["n_seeds"]) == {2}
    gap = summary[summary["weak_model"] != summary["model"]]
    for loss, share in RECOVERED.items():
        rows = gap[gap["loss"] == loss]
        assert np.allclose(rows["pgr"], share, atol=0.02)
        assert ((rows["pgr_low"] <= rows["pgr"]) & (rows["pgr"] <= rows["pgr_high"])).all()
    same = summary[summary["weak_model"] == summary["model"]]
    assert same["pgr"].isna().all() and same["pgr_note"].str.contains("< 0.01").all()
    text = (out / "summary.md").read_text()
    assert "| toy | small->large | logconf | 2 |" in text and "PGR of the means [95% CI] | mean of seed PGRs" in text


def test_damaged_results_jsonl_and_metrics_are_left_out_with_one_warning(tmp_path, capsys):
    """results.jsonl is derived: a truncated last line (a killed writer, a full disk) is ignored with
    one warning, and the tables come from the stage folders all the same."""
    root = write_experiment(tmp_path / "runs" / "sweep")
    report.report([root], out=tmp_path / "whole")
    lines = [json.dumps({"key": p.name.rsplit("__", 1)[1]}) for p in sorted((root / "stages").iterdir())]
    (root / "results.jsonl").write_text("\n".join(lines)[:-7])
    capsys.readouterr()
    assert main(["report", str(root), "--out", str(tmp_path / "damaged")]) == 0
    out = capsys.readouterr().out
    assert out.count("warning:") == 1 and "results.jsonl is damaged; ignored" in out
    assert (tmp_path / "damaged" / "summary.csv").read_text() == (tmp_path / "whole" / "summary.csv").read_text()
    (next((root / "stages").glob("transfer__*")) / "metrics.json").write_text("{")
    assert main(["report", str(root), "--out", str(tmp_path / "less")]) == 0
    assert "unreadable config.json or metrics.json; left out" in capsys.readouterr().out


def test_report_reads_a_parent_folder_and_auroc(tmp_path):
    write_experiment(tmp_path / "runs" / "a", seeds=(0,), losses={"xent": 0.5})
    write_experiment(tmp_path / "runs" / "b", seeds=(0,), losses={"xent": 0.5})
    report.report([tmp_path / "runs"], out=tmp_path / "out", metric="auroc")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert set(summary["experiment"]) == {"a", "b"} and set(summary["metric"]) == {"auroc"}
    assert summary["pgr"].notna().any()


def test_degenerate_one_model_one_seed(tmp_path):
    root = write_experiment(tmp_path / "one", ladder={"only": (1000, 0.7)}, seeds=(0,), losses={"xent": 0.5})
    written = report.report([root], out=tmp_path / "out")
    assert all(p.stat().st_size > 0 for p in written)
    (row,) = pd.read_csv(tmp_path / "out" / "summary.csv").to_dict("records")
    assert pd.isna(row["pgr"]) and "< 0.01" in row["pgr_note"]


def test_cli_report_writes_to_out(tmp_path, capsys):
    root = write_experiment(tmp_path / "runs" / "quickstart", seeds=(0,))
    assert main(["report", str(root), "--out", str(tmp_path / "plots")]) == 0
    assert "PGR of the means [95% CI]" in capsys.readouterr().out
    assert (tmp_path / "plots" / "pgr_vs_size.png").is_file()


@pytest.mark.parametrize(
    "argv", [["report", "/no/such/run"], ["report"], ["report", "EMPTY"], ["report", "--wandb", "noslash"]]
)
def test_cli_report_bad_input_exits_2(tmp_path, capsys, argv):
    (tmp_path / "empty" / "stages").mkdir(parents=True)
    argv = [str(tmp_path / "empty") if a == "EMPTY" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("w2s: error: report:") and "\n" not in err


def test_report_raises_spec_error_without_transfers(tmp_path):
    root = tmp_path / "exp"
    write_stage(root, "ground_truth", "small", 1000, 0.6)
    with pytest.raises(SpecError, match="no finished weak-to-strong stages"):
        report.report([root])


# ---------------------------------------------------------------------------------------------
# W&B runs (recorded shapes: plain dicts and public-API-like objects)


def wandb_run(kind, model, acc, seed, weak_model=None, loss=None, auroc=None, as_object=False, **summary):
    config = {
        "key": f"{kind}-{model}-{weak_model}-{loss}-{seed}",
        "stage": f"{kind}/toy/{model}",
        "kind": kind,
        "dataset": "toy",
        "model": model,
        "seed": seed,
    }
    if kind != "ground_truth":
        config.update(weak_model=weak_model, loss=loss, chain=f"{weak_model}->{model}")
    summary = {"test_accuracy": acc, "test_auroc": auroc or acc, **summary}
    if as_object:  # what wandb.Api().runs() yields: attributes, the summary under summary_metrics
        return SimpleNamespace(config=config, summary_metrics=summary, job_type=kind, group="sweep", id=config["key"])
    return {"config": config, "summary": summary, "job_type": kind, "group": "sweep"}


def recorded_runs() -> list:
    runs = []
    for seed, (w, c, s) in enumerate([(0.6, 0.9, 0.75), (0.62, 0.88, 0.77)]):
        runs += [
            wandb_run("ground_truth", "small", w, seed, non_embedding_parameters=1000),
            wandb_run("ground_truth", "large", c, seed, as_object=True, non_embedding_parameters=10**6),
            wandb_run("transfer", "large", s, seed, "small", "xent", agreement=0.8, non_embedding_parameters=10**6),
        ]
    runs.append({"config": {"kind": "transfer"}, "summary": {}, "job_type": "transfer"})  # crashed: no metrics
    runs.append({"config": {}, "summary": {"test_accuracy": 0.5}, "job_type": "sweep-agent"})  # not a stage
    return runs


def test_wandb_records_convert_and_aggregate_over_seeds(tmp_path):
    records = [r for r in map(report.record_from_wandb, recorded_runs()) if r]
    assert len(records) == 6
    transfer = next(r for r in records if r["kind"] == "transfer")
    assert transfer["chain"] == "small->large" and transfer["loss"] == "xent" and transfer["experiment"] == "sweep"
    per_seed, draws = report.seed_rows(records)
    assert per_seed["pgr"].round(6).tolist() == [0.5, round(0.15 / 0.26, 6)]
    assert per_seed["pgr_low"].isna().all()  # no predictions in W&B: no within-seed interval
    (summary,) = report.summary_rows(per_seed, draws).to_dict("records")
    assert summary["pgr"] == pytest.approx((0.76 - 0.61) / (0.89 - 0.61))
    assert summary["pgr_low"] <= summary["pgr"] <= summary["pgr_high"]  # over seeds
    written = report.build_report(records, tmp_path / "out")
    assert (tmp_path / "out" / "accuracy_vs_size.png") in written


def test_wandb_spec_dicts_and_single_seed_have_no_interval():
    run = wandb_run("transfer", "large", 0.75, 0, "small", "xent")
    run["config"].update(
        model={"name": "Qwen/Qwen2.5-0.5B", "label": None, "num_layers": 12},
        loss={"name": "custom", "path": "pkg.mod:MyLoss"},
        chain=["small", "Qwen/Qwen2.5-0.5B@12L"],
        dataset={"name": "sst2", "id": None},
    )
    record = report.record_from_wandb(run)
    assert (record["model"], record["loss"], record["dataset"]) == ("Qwen/Qwen2.5-0.5B@12L", "MyLoss", "sst2")
    records = [r for r in map(report.record_from_wandb, recorded_runs()[:3]) if r]
    per_seed, draws = report.seed_rows(records)
    (summary,) = report.summary_rows(per_seed, draws).to_dict("records")
    assert summary["pgr"] == pytest.approx(0.5) and pd.isna(summary["pgr_low"])


def test_report_wandb_queries_finished_runs_of_a_group(tmp_path, monkeypatch):
    import wandb

    calls = []

    class FakeApi:
        def runs(self, path, filters=None):
            calls.append((path, filters))
            return recorded_runs()

    monkeypatch.setattr(wandb, "Api", FakeApi)
    report.report_wandb("me/w2s", "sweep", tmp_path / "out")
    assert calls == [("me/w2s", {"state": "finished", "group": "sweep"})]
    assert (tmp_path / "out" / "summary.csv").is_file()


def test_metrics_match_sklearn_and_counts_match_repeating_examples():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 1)  # many ties
    assert w2s_metrics.metric_values(y, p, "auroc") == pytest.approx(roc_auc_score(y, p))
    counts = rng.integers(0, 3, 300)
    repeated = np.repeat(np.arange(300), counts)
    predicted = (p > 0.5).astype(int)
    for metric, scores, reference in (
        ("auroc", p, roc_auc_score(y[repeated], p[repeated])),
        ("accuracy", predicted, np.mean(predicted[repeated] == y[repeated])),
    ):
        assert w2s_metrics.metric_values(y, scores, metric, counts[None, :])[0] == pytest.approx(reference)


def test_superseded_stage_is_left_out_of_the_tables(tmp_path):
    """A spec change leaves the old stage folder cached beside the new one: report the newer only."""
    root = tmp_path / "exp"
    old = write_pair(root, 0.6, 0.9, 0.65)
    (folder,) = (root / "stages").glob(f"*__{old}")
    newer = folder.with_name(folder.name.replace(old, "knewer00001"))  # same slot, other settings
    newer.mkdir()
    (newer / "predictions.jsonl").write_text((folder / "predictions.jsonl").read_text())
    (newer / "config.json").write_text((folder / "config.json").read_text().replace(old, "knewer00001"))
    (newer / "metrics.json").write_text((folder / "metrics.json").read_text().replace("0.65", "0.75"))
    os.utime(newer / "metrics.json", (time.time() + 5, time.time() + 5))
    said = []
    rows, _ = report.seed_rows(report.load_records(root, echo=said.append))
    assert rows["test_accuracy"].tolist() == [0.75] and "left out 1 superseded" in said[0]
    # where results.jsonl (the last run's plan) names one of the two, that one counts
    (root / "results.jsonl").write_text(json.dumps({"key": old}) + "\n")
    rows, _ = report.seed_rows(report.load_records(root, echo=said.append))
    assert rows["test_accuracy"].tolist() == [0.65]


def test_wandb_runs_in_the_stage_config_layout_link_by_key(tmp_path):
    """w2s logs each run's config with the serialiser that writes config.json: supervisors by key,
    so a ground truth with the same model label but other settings is not taken as the weak model."""
    from w2s.experiment.plan import plan_run
    from w2s.pipeline.store import stage_config
    from w2s.spec import validate_spec

    spec = validate_spec(
        {
            "name": "g",
            "output_dir": str(tmp_path),
            "datasets": {"name": "synthetic"},
            "models": [{"name": "minilm-l1"}, {"name": "minilm-l2"}],
            "losses": [{"name": "xent"}],
            "pairs": [["minilm-l1", "minilm-l2"]],
            "train": {"mixed_precision": "no"},
        }
    )
    stages = plan_run(spec).stages
    accuracy = {
        "ground_truth/synthetic/minilm-l1/s0": 0.6,
        "ground_truth/synthetic/minilm-l2/s0": 0.9,
        "transfer/synthetic/minilm-l1->minilm-l2/xent/s0": 0.75,
    }
    runs = [
        {
            "config": stage_config(s, spec),
            "summary": {"test_accuracy": accuracy[s.name]},
            "job_type": s.kind,
            "group": "g",
        }
        for s in stages
    ]
    decoy = stage_config(stages[0], spec) | {"key": "other"}  # same label, other settings: must not be used
    runs = [
        {"config": decoy, "summary": {"test_accuracy": 0.5}, "job_type": "ground_truth", "group": "g"},
        *runs,
        {"config": {"spec": {}}, "summary": {"pgr_mean/xent": 0.5}, "job_type": "summary", "group": "g"},
    ]
    records = [r for r in map(report.record_from_wandb, runs) if r]
    assert len(records) == 4
    (row,) = report.seed_rows(records)[0].to_dict("records")
    assert (row["weak_accuracy"], row["pgr"], row["loss"]) == (0.6, 0.5, "xent")
    assert row["stage"] == "transfer/synthetic/minilm-l1->minilm-l2/xent/s0"


def test_figures_without_model_sizes_fall_back_to_ladder_order(tmp_path):
    runs = recorded_runs()
    for run in runs:
        (run["summary"] if isinstance(run, dict) else run.summary_metrics).pop("non_embedding_parameters", None)
    written = report.build_report([r for r in map(report.record_from_wandb, runs) if r], tmp_path / "out")
    assert len(written) == 18 and all(p.stat().st_size > 0 for p in written)


# ---------------------------------------------------------------------------------------------
# what a summary row means


def test_summary_pgr_is_the_pgr_of_the_seed_means_and_the_mean_of_seed_pgrs_beside_it():
    """Two seeds by hand: (weak, ceiling, student) = (0.60, 0.80, 0.70) and (0.60, 0.70, 0.68). PGR of
    the means is (0.69 - 0.60) / (0.75 - 0.60) = 0.6; the seeds' PGRs are 0.5 and 0.8, their mean 0.65."""
    rows = []
    for seed, (w, c, s) in enumerate([(0.60, 0.80, 0.70), (0.60, 0.70, 0.68)]):
        rows.append(
            dict(experiment="e", dataset="toy", kind="transfer", chain="a->b", weak_model="a", model="b", loss="xent")
            | dict(select="final", gold_frac=0.0, seed=seed, key=f"s{seed}", n_test=100)
            | dict(weak_accuracy=w, ceiling_accuracy=c, test_accuracy=s)
        )
    draws = {
        ("e", f"s{i}"): np.array([[r["weak_accuracy"]], [r["ceiling_accuracy"]], [r["test_accuracy"]]])
        for i, r in enumerate(rows)
    }
    (row,) = report.summary_rows(pd.DataFrame(rows), draws).to_dict("records")
    assert row["pgr"] == pytest.approx(0.6) and row["mean_seed_pgr"] == pytest.approx(0.65)
    assert row["n_seeds"] == 2 and row["n_transfers"] == 2
    other = pd.DataFrame(rows).assign(chain="c->b", weak_model="c", key=["t0", "t1"])
    draws |= {("e", f"t{i}"): draws[("e", f"s{i}")] for i in range(2)}
    pooled = report.summary_rows(pd.concat([pd.DataFrame(rows), other]), draws, by=["loss"])
    assert pooled["n_seeds"].tolist() == [2] and pooled["n_transfers"].tolist() == [4]  # 2 pairs x 2 seeds
    rows[1]["ceiling_accuracy"] = 0.605  # a seed's gap under MIN_GAP: its PGR is undefined, so is their mean
    (row,) = report.summary_rows(pd.DataFrame(rows), draws).to_dict("records")
    assert row["mean_seed_pgr"] is None or np.isnan(row["mean_seed_pgr"])
    assert row["pgr"] == pytest.approx((0.69 - 0.60) / (0.7025 - 0.60))


def test_two_run_folders_of_one_name_are_kept_apart(tmp_path, capsys):
    """Two copies of one experiment (the same stage keys) read together: two experiments named by the
    end of their paths, each with its own seed, never one with seed 0 counted twice."""
    for copy in ("a", "b"):
        write_experiment(tmp_path / copy / "runs" / "quickstart", seeds=(0,))
    folders = [tmp_path / copy / "runs" / "quickstart" for copy in ("a", "b")]
    records = records_of(*folders, echo=lambda *a: None)
    assert {r["experiment"] for r in records} == {"a/runs/quickstart", "b/runs/quickstart"}
    assert main(["report", *map(str, folders), "--out", str(tmp_path / "out")]) == 0
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert (summary["n_seeds"] == 1).all() and len(summary) == 2 * 2 * 6  # 2 copies x 2 losses x 6 chains
    assert sorted(summary["experiment"].unique()) == ["a/runs/quickstart", "b/runs/quickstart"]
    assert records_of(folders[0], folders[0], echo=lambda *a: None)[0]["experiment"] == "quickstart"


def test_redraw_draws_a_reports_figures_from_its_own_tables(tmp_path, capsys):
    """--redraw reads summary.csv and per_seed.csv only (no stage folders): the same figures, and the
    ground truth it rebuilds from the per-seed table is the report's own."""
    root = write_experiment(tmp_path / "runs" / "exp", seeds=(0, 1))
    report.report([root], tmp_path / "first", echo=lambda *a: None)
    shutil.copytree(tmp_path / "first", tmp_path / "tables", ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    shutil.rmtree(root)  # the stage folders are gone
    assert main(["report", "--redraw", str(tmp_path / "tables")]) == 0
    assert "redrew 5 figures" in capsys.readouterr().out
    drawn = {p.name for p in (tmp_path / "tables").glob("*.p*")}
    assert drawn == {p.name for p in (tmp_path / "first").glob("*.p*")} and len(drawn) == 10
    rebuilt = report.ground_truth_from_per_seed(pd.read_csv(tmp_path / "first" / "per_seed.csv"))
    truth = rebuilt.set_index("model")
    for model, (size, acc) in LADDER.items():
        assert truth.loc[model, "test_accuracy"] == pytest.approx(acc, abs=1e-9) and truth.loc[model, "ceiling"]
        assert truth.loc[model, "non_embedding_parameters"] == size
    assert main(["report", str(tmp_path), "--redraw", str(tmp_path / "tables")]) == 2
    assert "one of the three" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    assert main(["report", "--redraw", str(tmp_path / "bad")]) == 2
    assert "cannot read its summary.csv and per_seed.csv" in capsys.readouterr().err


def test_a_report_over_damaged_supervisors_ceilings_and_transfers_is_whole_with_a_warning_each(tmp_path):
    """Every ground-truth stage's metrics.json without its scores (each supervisor and each ceiling of
    the sweep), one transfer's predictions cut short: the report still writes every file (before, the
    figures ended in "zero-size array to reduction operation minimum"), and says once per damaged
    metrics.json what it left out."""
    root = write_experiment(tmp_path / "runs" / "exp", seeds=(0,))
    stages = root / "stages"
    for folder in stages.glob("ground_truth__*"):
        (folder / "metrics.json").write_text('{"n_train": 200}\n')  # valid JSON, no scores
    transfer = next(stages.glob("transfer__*"))
    (transfer / "predictions.jsonl").write_text('{"split": "test", "id"')
    said = []
    written = report.report([root], tmp_path / "out", echo=said.append)
    names = {p.name for p in written}
    assert {"per_seed.csv", "summary.csv", "conclusions.csv", "accuracy_vs_size.png", "pgr_vs_size.png"} <= names
    assert sum("metrics.json has no test_accuracy" in line for line in said) == len(LADDER)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["pgr"].isna().all() and summary["pgr_note"].notna().all()
    per_seed = pd.read_csv(tmp_path / "out" / "per_seed.csv")
    assert (per_seed["pgr_note"] == "weak, ceiling not finished").all()


def test_a_students_intervals_are_of_its_own_result_not_the_checkpoints_kept_beside_it(tmp_path):
    """A student under `oracle` keeps its final checkpoint beside its result (predictions.final.jsonl,
    w2s/experiment/selection.py): its intervals, like its point scores, are of its result."""
    root = tmp_path / "exp"
    key = write_pair(root, 0.6, 0.9, 0.75)
    (folder,) = (root / "stages").glob(f"*__{key}")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "select": "oracle"}))
    last_step = predictions(200, 0.6)  # no better than its supervisor
    (folder / "predictions.final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in last_step))
    (row,) = report.seed_rows(report.load_records(root))[0].to_dict("records")
    assert row["select"] == "oracle" and row["student_minus_weak"] == pytest.approx(0.15)
    assert 0.05 < row["student_minus_weak_low"] < 0.15 < row["student_minus_weak_high"]
    assert row["pgr_low"] < 0.5 < row["pgr_high"]
