"""The spec: loading, overrides, and one-line errors with exit code 2 for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from w2s import __version__
from w2s.cli import main
from w2s.errors import SpecError
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
        (
            GOOD.replace("name: demo", "name: demo\nlearning_rate: 3"),
            "learning_rate: unknown key (did you mean train.lr? the Trainer's learning_rate); valid keys here: name,",
        ),
        (
            GOOD.replace("minilm-l6}", "minilm-l6, nmae: x}"),
            "models.1.nmae: unknown key (did you mean name?); valid keys here: name, label",
        ),
        (GOOD.replace("name: synthetic", "name: imdbb"), "datasets.0.name: unknown dataset 'imdbb'; registered:"),
        (GOOD.replace("name: xent", "name: focal"), "losses.0: Input tag 'focal'"),
        (GOOD.replace("aux_coef: 0.5", "aux_coef: 2"), "losses.1.aux_coef: Input should be less than or equal to 1"),
        (
            GOOD.replace("aux_coef: 0.5", "alpha: 2"),
            "losses.1.alpha: unknown key; valid keys here: name, label, probe, aux_coef",
        ),
        (GOOD.replace("{name: minilm-l1}", "{name: no such model}"), "models.0.name: unknown model 'no such model'"),
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


@pytest.mark.parametrize("folder", ["./no/such/dir", "../no-such-dir", "~/no/such/dir", "no/such/dir", "{tmp}/gone"])
def test_checkpoint_folders_are_checked_before_a_run_not_by_the_spec(spec_file, capsys, tmp_path, folder):
    """Spec validation is syntax only (a spec may be written for another machine); the pre-run check
    of full `validate` names the missing folder."""
    folder = folder.format(tmp=tmp_path)
    path = spec_file(GOOD.replace("{name: minilm-l6}", f"{{name: '{folder}'}}"))
    code, out, err = run_cli(["validate", "--spec-only", str(path)], capsys)
    assert code == 0 and "valid spec" in out, err
    code, out, err = run_cli(["validate", str(path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"models.1.name: no such checkpoint folder: {folder}" in err, err


def test_bad_override_names_the_key(spec_file, capsys):
    code, _, err = run_cli(["validate", str(spec_file(GOOD)), "--set", "train.lrr=1"], capsys)
    assert (
        code == 2 and "train.lrr: unknown key (did you mean lr?); valid keys here: epochs, transfer_epochs, lr" in err
    )


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
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("w2s: error:") and "name:" in proc.stderr


def test_every_shipped_spec_validates_and_matches_the_schema(capsys):
    """The validator and `w2s schema` agree on every shipped spec (a single `datasets:` mapping,
    `generative_finetune: true`, `mixed_precision: fp32` included). Specs for other machines (the hub,
    ImageNet, GPUs) are checked as specs; the quickstart is also checked as runnable here."""
    code, out, _ = run_cli(["schema"], capsys)
    validator = jsonschema.Draft202012Validator(json.loads(out))
    specs = sorted((REPO / "experiments").rglob("*.yaml"))
    assert any("paper" in str(p) for p in specs) and any(p.name == "quickstart.yaml" for p in specs)
    for path in specs:
        raw = yaml.safe_load(path.read_text())
        assert not list(validator.iter_errors(raw)), f"{path}: the schema rejects a valid spec"
        code, out, err = run_cli(["validate", "--spec-only", str(path)], capsys)
        assert code == 0, f"{path}: {err}"
    code, out, err = run_cli(["validate", str(REPO / "experiments" / "quickstart.yaml")], capsys)
    assert code == 0 and "valid (4 stages), runnable here" in out, err
    for valid in (
        {"datasets": [{"name": "synthetic"}]},
        {"train": {"mixed_precision": False}},
        {"models": [{"name": "gpt2", "generative_finetune": True}]},
    ):
        raw = {"name": "x", "datasets": {"name": "synthetic"}, "models": [{"name": "minilm-l1"}], **valid}
        assert not list(validator.iter_errors(raw)), valid
        load_spec_dict(raw)
    for invalid in ({"train": {"mixed_precision": "maybe"}}, {"train": {"mixed_precision": True}}):
        raw = {"name": "x", "datasets": {"name": "synthetic"}, "models": [{"name": "minilm-l1"}], **invalid}
        assert list(validator.iter_errors(raw)), invalid
        with pytest.raises(SpecError):
            load_spec_dict(raw)


def load_spec_dict(raw: dict):
    from w2s.spec import validate_spec

    return validate_spec(raw)


@pytest.mark.parametrize("value, resolved", [("no", "no"), ("fp32", "no"), ("false", "no"), ("bf16", "bf16")])
def test_precision_names(spec_file, value, resolved):
    """`no` in YAML is false; fp32 is what people call it: all three mean fp32."""
    spec = load_spec(spec_file(GOOD), [f"train.mixed_precision={value}"])
    assert spec.train.mixed_precision == resolved
    assert load_spec(spec_file(GOOD)).train.mixed_precision == "auto"


def test_cli_version_and_a_directory_as_spec(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"w2s {__version__}"
    code, out, err = run_cli(["validate", str(REPO / "experiments")], capsys)
    assert code == 2 and "is a directory" in err and "quickstart.yaml" in err and not out


def test_output_to_a_closed_pipe_is_no_traceback(spec_file):
    """`w2s run SPEC --dry-run | head -1`: the reader is gone before w2s writes; no BrokenPipeError."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "w2s", "run", str(spec_file(GOOD)), "--dry-run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    proc.stdout.close()  # like `head` exiting early: every write now fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_every_problem_of_a_spec_is_a_line_of_its_own(spec_file, capsys, tmp_path):
    """Three mistakes, three lines, each naming its key (and the near spelling), exit 2, nothing written."""
    text = GOOD.replace("minilm-l1}}", "minilm-16}}").replace("aux_coef: 0.5", "aux_coeff: 0.5") + (
        "train: {{lr_schedule: cosin}}\n"
    )
    code, out, err = run_cli(["validate", str(spec_file(text))], capsys)
    source = tmp_path / "spec.yaml"
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"w2s: error: {source}: models.0.name: unknown model alias 'minilm-16'; did you mean 'minilm-l6'? "
        "aliases: minilm-l1 ... minilm-l6, mpnet-l1 ... mpnet-l12",
        f"w2s: error: {source}: losses.1.aux_coeff: unknown key (did you mean aux_coef?); valid keys here: name, "
        "label, probe, aux_coef, warmup_frac, schedule",
        f"w2s: error: {source}: train.lr_schedule: Input should be 'cosine', 'constant' or 'linear' "
        "(did you mean 'cosine'?)",
    ]
    assert not (tmp_path / "runs").exists()


