"""The reference's recipe one setting away: `train.dropout`, `train.data_order`, `ceiling`, `datasets.sample`,
`recipe: reference`, and a loss that sees the whole optimizer batch whatever minibatch_size is."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_spec, write_spec
from w2s import cli, report
from w2s.data import load_splits
from w2s.experiment.plan import plan_run
from w2s.models.loading import load_classifier
from w2s.pipeline.runner import run_experiment
from w2s.spec import ModelSpec, validate_spec
from w2s.training import losses
from w2s.training.loop import optimizer_batches, set_dropout


def keys(spec: dict) -> dict[str, str]:
    return {s.name: s.key for s in plan_run(validate_spec(spec)).stages}


def predictions(root: Path) -> dict[str, np.ndarray]:
    """p_pos of every example of every finished stage, by stage name."""
    found = {}
    for folder in sorted((root / "stages").glob("*/")):
        name = json.loads((folder / "config.json").read_text())["stage"]
        lines = (folder / "predictions.jsonl").read_text().splitlines()
        found[name] = np.array([json.loads(line)["p_pos"] for line in lines])
    return found


def learning_spec(out: Path, **train) -> dict:
    """Tiny models that move within a few dozen steps, in fp32: comparisons to float error."""
    spec = tiny_spec(out, losses=("logconf",), pairs=[["tiny-16", "tiny-24"]])
    spec["datasets"]["n_train"] = 400
    spec["losses"].append({"name": "window", "radius": "midweak"})
    spec["train"].update(
        {"epochs": 4, "lr": 3e-3, "batch_size": 32, "mixed_precision": "no", "dropout": False, **train}
    )
    return spec


# ---------------------------------------------------------------------------------------------------
# recipe: reference


def test_the_reference_recipe_sets_every_row_and_the_spec_wins_where_it_writes():
    spec = tiny_spec(Path("runs"), losses=("xent", "logconf", "product"))
    s = validate_spec({**spec, "recipe": "reference"})
    t = s.train
    assert (t.dropout, t.optimizer, t.weight_decay, t.lr_schedule, t.warmup_frac, t.max_grad_norm, t.data_order) == (
        False,
        "adam",
        0.0,
        "cosine",
        0.0,
        None,
        "fixed",
    )
    assert s.ceiling == "half_a" and (s.datasets[0].sample, s.datasets[0].ctx_policy) == ("first", "drop")
    assert [getattr(loss, "schedule", None) for loss in s.losses] == [None, "reference", "reference"]
    assert s.losses[1].warmup_frac == 0.1  # the reference's logconf warm-up, as `schedule: reference` alone gives
    written = validate_spec({**spec, "recipe": "reference", "train": {**spec["train"], "optimizer": "adamw"}})
    assert written.train.optimizer == "adamw" and written.train.dropout is False
    own = validate_spec({**spec, "recipe": "w2s"})  # w2s's own recipe changes nothing
    assert own == validate_spec(spec) and own.train.data_order == "grouped" and own.datasets[0].sample == "random"


def test_a_recipe_is_its_settings_the_keys_are_those_of_the_spec_written_out(tmp_path):
    spec = tiny_spec(tmp_path, losses=("xent", "logconf"))
    by_recipe = keys({**spec, "recipe": "reference"})
    by_hand = {
        **spec,
        "ceiling": "half_a",
        "datasets": {**spec["datasets"], "sample": "first", "ctx_policy": "drop"},
        "losses": [{"name": "xent"}, {"name": "logconf", "schedule": "reference"}],
        "train": {
            **spec["train"],
            "dropout": False,
            "optimizer": "adam",
            "weight_decay": 0.0,
            "lr_schedule": "cosine",
            "warmup_frac": 0.0,
            "max_grad_norm": None,
            "data_order": "fixed",
        },
    }
    assert keys(by_hand) == by_recipe
    assert set(by_recipe.values()).isdisjoint(keys(spec).values())


def test_dry_run_and_stage_configs_show_the_recipe(tmp_path, capsys):
    spec = tiny_spec(tmp_path, losses=("xent",), recipe="reference")
    path = write_spec(tmp_path / "ref.yaml", spec)
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    assert "recipe: reference (every setting as the recipe sets it)" in capsys.readouterr().out
    assert cli.main(["run", str(path), "--dry-run", "--set", "train.optimizer=adamw"]) == 0
    assert "recipe: reference (the spec sets otherwise: train.optimizer='adamw')" in capsys.readouterr().out
    run_experiment(validate_spec(spec), echo=lambda *a: None)
    config = json.loads(next((tmp_path / "tiny" / "stages").glob("transfer*/config.json")).read_text())
    assert config["spec"]["recipe"] == "reference"  # the W&B run's config is this same dict
    assert (config["settings"]["dropout"], config["settings"]["data_order"]) == (False, "fixed")


# ---------------------------------------------------------------------------------------------------
# dropout


def dropout_states(model: torch.nn.Module, dropout: bool) -> set[bool]:
    """The `training` flag of every dropout module and attention block seen during a training forward."""
    seen = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) or type(module).__name__.endswith("SelfAttention"):
            module.register_forward_hook(lambda m, args, out: seen.add(m.training))
    set_dropout(model, dropout)
    ids = torch.tensor([[101, 2307, 3185, 102]])
    model(ids, torch.ones_like(ids)).sum().backward()
    return seen


def test_dropout_off_leaves_no_dropout_module_active_while_training():
    assert dropout_states(load_classifier(ModelSpec(name="minilm-l1")), dropout=False) == {False}
    assert dropout_states(load_classifier(ModelSpec(name="minilm-l1")), dropout=True) == {True}


def test_dropout_off_keeps_gradient_checkpointing():
    model = load_classifier(ModelSpec(name="minilm-l2", gradient_checkpointing=True))
    set_dropout(model, False)
    layers = model.backbone.encoder.layer
    assert all(layer.training and layer.gradient_checkpointing for layer in layers)  # what checkpointing asks
    assert not any(m.training for layer in layers for m in layer.modules() if m is not layer)


def test_dropout_off_two_runs_give_identical_numbers_and_differ_from_dropout_on(tmp_path):
    off = [learning_spec(tmp_path / f"off{i}", minibatch_size=32) for i in (0, 1)]
    on = learning_spec(tmp_path / "on", minibatch_size=32, dropout=True)
    for spec in off + [on]:
        run_experiment(validate_spec(spec), echo=lambda *a: None)
    first, second, with_dropout = (predictions(tmp_path / d / "tiny") for d in ("off0", "off1", "on"))
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    assert all(not np.allclose(first[k], with_dropout[k], atol=1e-4) for k in first)
    assert set(keys(on).values()).isdisjoint(keys(off[0]).values())  # dropout enters every stage key


# ---------------------------------------------------------------------------------------------------
# a loss sees the whole optimizer batch


def test_minibatch_size_is_a_memory_setting_even_for_batch_statistics(tmp_path, monkeypatch):
    """logconf (quantile, prior) and window (median) over the whole batch of 32: micro-batches of 4 give
    the numbers of one micro-batch of 32 to float error, and the same keys."""
    specs = {mb: learning_spec(tmp_path / f"mb{mb}", minibatch_size=mb) for mb in (4, 32)}
    assert keys(specs[4]) == keys(specs[32])
    for spec in specs.values():
        run_experiment(validate_spec(spec), echo=lambda *a: None)
    small, whole = predictions(tmp_path / "mb4" / "tiny"), predictions(tmp_path / "mb32" / "tiny")
    assert small.keys() == whole.keys() and len(small) == 4
    for name in small:
        assert np.abs(small[name] - whole[name]).max() < 1e-5, name
    # the check can fail: logconf on each micro-batch alone (batch statistics of 4) moves its numbers
    monkeypatch.setattr(losses.Logconf, "per_example", True)
    naive = learning_spec(tmp_path / "naive", minibatch_size=4)
    run_experiment(validate_spec(naive), echo=lambda *a: None)
    moved = predictions(tmp_path / "naive" / "tiny")
    name = "transfer/synthetic/tiny-16->tiny-24/logconf/s0"
    assert np.abs(moved[name] - whole[name]).max() > 1e-2


def test_optimizer_batches_do_not_depend_on_micro_batches_and_follow_the_order():
    lengths = np.arange(100) % 7 + 1
    fixed = optimizer_batches(lengths, 16, 2, "fixed", np.random.default_rng(0))
    assert len(fixed) == 200 // 16 and all(len(b) == 16 for b in fixed)  # floor(epochs x n / batch), as the reference
    stream = [i for b in fixed for i in b]  # batches run on across the epoch's end, in the same order again
    assert sorted(stream[:100]) == list(range(100)) and stream[100:] == stream[:92]
    grouped = optimizer_batches(lengths, 16, 2, "grouped", np.random.default_rng(0))
    first_epoch = [i for b in grouped[:6] for i in b]  # 6 whole batches of the 100 examples, then the short one's 4
    assert len(set(first_epoch)) == 96
    assert max(np.ptp(lengths[b]) for b in grouped[:6]) <= 1  # similar lengths together
    tiny = optimizer_batches(np.ones(5, dtype=int), 16, 1, "grouped", np.random.default_rng(0))
    assert len(tiny) == 1 and sorted(set(tiny[0])) == list(range(5)) and len(tiny[0]) == 16  # repeated to fill one


# ---------------------------------------------------------------------------------------------------
# which rows, which ceiling


def test_sample_first_keeps_the_first_rows_in_file_order(tmp_path, sst2_dir):
    files = {"train": str(sst2_dir / "train.tsv"), "test": str(sst2_dir / "dev.tsv")}
    spec = {"name": "sst2", "data_files": files, "column_names": ["text", "label"], "n_train": 300, "n_test": 50}
    first = validate_spec({**tiny_spec(tmp_path), "datasets": {**spec, "sample": "first"}}).datasets[0]
    drawn = validate_spec({**tiny_spec(tmp_path), "datasets": spec}).datasets[0]
    splits = load_splits(first, 0)
    pool = sorted(int(r["id"].split("-")[1]) for r in splits.train_a + splits.train_b)
    assert pool == list(range(300)) and sorted(int(r["id"].split("-")[1]) for r in splits.test) == list(range(50))
    assert [r["id"] for r in splits.train_a] != [r["id"] for r in load_splits(first, 1).train_a]  # halves seeded
    assert (
        sorted(int(r["id"].split("-")[1]) for r in load_splits(drawn, 0).train_a + load_splits(drawn, 0).train_b)
        != pool
    )


def test_ceiling_on_half_b_trains_the_students_ceilings_on_their_rows(tmp_path):
    pairs = [["tiny-16", "tiny-24"], ["tiny-16", "tiny-32"], ["tiny-24", "tiny-32"]]
    on_a = tiny_spec(tmp_path / "a", ladder=3, pairs=pairs)
    on_b = tiny_spec(tmp_path / "b", ladder=3, pairs=pairs, ceiling="half_b")
    stages = {s.name: s for s in plan_run(validate_spec(on_b)).stages}
    truth = sorted(n for n in stages if n.startswith("ground_truth"))
    assert truth == [
        "ground_truth/synthetic/tiny-16/s0",
        "ground_truth/synthetic/tiny-24/half-b/s0",
        "ground_truth/synthetic/tiny-24/s0",
        "ground_truth/synthetic/tiny-32/half-b/s0",
    ]
    transfer = stages["transfer/synthetic/tiny-24->tiny-32/xent/s0"]
    assert transfer.ceiling.name == "ground_truth/synthetic/tiny-32/half-b/s0"
    assert transfer.supervisor.name == "ground_truth/synthetic/tiny-24/s0"
    # the supervisors' stages are the same stages as with ceilings on half A; every transfer's key moves
    a_keys, b_keys = keys(on_a), keys(on_b)
    assert all(
        a_keys[n] == b_keys[n] for n in ("ground_truth/synthetic/tiny-16/s0", "ground_truth/synthetic/tiny-24/s0")
    )
    assert all(a_keys[n] != b_keys[n] for n in b_keys if n.startswith("transfer"))
    rows = run_experiment(validate_spec(on_b), echo=lambda *a: None)
    by_stage = {r["stage"]: r for r in rows}
    splits = load_splits(validate_spec(on_b).datasets[0], 0)
    assert by_stage["ground_truth/synthetic/tiny-32/half-b/s0"]["n_train"] == len(splits.train_b)
    assert by_stage["ground_truth/synthetic/tiny-32/half-b/s0"]["train_split"] == "train_b"
    row = by_stage["transfer/synthetic/tiny-24->tiny-32/xent/s0"]
    assert row["ceiling_accuracy"] == by_stage["ground_truth/synthetic/tiny-32/half-b/s0"]["test_accuracy"]
    assert row["weak_accuracy"] == by_stage["ground_truth/synthetic/tiny-24/s0"]["test_accuracy"]
    # the report reads the same ceilings, and draws both x-axes
    files = {p.name for p in report.report([tmp_path / "b" / "tiny"], tmp_path / "rep", echo=lambda *a: None)}
    summary = (tmp_path / "rep" / "summary.csv").read_text()
    assert "accuracy_vs_size.png" in files and "pgr_vs_size.pdf" in files
    import pandas as pd

    frame = pd.read_csv(tmp_path / "rep" / "summary.csv")
    assert (
        summary
        and frame.loc[frame["chain"] == "tiny-24->tiny-32", "ceiling_accuracy"].item() == row["ceiling_accuracy"]
    )
    files = {
        p.name for p in report.report([tmp_path / "b" / "tiny"], tmp_path / "rep2", echo=lambda *a: None, x="ceiling")
    }
    assert {"accuracy_vs_ceiling.png", "pgr_vs_ceiling.png"} <= files and "accuracy_vs_size.png" not in files


def test_ceiling_half_b_with_halves_same_is_the_one_half(tmp_path):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]], ceiling="half_b")
    spec["datasets"]["halves"] = "same"
    spec["models"][0].update(name="minilm-l1", train=False)  # halves: same needs zero-shot supervisors
    spec["models"][0].pop("random_init"), spec["models"][0].pop("config_overrides")
    names = [s.name for s in plan_run(validate_spec(spec)).stages]
    assert "ground_truth/synthetic/tiny-24/s0" in names and not any("half-b" in n for n in names)


def test_report_x_axis_is_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", str(tmp_path), "--x", "params"])
    assert exit_.value.code == 2 and "invalid choice: 'params'" in capsys.readouterr().err
