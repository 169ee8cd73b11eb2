"""The Python API (w2s/api.py, w2s/plots.py): the numbers `w2s report` writes, as DataFrames and
figures, and a read path that imports no torch."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import w2s
from tests.conftest import tiny_spec
from w2s.cli import main
from w2s.errors import SpecError
from w2s.spec import validate_spec

REPO = Path(__file__).resolve().parents[1]


def ladder_spec(out: Path) -> dict:
    pairs = [["tiny-16", "tiny-24"], ["tiny-16", "tiny-32"], ["tiny-24", "tiny-32"]]
    return tiny_spec(out, name="ladder", ladder=3, losses=("xent", "logconf"), seeds=(0, 1), pairs=pairs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A tiny two-seed ladder with two losses, trained once through the API."""
    tmp = tmp_path_factory.mktemp("api")
    spec = validate_spec(ladder_spec(tmp))
    rows = w2s.run(spec, echo=lambda *a: None)
    assert isinstance(rows, pd.DataFrame) and len(rows) == 2 * (3 + 3 * 2)
    return tmp / "ladder"


def test_run_returns_the_rows_of_results_jsonl(finished):
    rows = pd.read_json(finished / "results.jsonl", lines=True, dtype={"key": str})
    again = w2s.run(validate_spec(ladder_spec(finished.parent)), echo=lambda *a: None)  # all cached
    assert list(again["key"]) == list(rows["key"])
    assert again["test_accuracy"].tolist() == rows["test_accuracy"].tolist()


def assert_results_equal_results_jsonl(run: Path) -> pd.DataFrame:
    """One table, three doors: w2s.results holds every row and column of results.jsonl with the same
    values (PGR included), then the report's additions; the per-seed table's PGR is the same."""
    from w2s.report.records import REPORT_COLUMNS

    df = w2s.results(run, echo=lambda *a: None)
    listed = pd.read_json(run / "results.jsonl", lines=True, dtype={"key": str, "weak_key": str})
    assert list(df.columns) == [*listed.columns, *REPORT_COLUMNS]
    ours = df[listed.columns].set_index("key").loc[listed["key"]]
    theirs = listed.set_index("key")
    for column in theirs.columns:
        a, b = ours[column], theirs[column]
        if pd.api.types.is_numeric_dtype(b):
            assert np.allclose(a.astype(float), b.astype(float), equal_nan=True), column
        else:
            assert a.fillna("-").astype(str).tolist() == b.fillna("-").astype(str).tolist(), column
    per_seed = w2s.pgr(df, per_seed=True).set_index("key")
    assert np.allclose(per_seed["pgr"].astype(float), theirs.loc[per_seed.index, "pgr"].astype(float), equal_nan=True)
    return theirs


def test_results_equal_results_jsonl_column_for_column(finished):
    theirs = assert_results_equal_results_jsonl(finished)
    transfers = theirs["kind"] == "transfer"
    assert transfers.sum() == 12 and theirs.loc[transfers, ["weak_accuracy", "ceiling_auroc"]].notna().all(axis=None)
    assert (theirs.loc[transfers, "pgr"].notna() | theirs.loc[transfers, "pgr_note"].notna()).all()


def test_results_equal_results_jsonl_on_the_committed_sst2_run():
    """The same on a real run, where every transfer has a PGR (the tiny ladder's gaps are mostly too small)."""
    theirs = assert_results_equal_results_jsonl(REPO / "docs" / "notebooks" / "runs" / "sst2-ladder")
    transfers = theirs["kind"] == "transfer"
    assert transfers.sum() == 18 and theirs.loc[transfers, "pgr"].notna().all()


def test_results_are_the_rows_of_results_jsonl_with_the_report_columns(finished):
    df = w2s.results(finished, echo=lambda *a: None)
    listed = pd.read_json(finished / "results.jsonl", lines=True, dtype={"key": str}).set_index("key")
    assert set(df["key"]) == set(listed.index) and len(df) == 18
    for column in ("test_accuracy", "test_auroc", "ece", "non_embedding_parameters", "pgr", "machine"):
        assert column in df
    own = df.set_index("key")
    assert np.allclose(own["test_accuracy"], listed.loc[own.index, "test_accuracy"])
    assert {"experiment", "folder", "superseded"} <= set(df.columns) and not df["superseded"].any()
    assert (df["experiment"] == "ladder").all()


def test_pgr_matches_what_w2s_report_writes(finished, tmp_path):
    assert main(["report", str(finished), "--out", str(tmp_path / "report")]) == 0
    df = w2s.results(finished, echo=lambda *a: None)
    for per_seed, name in ((False, "summary"), (True, "per_seed")):
        ours = w2s.pgr(df, per_seed=per_seed)
        written = pd.read_csv(tmp_path / "report" / f"{name}.csv")
        assert len(ours) == len(written) > 0
        for column in ("pgr", "pgr_low", "pgr_high", "test_accuracy", "student_minus_weak_low"):
            assert np.allclose(ours[column].astype(float), written[column].astype(float), equal_nan=True), column
        assert ours["pgr_note"].fillna("").tolist() == written["pgr_note"].fillna("").tolist()


def test_pgr_by_other_groups_and_on_a_filtered_frame(finished):
    df = w2s.results(finished, echo=lambda *a: None)
    by_loss = w2s.pgr(df, by=["loss"])
    assert sorted(by_loss["loss"]) == ["logconf", "xent"]
    assert (by_loss["n_seeds"] == 2).all() and (by_loss["n_transfers"] == 3 * 2).all()  # 3 pairs x 2 seeds
    per_seed = w2s.pgr(df, per_seed=True)
    for loss, row in by_loss.set_index("loss").iterrows():
        assert row["test_accuracy"] == pytest.approx(per_seed.loc[per_seed["loss"] == loss, "test_accuracy"].mean())
    one_seed = w2s.pgr(df[df["seed"] == 0])
    assert (one_seed["n_seeds"] == 1).all() and len(one_seed) == 6
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        w2s.pgr(df, metric="f1")


