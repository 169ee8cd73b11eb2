"""Experiment tracking: W&B runs per stage (offline here), disabled mode, an unreachable W&B
server, and a two-process `accelerate launch` that must match a one-process run.

No test touches the network or the user's W&B files: every WANDB_* variable is cleared, W&B's
config, cache and data folders point into tmp_path, and NETRC points at a file that is not there.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import offline_runs, tiny_spec, write_spec
from tests.wandb_offline import read_offline_run
from w2s.cli import main
from w2s.experiment.plan import plan_run
from w2s.pipeline import tracking
from w2s.pipeline.runner import run_experiment
from w2s.spec import validate_spec
from w2s.training import activations

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def quiet_isolated_wandb(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "wandb-home"
    for name, sub in [
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(home / "no-netrc"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(tracking, "_state", {"offline": set(), "warned": set()})


def ladder_spec(out: Path, mode: str, **extra) -> dict:
    """Weak tiny-16 (a linear probe: features extracted across processes, then a DDP head) -> strong
    tiny-32, no dropout (so one and two processes agree), 200 examples per half (batches of 64 leave
    a short last batch)."""
    spec = tiny_spec(out, ladder=3, pairs=[["tiny-16", "tiny-32"]], tracking={"mode": mode}, **extra)
    spec["train"].update(epochs=4, lr=1e-2)
    spec["datasets"].update(n_train=400, max_ctx=32)
    spec["models"][0]["linear_probe"] = True
    for model in spec["models"]:
        model["config_overrides"].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return spec


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_offline_mode_leaves_one_wandb_run_per_stage_and_a_summary_run(tmp_path):
    spec_dict = ladder_spec(tmp_path, "offline", losses=("xent", "logconf"))
    spec = validate_spec(spec_dict)
    rows = run_experiment(spec, echo=lambda *a: None)
    root = tmp_path / "tiny"
    runs = offline_runs(root)
    stages = {s.key: s for s in plan_run(spec).stages}
    by_key = {r["config"].get("key"): r for r in runs if r["job_type"] != "summary"}
    assert set(by_key) == set(stages) and len(runs) == len(stages) + 1  # one run per stage, once
    results = {r["key"]: r for r in rows}
    for key, run in by_key.items():
        stage = stages[key]
        assert run["group"] == "tiny" and run["job_type"] == stage.kind
        assert run["name"] == stage.name.replace("/", " ")  # e.g. "transfer synthetic tiny-16->tiny-32 xent s0"
        assert stage.dataset.label in run["tags"] and stage.model.display in run["tags"]
        assert run["config"]["spec"]["name"] == "tiny" and run["config"]["seed"] == 0
        if stage.kind == "features":  # the weak linear probe's cached inputs: a summary, no predictions
            assert run["summary"]["dim"] == 16 and run["summary"]["n_test"] == 32 and not run["artifacts"]
            continue
        assert run["summary"]["test_accuracy"] == results[key]["test_accuracy"]
        if not stage.model.linear_probe:  # a probe's head reads cached features: its features stage counts
            assert run["summary"]["shortened"] == 0 and run["summary"]["lengths/test/decisive_cut"] == 0
        assert {"train/loss", "train/lr", "train/train_accuracy", "train/examples_per_second"} <= set(run["summary"])
        assert {"name": f"preds-{key}", "type": "predictions"} in run["artifacts"]
        if stage.kind == "transfer":  # the ceiling finished first (ground truths come first in the plan)
            assert run["summary"]["ceiling_accuracy"] == results[key]["ceiling_accuracy"]
            assert run["summary"]["weak_accuracy"] == results[key]["weak_accuracy"]
            # pgr is None (and left out, with pgr_note) only when the tiny models' gap is < MIN_GAP
            assert run["summary"].get("pgr") == results[key]["pgr"]
            assert ("pgr" in run["summary"]) != ("pgr_note" in run["summary"])
            assert run["config"]["supervisor_artifact"] == f"preds-{stage.supervisor.key}"

    summary = next(r for r in runs if r["job_type"] == "summary")
    assert summary["group"] == "tiny" and summary["summary"]["n_stages"] == len(rows)
    table_ref = summary["summary"]["pgr_table"]
    run_dir = next(d for d in (root / "wandb").glob("offline-run-*") if read_offline_run(d)["job_type"] == "summary")
    table = json.loads((run_dir / "files" / table_ref["path"]).read_text())
    assert len(table["data"]) == len(rows) and "pgr" in table["columns"]
    for loss in ("xent", "logconf"):
        pgrs = [r["pgr"] for r in rows if r.get("loss") == loss and r["pgr"] is not None]
        assert summary["summary"].get(f"pgr_mean/{loss}") == (pytest.approx(sum(pgrs) / len(pgrs)) if pgrs else None)

    # local logs are written whatever the mode
    for folder in (root / "stages").iterdir():
        trained = not folder.name.startswith("features__")  # extraction has no training steps to log
        assert bool(read_jsonl(folder / "log.jsonl")) == trained and (folder / "metrics.json").is_file()


def test_transfer_run_has_pgr_once_its_ceiling_finished_and_leaves_it_out_before(tmp_path):
    """Fixed metrics, so PGR is defined whatever the tiny models learn."""
    spec = validate_spec(tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], tracking={"mode": "offline"}))
    transfer = next(s for s in plan_run(spec).stages if s.kind == "transfer")
    metrics = {
        "test_accuracy": 0.7,
        "test_auroc": 0.75,
        "n_train": 32,
        "n_test": 32,
        "non_embedding_parameters": 10,
        "train_seconds": 1.0,
        "agreement": 0.9,
        "supervisor_accuracy": 0.6,
    }
    weak, ceiling = {"test_accuracy": 0.6, "test_auroc": 0.6}, {"test_accuracy": 0.8, "test_auroc": 0.8}
    predictions = [
        {"split": split, "id": f"{split}-{i}", "hard_label": i % 2, "p_pos": 0.25 + 0.5 * (i % 2)}
        for split in ("train_b", "test")
        for i in range(4)
    ]
    for ceiling_metrics in (ceiling, None):
        folder = tmp_path / f"stage-{ceiling_metrics is None}"
        folder.mkdir()
        tracker = tracking.StageTracker(folder, transfer, spec)
        tracker.log({"step": 1, "loss": 0.5, "train_accuracy": 1.0, "lr": 1e-3, "examples_per_second": 10.0})
        tracker.finish(metrics, predictions, weak, ceiling_metrics)
    first, second = sorted(offline_runs(tmp_path / "tiny"), key=lambda r: "pgr_note" in r["summary"])
    assert first["summary"]["pgr"] == pytest.approx(0.5) and first["summary"]["ceiling_accuracy"] == 0.8
    assert "pgr" not in second["summary"] and second["summary"]["pgr_note"] == "ceiling not finished"
    assert second["summary"]["weak_accuracy"] == 0.6 and second["summary"]["train/loss"] == 0.5


def test_disabled_mode_writes_nothing_under_wandb_and_keeps_local_logs(tmp_path):
    rows = run_experiment(validate_spec(tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])), echo=lambda *a: None)
    root = tmp_path / "tiny"
    assert not (root / "wandb").exists()
    folders = list((root / "stages").iterdir())
    assert len(folders) == len(rows) == 3
    for folder in folders:
        log = read_jsonl(folder / "log.jsonl")
        assert log and {"step", "loss", "train_accuracy", "lr", "examples_per_second"} <= set(log[-1])
        assert {"config.json", "metrics.json", "predictions.jsonl"} <= {p.name for p in folder.iterdir()}


def test_unreachable_wandb_server_falls_back_to_offline_quickly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], tracking={"mode": "auto"})
    assert tracking.resolve_mode("auto") == "online"  # the key counts as credentials
    import wandb

    modes, real_init = [], wandb.init

    def spy_init(*args, **kwargs):  # every W&B run start w2s asks for, in order
        modes.append(kwargs.get("mode"))
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", spy_init)
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    assert len(rows) == 3
    assert capsys.readouterr().err.count("W&B online logging failed") == 1
    # one online attempt (it timed out), then that run and every later one (2 stages, the summary) offline
    assert modes == ["online"] + ["offline"] * 4, modes
    assert str(tmp_path / "tiny" / "wandb") in tracking._state["offline"]
    root = tmp_path / "tiny"
    assert len(offline_runs(root)) == 3 + 1
    for path in (root / "wandb").rglob("*"):  # no secrets in configs or logs
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_online_without_credentials_logs_offline_instead_of_prompting(tmp_path, capsys):
    spec = validate_spec(tiny_spec(tmp_path, ladder=1, pairs=[["tiny-16", "tiny-16"]], tracking={"mode": "online"}))
    run_experiment(spec, echo=lambda *a: None)
    assert capsys.readouterr().err.count("no W&B credentials found") == 1
    assert sorted(r["job_type"] for r in offline_runs(tmp_path / "tiny")) == ["ground_truth", "summary", "transfer"]


def test_auto_mode_is_online_only_with_credentials(tmp_path, monkeypatch):
    assert tracking.resolve_mode("auto") == "offline"
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {FAKE_KEY}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert tracking.resolve_mode("auto") == "online"
    assert tracking.resolve_mode("disabled") == "disabled"


# Two gloo processes train every stage together. Dropout is off and the effective batch is the
# same, so only the order of floating-point sums differs: predicted probabilities agree to 1e-3
# and accuracies to within one test example (1/n_test), usually exactly.
PROB_TOLERANCE = 1e-3


def test_two_process_accelerate_launch_matches_one_process(tmp_path):
    # logconf too: its batch statistics are over the whole optimizer batch, gathered from both processes
    spec = ladder_spec(tmp_path / "two", "offline", losses=("xent", "logconf"))
    # fp32: one and two processes sum in different orders, which bf16's 8-bit mantissa turns into
    # differences of a few 1e-2 in p (measured); fp32 keeps them near 1e-6 and the comparison sharp
    spec["train"]["mixed_precision"] = "fp32"
    path = write_spec(tmp_path / "spec.yaml", spec)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MASTER_PORT="0")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "tests" / "accelerate_cpu2.yaml"),
        "--main_process_port",
        "0",
        "-m",
        "w2s",
        "run",
        str(path),
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # one process group, not two independent runs sharing the folder: the plan is printed once
    assert done.stdout.count("5 stages, 5 to train") == 1 and done.stdout.count("] ground_truth/") == 2

    one = dict(spec, output_dir=str(tmp_path / "one"))
    run_experiment(validate_spec(one), echo=lambda *a: None)
    rows = {d: {r["key"]: r for r in read_jsonl(tmp_path / d / "tiny" / "results.jsonl")} for d in ("one", "two")}
    assert set(rows["one"]) == set(rows["two"]) and len(rows["one"]) == 4
    n_test = spec["datasets"]["n_test"]
    for key, row in rows["one"].items():
        assert row["n_test"] == rows["two"][key]["n_test"] == n_test  # every test example counted once
        assert abs(row["test_accuracy"] - rows["two"][key]["test_accuracy"]) <= 1 / n_test + 1e-9
    for folder in (tmp_path / "one" / "tiny" / "stages").iterdir():
        twin = tmp_path / "two" / "tiny" / "stages" / folder.name
        if folder.name.startswith("features__"):  # every example's vector once, equal to one process's
            one_f, two_f = activations.read(folder), activations.read(twin)
            for split in activations.SPLITS:
                assert one_f[split].ids == two_f[split].ids
                np.testing.assert_allclose(one_f[split].array, two_f[split].array, rtol=1e-4, atol=1e-5)
            continue
        a, b = (
            {(p["split"], p["id"]): p["p_pos"] for p in read_jsonl(f / "predictions.jsonl")} for f in (folder, twin)
        )
        assert a.keys() == b.keys() and len(a) == len(read_jsonl(twin / "predictions.jsonl"))  # no duplicates
        assert max(abs(a[k] - b[k]) for k in a) < PROB_TOLERANCE
    runs = offline_runs(tmp_path / "two" / "tiny")  # W&B runs from the main process only
    assert sorted(r["job_type"] for r in runs) == [
        "features",
        "ground_truth",
        "ground_truth",
        "summary",
        "transfer",
        "transfer",
    ]


def test_selection_ensembles_gold_and_diagnostics_reach_wandb(tmp_path):
    """The newer settings' numbers land in each stage's W&B run: its evaluation points in the history
    (eval/...), every selection rule's scores and the diagnostics in the summary, the settings in the
    config; an ensemble is a run of its own kind."""
    spec = tiny_spec(
        tmp_path,
        pairs=[["x2", "tiny-24"]],
        ensembles=[{"label": "x2", "models": ["tiny-16", "tiny-16"]}],
        tracking={"mode": "offline"},
    )
    # two evaluation points in every stage (3 or 4 steps): a single one is refused before the run
    spec["train"].update(epochs=2, eval_every=0.5, validation_frac=0.25, select=["final", "oracle"], gold_frac=[0.5])
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    runs = {r["config"].get("key"): r for r in offline_runs(tmp_path / "tiny") if r["job_type"] != "summary"}
    assert sorted(r["job_type"] for r in runs.values()) == ["ensemble"] + ["ground_truth"] * 3 + ["transfer"] * 2
    for row in rows:
        run = runs[row["key"]]
        curve = json.loads((next((tmp_path / "tiny" / "stages").glob(f"*__{row['key']}")) / "metrics.json").read_text())
        if row["kind"] != "ensemble":
            assert run["summary"]["eval/test_accuracy"] == curve["curve"][-1]["test_accuracy"]
            assert run["summary"]["eval/step"] == curve["curve"][-1]["step"]
        for rule in ("final", "weak_validation", "oracle"):
            assert run["summary"][f"{rule}_test_accuracy"] == row[f"{rule}_test_accuracy"]
        if row["kind"] == "transfer":
            assert run["config"]["gold_frac"] == 0.5 and run["config"]["select"] == row["select"]
            for key in ("misfit", "error_inheritance", "error_correction", "weak_label_accuracy", "n_gold"):
                assert run["summary"][key] == row[key]


def test_label_budgets_the_bound_and_the_heads_learning_rate_reach_wandb(tmp_path):
    """gold_n, gold_select and head_lr in each run's config; a gold-only stage is a run of its own job
    type; the bound check's numbers in each transfer's summary."""
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], tracking={"mode": "offline"})
    spec["train"].update(gold_n=[4], gold_select="least_confident", gold_only=True, head_lr=10)
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    runs = {r["config"].get("key"): r for r in offline_runs(tmp_path / "tiny") if r["job_type"] != "summary"}
    assert sorted(r["job_type"] for r in runs.values()) == ["gold_only", "ground_truth", "ground_truth", "transfer"]
    for row in rows:
        config = runs[row["key"]]["config"]
        assert config["settings"]["head_lr"] == 10
        if row["kind"] in ("transfer", "gold_only"):
            assert (
                (config["gold_n"], config["gold_select"])
                == (4, "least_confident")
                == (row["gold_n"], row["gold_select"])
            )
        if row["kind"] == "transfer":
            for key in ("misfit_test", "brier_gain", "bound_slack", "bound_slack_se"):
                assert runs[row["key"]]["summary"][key] == row[key] is not None


def test_wandb_variables_decide_where_the_spec_is_silent_and_the_spec_wins_where_it_is_not(tmp_path, monkeypatch):
    """W&B's conventions, with the real wandb library offline: WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY
    and WANDB_DIR decide what the spec leaves out (or leaves to `auto`); a spec field wins over its
    variable."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_ENTITY", "env-team")
    silent = tiny_spec(tmp_path / "a", ladder=1)
    del silent["tracking"]  # the spec says nothing about W&B
    run_experiment(validate_spec(silent), echo=lambda *a: None)
    runs = offline_runs(tmp_path / "a" / "tiny")
    assert len(runs) == 3  # ground truth, transfer, summary
    assert {(r["project"], r["entity"]) for r in runs} == {("from-env", "env-team")}

    spoken = tiny_spec(tmp_path / "b", ladder=1, tracking={"mode": "offline", "project": "from-spec"})
    run_experiment(validate_spec(spoken), echo=lambda *a: None)
    assert {(r["project"], r["entity"]) for r in offline_runs(tmp_path / "b" / "tiny")} == {("from-spec", "env-team")}

    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_experiment(validate_spec({**silent, "output_dir": str(tmp_path / "c")}), echo=lambda *a: None)
    assert (tmp_path / "c" / "tiny" / "stages").is_dir() and not (tmp_path / "c" / "tiny" / "wandb").exists()
    auto = {**silent, "output_dir": str(tmp_path / "c2"), "tracking": {"mode": "auto"}}  # as the shipped specs say
    run_experiment(validate_spec(auto), echo=lambda *a: None)
    assert (tmp_path / "c2" / "tiny" / "stages").is_dir() and not (tmp_path / "c2" / "tiny" / "wandb").exists()
    disabled_by_spec = {**spoken, "output_dir": str(tmp_path / "d"), "tracking": {"mode": "disabled"}}
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_experiment(validate_spec(disabled_by_spec), echo=lambda *a: None)
    assert not (tmp_path / "d" / "tiny" / "wandb").exists()  # the spec's mode wins over WANDB_MODE

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    run_experiment(validate_spec({**silent, "output_dir": str(tmp_path / "e")}), echo=lambda *a: None)
    assert not (tmp_path / "e" / "tiny" / "wandb").exists()
    assert len(list((tmp_path / "elsewhere" / "wandb").glob("offline-run-*"))) == 3


def test_a_wandb_mode_wandb_would_refuse_stops_the_run_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "ofline")
    spec = tiny_spec(tmp_path, ladder=1)
    del spec["tracking"]
    code = main(["run", str(write_spec(tmp_path / "spec.yaml", spec))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "w2s: error: WANDB_MODE='ofline': w2s reads online, offline or disabled (or run, dryrun); "
        "set tracking.mode in the spec, or unset it"
    ]
    assert not (tmp_path / "tiny").exists()
