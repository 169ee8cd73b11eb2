"""The spec: loading, overrides, and one-line errors with exit code 2 for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from w2s.cli import main
from w2s.spec import load_spec

REPO = Path(__file__).resolve().parents[1]

GOOD = """
name: demo
output_dir: {out}
datasets: {{name: synthetic, n_train: 100, n_test: 50}}
models: [{{name: minilm-l1}}, {{name: minilm-l6}}]
losses: [{{name: xent}}, {{name: logconf, aux_coef: 0.5, warmup_frac: 0.1}}]
"""


@pytest.fixture
def spec_file(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "spec.yaml"
        path.write_text(text.format(out=tmp_path / "runs"))
        return path

    return write


def test_loads_with_defaults_and_overrides(spec_file):
    spec = load_spec(spec_file(GOOD), ["train.lr=1e-4", "seeds=[0,1]", "models.1.lr=2e-5"])
    assert spec.train.lr == 1e-4 and spec.seeds == [0, 1] and spec.models[1].lr == 2e-5
    assert [d.name for d in spec.datasets] == ["synthetic"]  # one dataset becomes a list
    assert spec.losses[1].aux_coef == 0.5 and spec.losses[1].warmup_frac == 0.1


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: [unclosed\n", "malformed YAML (line"),
        (GOOD.replace("name: demo", "name: demo\nlearning_rate: 3"), "learning_rate: unknown key; valid keys here: name,"),
        (GOOD.replace("minilm-l6}", "minilm-l6, nmae: x}"), "models.1.nmae: unknown key; valid keys here: name, label"),
        (GOOD.replace("name: synthetic", "name: imdbb"), "datasets.0.name: unknown dataset 'imdbb'; registered:"),
        (GOOD.replace("name: xent", "name: focal"), "losses.0: Input tag 'focal'"),
        (GOOD.replace("aux_coef: 0.5", "aux_coef: 2"), "losses.1.aux_coef: Input should be less than or equal to 1"),
        (GOOD.replace("aux_coef: 0.5", "alpha: 2"), "losses.1.alpha: unknown key; valid keys here: name, label, probe, aux_coef"),
        (GOOD.replace("{name: minilm-l1}", "{name: ./no/such/dir}"), "models.0.name: unknown model './no/such/dir'"),
        (GOOD + "pairs: [[minilm-l1, gpt9]]\n", "pairs: unknown model 'gpt9'; the ladder has minilm-l1, minilm-l6"),
        (GOOD.replace("output_dir: ", "nme: x\noutput_dir: "), "nme: unknown key"),
    ],
)
def test_validate_bad_spec_is_one_line_exit_2(spec_file, capsys, text, expected):
    code, out, err = run_cli(["validate", str(spec_file(text))], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("w2s: error: ")
    assert expected in err, err
    assert "Traceback" not in err


def test_validate_good_spec(spec_file, capsys):
    code, out, err = run_cli(["validate", str(spec_file(GOOD))], capsys)
    assert code == 0 and "valid (8 stages)" in out  # 2 ground truth + 3 upward pairs x 2 losses


def test_bad_override_names_the_key(spec_file, capsys):
    code, _, err = run_cli(["validate", str(spec_file(GOOD)), "--set", "train.lrr=1"], capsys)
    assert code == 2 and "train.lrr: unknown key; valid keys here: epochs, transfer_epochs, lr" in err


def test_missing_spec_file(capsys, tmp_path):
    code, _, err = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "spec file not found" in err


def test_run_with_missing_data_file_leaves_nothing(spec_file, capsys, tmp_path):
    text = GOOD.replace("name: synthetic,", f"name: sst2, data_files: {{{{train: {tmp_path}/missing.tsv}}}},")
    code, _, err = run_cli(["run", str(spec_file(text))], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "datasets.0.data_files.train" in err and "missing.tsv" in err
    assert not (tmp_path / "runs").exists()


def test_schema_and_lists(capsys):
    code, out, _ = run_cli(["schema"], capsys)
    schema = json.loads(out)
    assert code == 0 and {"datasets", "models", "losses", "train"} <= set(schema["properties"])
    for what, expected in [("datasets", "sciq"), ("models", "minilm-l1"), ("losses", "logconf")]:
        code, out, _ = run_cli(["list", what], capsys)
        assert code == 0 and expected in out


def test_console_module_entry_point(spec_file):
    proc = subprocess.run(
        [sys.executable, "-m", "w2s", "validate", str(spec_file(GOOD.replace("name: demo", "name: bad name")))],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("w2s: error:") and "name:" in proc.stderr


def test_every_shipped_spec_validates(capsys):
    specs = sorted((REPO / "experiments").rglob("*.yaml"))
    assert any("paper" in str(p) for p in specs) and any(p.name == "quickstart.yaml" for p in specs)
    for path in specs:
        code, out, err = run_cli(["validate", str(path)], capsys)
        assert code == 0, f"{path}: {err}"