def test_plots_are_the_report_figures(finished):
    from matplotlib.figure import Figure

    df = w2s.results(finished, echo=lambda *a: None)
    for draw in (
        w2s.plots.accuracy_vs_size,
        w2s.plots.pgr_vs_size,
        w2s.plots.pgr_by_loss,
        w2s.plots.agreement,
        w2s.plots.accuracy_vs_ceiling,
    ):
        fig = draw(df)
        assert isinstance(fig, Figure) and fig.axes, draw.__name__
    labels = {line.get_label() for ax in w2s.plots.accuracy_vs_size(df).axes for line in ax.get_lines()}
    assert {"ceiling (ground truth)", "weak: tiny-16", "weak: tiny-24"} <= labels
    with pytest.raises(ValueError, match="no direct weak-to-strong transfers"):
        w2s.plots.pgr_vs_size(df[df["kind"] == "ground_truth"])


def test_each_misuse_names_its_argument(finished, tmp_path):
    """A wrong argument is a TypeError or ValueError in one sentence naming it, not a Python error
    from inside pandas; run folders that do not exist are SpecError (exported from w2s)."""
    df = w2s.results(finished, echo=lambda *a: None)
    cases = [
        (lambda: w2s.pgr(str(finished)), TypeError, r"^pgr: df is the DataFrame w2s.results returned, not run folders"),
        (lambda: w2s.pgr([str(finished), str(finished)]), TypeError, r"^pgr: df is the DataFrame .*w2s.results\("),
        (lambda: w2s.pgr(42), TypeError, "^pgr: df is the DataFrame w2s.results returned, got int$"),
        (lambda: w2s.pgr(df, by="loss"), TypeError, r"^pgr: by is a list of strings, such as \['loss'\]; got the st"),
        (lambda: w2s.pgr(df, by=["los"]), ValueError, "^pgr: by names no column of the per-seed table: los; use "),
        (lambda: w2s.pgr(df[["seed", "loss"]]), ValueError, "^pgr: df lacks the columns kind, experiment, key"),
        (lambda: w2s.ground_truth("runs/x"), TypeError, "^ground_truth: df is the DataFrame"),
        (
            lambda: w2s.load_spec(REPO / "experiments" / "quickstart.yaml", "seeds=[0,1]"),
            TypeError,
            r"^load_spec: overrides is a list of strings, such as \['seeds=\[0,1\]'\]; got the string",
        ),
        (lambda: w2s.load_spec(None), TypeError, "^load_spec: path takes a path"),
        (lambda: w2s.run(42), TypeError, "^run: spec takes an ExperimentSpec"),
        (lambda: w2s.results(tmp_path / "nope"), w2s.SpecError, f"^results: no such folder: {tmp_path / 'nope'}$"),
        (lambda: w2s.results(42), TypeError, "^results: run_dirs takes run folders"),
        (
            lambda: w2s.results(finished / "results.jsonl"),
            w2s.SpecError,
            "^results: .*results.jsonl is a file; give a run",
        ),
        (lambda: w2s.plots.gold_frac(df), ValueError, "^gold_frac: these results have one gold share"),
        (lambda: w2s.plots.pgr_vs_progress(df), ValueError, "^pgr_vs_progress: no learning curves"),
        (lambda: w2s.plots.pgr_vs_size(df, metric="f1"), ValueError, "^pgr_vs_size: unknown metric 'f1'"),
        (lambda: w2s.plots.pgr_vs_size("runs/x"), TypeError, "^pgr_vs_size: df is the DataFrame"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert w2s.SpecError is SpecError and issubclass(w2s.StagesFailed, RuntimeError)
    assert len(w2s.results([finished], echo=lambda *a: None)) == len(df)  # a list of folders is fine


def test_load_spec_with_overrides_and_its_errors(tmp_path):
    spec = w2s.load_spec(REPO / "experiments" / "quickstart.yaml", ["seeds=[0,1,2]", "name=qs"])
    assert spec.seeds == [0, 1, 2] and spec.name == "qs"
    with pytest.raises(SpecError, match="seeds"):
        w2s.load_spec(REPO / "experiments" / "quickstart.yaml", ["seeds=[-1]"])
    with pytest.raises(SpecError, match="give at least one run folder"):
        w2s.results()
    with pytest.raises(SpecError, match="no such folder"):
        w2s.results(tmp_path / "missing")


def test_the_read_path_imports_no_torch(finished):
    probe = (
        "import sys, w2s\n"
        f"df = w2s.results({str(finished)!r}, echo=lambda *a: None)\n"
        "summary = w2s.pgr(df)\n"
        "assert len(summary) == 6, summary\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'wandb') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_packaged_quickstart_is_the_experiments_one(capsys):
    shipped = w2s.load_spec("example:quickstart")
    assert shipped == w2s.load_spec(REPO / "experiments" / "quickstart.yaml")
    with pytest.raises(SpecError, match="^example:nope: no such example; `w2s list examples` shows the 17 shipped$"):
        w2s.load_spec("example:nope")
    with pytest.raises(SpecError, match="^example:quickstrat: no such example; did you mean example:quickstart"):
        w2s.load_spec("example:quickstrat")
    assert main(["list", "examples"]) == 0
    assert "example:quickstart" in capsys.readouterr().out