def test_the_trainers_names_point_to_w2s_s_and_many_problems_end_in_a_count(spec_file, capsys, tmp_path):
    trainer = {
        "learning_rate": "lr? the Trainer's learning_rate",
        "num_train_epochs": "epochs? the Trainer's num_train_epochs",
        "warmup_ratio": "warmup_frac? the Trainer's warmup_ratio",
        "per_device_train_batch_size": "minibatch_size? the Trainer's per_device_train_batch_size, examples per "
        "forward pass per process; train.batch_size is the optimizer batch over all processes",
    }
    text = GOOD + "train: {{" + ", ".join(f"{k}: 1" for k in trainer) + "}}\n"
    code, _, err = run_cli(["validate", str(spec_file(text))], capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 4
    for line, (key, hint) in zip(lines, trainer.items()):
        assert line.startswith(f"w2s: error: {tmp_path / 'spec.yaml'}: train.{key}: unknown key (did you mean {hint}")
    many = GOOD + "train: {{" + ", ".join(f"bad{i}: 1" for i in range(13)) + "}}\n"
    code, _, err = run_cli(["validate", str(spec_file(many))], capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 11 and lines[-1] == f"w2s: error: {tmp_path / 'spec.yaml'}: and 3 more problems"


def test_one_pair_in_one_line_is_the_spec_it_prints(tmp_path, capsys, monkeypatch):
    """`w2s run --weak --strong --dataset --loss --seeds` makes a spec; --dry-run prints it, and that
    spec, saved and run, plans the same stages, key for key."""
    monkeypatch.chdir(tmp_path)
    pair = ["--weak", "minilm-l1", "--strong", "minilm-l6", "--dataset", "synthetic", "--loss", "xent,logconf"]
    code, out, err = run_cli(["run", *pair, "--seeds", "0,1", "--dry-run", "--set", "datasets.n_train=200"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    start, end = lines.index(lines[0]), lines.index("# end of the spec")
    assert lines[0].startswith("# the spec of this pair")
    (tmp_path / "pair.yaml").write_text("\n".join(lines[start + 1 : end]) + "\n")
    plan = [line for line in lines[end + 1 :] if line.startswith(("run ", "cached "))]
    assert len(plan) == 8 and sum("transfer/synthetic/minilm-l1->minilm-l6/" in line for line in plan) == 4
    code, out, err = run_cli(["run", "pair.yaml", "--dry-run"], capsys)
    assert code == 0 and [line for line in out.splitlines() if line.startswith(("run ", "cached "))] == plan, err
    saved = load_spec(tmp_path / "pair.yaml")
    assert saved.name == "synthetic-minilm-l1-to-minilm-l6" and saved.seeds == [0, 1]
    assert [loss.name for loss in saved.losses] == ["xent", "logconf"] and saved.datasets[0].n_train == 200


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--weak", "minilm-l1"],
            "run: one pair needs --strong, --dataset too (--weak, --strong and --dataset together)",
        ),
        ([], "run: give a SPEC file (or example:NAME), or one pair: --weak MODEL --strong MODEL --dataset NAME"),
        (
            ["spec.yaml", "--weak", "minilm-l1"],
            "run: give a SPEC file or one pair (--weak, --strong, --dataset), not both",
        ),
        (
            ["--weak", "minilm-l1", "--strong", "minilm-l6", "--dataset", "synthetic", "--seeds", "0,x"],
            "--seeds '0,x': give whole numbers, comma-separated, e.g. 0,1,2",
        ),
        (
            ["--weak", "minilm-l1", "--strong", "minilm-l9", "--dataset", "synthetic"],
            "the pair: models.1.name: unknown model alias 'minilm-l9': minilm has layers 1 to 6",
        ),
    ],
)
def test_a_half_given_pair_is_one_line(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["run", *args], capsys)
    assert code == 2 and out == "" and err.splitlines()[0].startswith(f"w2s: error: {expected}")
    assert not (tmp_path / "runs").exists()
