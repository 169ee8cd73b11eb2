"""The specs the repository ships (experiments/) as a user meets them: they run from a clone, from
any folder, reading SST-2 from the hub or, here, through the documented local-data switch
(W2S_DATA_DIR); relative data paths in a spec are the spec file's."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, write_spec
from w2s.cli import main
from w2s.experiment.plan import plan_run
from w2s.pipeline.runner import run_experiment
from w2s.spec import load_spec, validate_spec

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted(str(p.relative_to(REPO)) for p in (REPO / "experiments").rglob("*.yaml"))
# checked whole here: their data (generated, or SST-2 through W2S_DATA_DIR) and models are offline
RUNNABLE_HERE = [
    "experiments/quickstart.yaml",
    "experiments/tiny_ladder.yaml",
    "experiments/reference_minilm.yaml",
    "experiments/sst2_ensembles.yaml",
    "experiments/sst2_gold.yaml",
    "experiments/sst2_gold_budget.yaml",
    "experiments/sst2_ladder.yaml",
    "experiments/sst2_minilm.yaml",
    "experiments/sst2_selection.yaml",
    "experiments/sst2_wide_gap.yaml",
]
# the spec alone: they need the hub (sciq), an ImageNet copy, or the MPNet parts (docs say how)
SPEC_ONLY = [s for s in SPECS if s not in RUNNABLE_HERE]


def w2s(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "W2S_DATA_DIR": str(SHARED_DATA), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "w2s", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_no_shipped_spec_reads_outside_the_repository():
    for spec in SPECS:
        assert "shared/" not in (REPO / spec).read_text(), spec
    assert set(RUNNABLE_HERE) <= set(SPECS) and len(SPEC_ONLY) == 7, SPEC_ONLY


@pytest.mark.parametrize("spec", RUNNABLE_HERE)
def test_each_shipped_spec_is_runnable_from_the_repository_and_from_another_folder(
    spec, tmp_path, request, monkeypatch, capsys
):
    """`w2s validate` runs the whole pre-run check (data read and split, tokenizers, models, sizes)."""
    if "sst2" in (REPO / spec).read_text():
        request.getfixturevalue("sst2_dir")  # the project's copy, as every SST-2 test reads it
    monkeypatch.setenv("W2S_DATA_DIR", str(SHARED_DATA))
    for cwd, path in ((REPO, spec), (tmp_path, str(REPO / spec))):
        monkeypatch.chdir(cwd)
        code = main(["validate", path, "--set", f"output_dir={tmp_path / 'runs'}"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out.startswith(f"{path}: valid (") and out.rstrip().endswith("runnable here")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("spec", SPEC_ONLY)
def test_the_other_shipped_specs_are_valid_from_anywhere(spec, tmp_path, monkeypatch, capsys):
    for cwd, path in ((REPO, spec), (tmp_path, str(REPO / spec))):
        monkeypatch.chdir(cwd)
        code = main(["validate", "--spec-only", path])
        out, err = capsys.readouterr()
        assert code == 0 and "valid spec" in out, err


def test_w2s_data_dir_reads_the_local_copy_as_if_the_spec_named_its_files(monkeypatch, tmp_path, sst2_dir):
    """`name: sst2` without data_files, with W2S_DATA_DIR: the same stages, key for key, as the spec
    that names the copy's files itself; without the variable the dataset is the hub's."""
    monkeypatch.setenv("W2S_DATA_DIR", str(SHARED_DATA))
    switched = load_spec(REPO / "experiments" / "sst2_ladder.yaml", [f"output_dir={tmp_path}", "seeds=[0]"])
    sst2 = SHARED_DATA / "sst2"
    files = {"train": str(sst2 / "train.tsv"), "test": [str(sst2 / "dev.tsv"), str(sst2 / "test.tsv")]}
    assert switched.datasets[0].data_files == files and switched.datasets[0].column_names == ["text", "label"]
    monkeypatch.delenv("W2S_DATA_DIR")
    raw = switched.model_dump(mode="json")
    assert validate_spec(raw).datasets[0].data_files == files  # named files are used as named
    raw["datasets"][0].update(data_files=None, column_names=None)
    assert validate_spec(raw).datasets[0].data_files is None  # the hub's
    named = {**raw, "datasets": [{**raw["datasets"][0], "data_files": files, "column_names": ["text", "label"]}]}
    keys = [s.key for s in plan_run(validate_spec(named)).stages]
    monkeypatch.setenv("W2S_DATA_DIR", str(SHARED_DATA))
    assert [s.key for s in plan_run(switched).stages] == keys and len(keys) == 16
    said = []
    run_experiment(switched, dry_run=True, echo=said.append)
    assert f"datasets.0 (sst2): the local copy in {SHARED_DATA / 'sst2'}" in said  # the dry run says where


def test_relative_data_paths_are_the_spec_files_and_set_paths_the_working_directorys(tmp_path):
    folder = tmp_path / "project" / "specs"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "rows.tsv").write_text("".join(f"good film {i}\t1\nbad film {i}\t0\n" for i in range(40)))
    spec = {
        "name": "relative",
        "output_dir": str(tmp_path / "runs"),
        "datasets": {
            "name": "local",
            "data_files": {"train": "data/rows.tsv"},
            "column_names": ["text", "label"],
            "text_columns": ["text"],
            "label_column": "label",
        },
        "models": [{"name": "minilm-l1"}],
        "tracking": {"mode": "disabled"},
    }
    write_spec(folder / "spec.yaml", spec)
    for cwd in (tmp_path, folder, REPO):
        proc = w2s("validate", str(folder / "spec.yaml"), cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    moved = "datasets.data_files={train: specs/data/rows.tsv}"
    assert w2s("validate", str(folder / "spec.yaml"), "--set", moved, cwd=tmp_path / "project").returncode == 0
    proc = w2s("validate", str(folder / "spec.yaml"), "--set", moved, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "w2s: error: datasets.0.data_files.train: file not found: specs/data/rows.tsv"
    )


def test_every_shipped_spec_is_a_packaged_example(capsys):
    """experiments/ links to the specs inside the package, so an installed wheel runs each by name."""
    linked = {p.name.removesuffix(".yaml"): p for p in (REPO / "experiments").rglob("*.yaml")}
    assert all(p.is_symlink() and p.resolve().parent == REPO / "w2s" / "examples" for p in linked.values())
    assert main(["list", "examples"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted(f"example:{name}" for name in linked) and len(listed) == 17
    assert main(["run", "sst2_ladder"]) == 2
    assert capsys.readouterr().err.strip() == (
        "w2s: error: spec file not found: sst2_ladder; did you mean example:sst2_ladder? (a spec shipped with w2s)"
    )


def test_list_datasets_shows_classes_source_and_columns(capsys):
    assert main(["list", "datasets"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "2 classes; hub SetFit/sst2 (train; test: validation + test); columns text, label. " in lines["sst2"]
    assert "10 classes; generated offline. " in lines["digits10"]
    assert "1000 classes; your copy (data_dir). " in lines["imagenet1k"]
