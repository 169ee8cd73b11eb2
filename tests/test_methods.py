"""The methods beyond plain transfer: cached-feature linear probes, label probes, generative finetuning."""

import json

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed

from tests.conftest import accuracy_from_predictions, ece_from_predictions, offline_runs, tiny_spec, write_spec
from w2s.cli import main
from w2s.data import load_dataset_rows, tokenize
from w2s.errors import SpecError
from w2s.experiment.plan import plan_run
from w2s.models.loading import load_backbone, load_classifier, load_tokenizer
from w2s.pipeline.runner import run_experiment
from w2s.report import load_records, seed_rows
from w2s.spec import validate_spec
from w2s.training import activations, probes
from w2s.training.losses import LOSSES


def stage_folders(root, kind: str) -> list:
    return sorted(p for p in (root / "stages").iterdir() if p.name.startswith(kind + "__"))


def config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def metrics(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_linear_probes_share_one_features_stage_per_model(tmp_path):
    spec = tiny_spec(tmp_path, losses=("xent", "logconf"))
    spec["train"]["mixed_precision"] = "fp32"  # compared with an fp32 forward pass below
    for model in spec["models"]:
        model["linear_probe"] = True
    said = []
    rows = run_experiment(validate_spec(spec), echo=said.append)
    root = tmp_path / "tiny"
    feature_folders = stage_folders(root, "features")
    assert len(feature_folders) == 2  # one per model, although 2 ground-truth + 6 transfer stages read them
    keys = {config(f)["key"]: f for f in feature_folders}
    for row in rows:
        folder = next((root / "stages").glob(f"*__{row['key']}"))
        requires = config(folder)["requires"]  # [supervisor, features] for transfers, [features] for ground truth
        assert len(requires) == (2 if row["kind"] == "transfer" else 1)
        needed = requires[-1]
        assert needed in keys and config(keys[needed])["model"]["label"] == row["model"]
        # a head-only stage still reports the size of the network it probes (the report's x-axis)
        assert row["non_embedding_parameters"] == metrics(keys[needed])["non_embedding_parameters"] > 0

    # the cached vectors are the classifier's own pooled last layer, computed directly here
    spec_obj = validate_spec(spec)
    big = next(f for f in feature_folders if "tiny-24" in f.name)
    cached = activations.read(big)
    set_seed(0)
    model = load_classifier(spec_obj.models[1]).eval()
    test_rows = load_dataset_rows(spec_obj.datasets[0], 0).test
    tok = load_tokenizer(spec_obj.models[1])
    ids = tokenize(test_rows[:4], tok, 512, "truncate").input_ids
    with torch.no_grad():
        for i, seq in enumerate(ids):
            direct = model.pooled(torch.tensor([seq]), torch.ones(1, len(seq), dtype=torch.long))[0].numpy()
            np.testing.assert_allclose(
                cached["test"].array[cached["test"].ids.index(test_rows[i]["id"])], direct, rtol=1e-4, atol=1e-5
            )

    said.clear()
    run_experiment(validate_spec(spec), echo=said.append)
    assert any("0 to train" in line for line in said)


def test_probe_relabel_and_filter_record_what_they_did(tmp_path):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    spec["losses"] = [
        {"name": "xent", "probe": {"method": "knn", "k": 5, "layer": "last"}},
        {"name": "xent", "probe": {"method": "logreg", "mode": "filter", "contamination": 0.25}},
    ]
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    root = tmp_path / "tiny"
    transfers = {r["loss"]: r for r in rows if r["kind"] == "transfer"}
    assert set(transfers) == {"xent+knn_relabel", "xent+logreg_filter"}
    for row in transfers.values():
        folder = next((root / "stages").glob(f"*__{row['key']}"))
        cfg = config(folder)
        supervisor = next((root / "stages").glob(f"*__{cfg['supervisor']}"))
        feature_folder = next(f for f in stage_folders(root, "features") if config(f)["key"] in cfg["requires"])
        probe = cfg["loss"]["probe"]
        assert config(feature_folder)["stage"].endswith(f"/layer-{probe['layer']}/s0")
        # recompute the cleaning from the files the stage read
        weak = {}
        for line in (supervisor / "predictions.jsonl").read_text().splitlines():
            p = json.loads(line)
            if p["split"] == "train_b":
                weak[p["id"]] = (p["p_pos"], p["hard_label"])
        cached = activations.read(feature_folder)["train_b"]
        weak_p = np.array([weak[i][0] for i in cached.ids], dtype=np.float32)
        truth = np.array([weak[i][1] for i in cached.ids])
        cleaned = probes.clean_labels(
            cached.array,
            weak_p,
            probe["method"],
            probe["mode"],
            k=probe["k"],
            contamination=probe["contamination"],
            seed=0,
        )
        assert row["probe_changed"] == cleaned.n_changed
        assert row["probe_removed"] == cleaned.n_removed
        assert row["weak_label_accuracy"] == pytest.approx(((weak_p > 0.5) == truth).mean())
        kept = cleaned.keep
        assert row["probe_label_accuracy"] == pytest.approx(((cleaned.p_pos[kept] > 0.5) == truth[kept]).mean())
        assert row["n_train"] == kept.sum()
    assert transfers["xent+logreg_filter"]["probe_removed"] == 8  # ceil(0.25 * 32 rows of half B)
    assert transfers["xent+logreg_filter"]["n_train"] == 24

    # the report keeps the two methods apart and carries what the probes did
    per_seed, _ = seed_rows(load_records(root, echo=lambda *a: None))
    by_loss = per_seed.set_index("loss")
    assert sorted(by_loss.index) == ["xent+knn_relabel", "xent+logreg_filter"]
    for label, row in transfers.items():
        assert by_loss.loc[label, "probe_removed"] == row["probe_removed"]
        assert by_loss.loc[label, "probe_label_accuracy"] == pytest.approx(row["probe_label_accuracy"])
        assert by_loss.loc[label, "ece"] == pytest.approx(row["ece"])


def test_every_loss_and_probe_runs_from_a_spec(tmp_path):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    names = list(LOSSES)
    spec["losses"] = [{"name": name} for name in names] + [
        {"name": "window", "label": "window-midweak", "radius": "midweak"},
        {"name": "logconf", "probe": {"method": "topo", "mode": "filter", "k": 5, "contamination": 0.2}},
        {"name": "xent", "probe": {"method": "topo", "mode": "relabel", "k": 5}},
    ]
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    transfers = {r["loss"]: r for r in rows if r["kind"] == "transfer"}
    assert sorted(transfers) == sorted([*names, "window-midweak", "logconf+topo_filter", "xent+topo_relabel"])
    for row in transfers.values():
        assert row["test_accuracy"] == pytest.approx(accuracy_from_predictions(tmp_path / "tiny", row["key"]))
        assert row["ece"] == pytest.approx(ece_from_predictions(tmp_path / "tiny", row["key"]), abs=1e-6)
        assert row["pgr"] == (
            None
            if row["pgr_note"]
            else pytest.approx(
                (row["test_accuracy"] - row["weak_accuracy"]) / (row["ceiling_accuracy"] - row["weak_accuracy"])
            )
        )
    assert transfers["logconf+topo_filter"]["probe_removed"] == 7  # ceil(0.2 * 32 rows of half B)
    assert transfers["logconf+topo_filter"]["n_train"] == 32 - transfers["logconf+topo_filter"]["probe_removed"]


def test_probe_settings_are_validated_and_keyed(tmp_path):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    spec["losses"] = [{"name": "xent"}, {"name": "xent", "probe": {"method": "svm"}}]
    with pytest.raises(SpecError, match=r"losses\.1\.probe\.method: Input should be 'knn', 'logreg' or 'topo'"):
        validate_spec(spec)
    spec["losses"][1]["probe"] = {"method": "knn", "contamination": 1.5}
    with pytest.raises(SpecError, match=r"losses\.1\.probe\.contamination: "):
        validate_spec(spec)
    spec["losses"][1]["probe"] = {"method": "knn"}
    names = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    assert "transfer/synthetic/tiny-16->tiny-24/xent+knn_relabel/s0" in names
    assert "features/synthetic/tiny-24/layer-middle/s0" in names
    spec["losses"][1]["probe"]["k"] = 3  # a new k: a new transfer, the same features
    changed = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    assert [n for n in names if names[n] != changed[n]] == ["transfer/synthetic/tiny-16->tiny-24/xent+knn_relabel/s0"]


def test_a_probe_layer_the_model_lacks_is_an_error_before_training(tmp_path, capsys):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    spec["losses"] = [{"name": "xent", "probe": {"method": "knn", "layer": 2}}]  # tiny-24 has hidden states 0..1
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "w2s: error: losses.0.probe.layer: 2 is out of range; tiny-24 has hidden states 0..1"
    ]
    assert not (tmp_path / "tiny").exists()
    spec["losses"][0]["probe"]["layer"] = 1
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    assert [r["loss"] for r in rows if r["kind"] == "transfer"] == ["xent+knn_relabel"]


def test_save_model_keeps_the_trained_weights(tmp_path):
    from safetensors.torch import load_file

    spec = tiny_spec(tmp_path, ladder=1, save_model=True)
    row = next(r for r in run_experiment(validate_spec(spec), echo=lambda *a: None) if r["kind"] == "ground_truth")
    folder = next((tmp_path / "tiny" / "stages").glob(f"*__{row['key']}"))
    weights = load_file(str(folder / "model" / "model.safetensors"))
    assert weights["head.weight"].shape == (2, 16) and weights["head.weight"].abs().sum() > 0  # trained from zero


def test_generative_finetuning_is_a_cached_stage_the_model_starts_from(tmp_path, tiny_causal_lm):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "gpt"]])
    spec["models"][1] = {
        "name": str(tiny_causal_lm),
        "label": "gpt",
        "random_init": True,
        "generative_finetune": {"epochs": 6, "lr": 1e-2},
    }
    spec["models"] = spec["models"][:2]
    spec["tracking"] = {"mode": "offline"}
    said = []
    rows = run_experiment(validate_spec(spec), echo=said.append)
    root = tmp_path / "tiny"
    (lm_folder,) = stage_folders(root, "lm_finetune")
    lm = metrics(lm_folder)
    # tracked like any stage: its own W&B run with the language-modelling curve and the before/after loss
    (run,) = [r for r in offline_runs(root) if r["job_type"] == "lm_finetune"]
    assert run["name"] == "lm_finetune synthetic gpt s0" and run["summary"]["lm_loss_test"] == lm["lm_loss_test"]
    assert "train/loss" in run["summary"] and "train/train_accuracy" not in run["summary"]
    assert lm["lm_loss_test"] < lm["lm_loss_test_before"] - 2, lm  # it learned the texts (random init: ~10.3 nats)
    assert lm["n_train"] == 64 and (lm_folder / "model" / "model.safetensors").is_file()
    lm_key = config(lm_folder)["key"]
    for row in rows:
        needs = config(next((root / "stages").glob(f"*__{row['key']}")))["requires"]
        assert (lm_key in needs) == (row["model"] == "gpt"), row["stage"]

    # what the classifier starts from is the finetuned network, not a fresh random one
    model_spec = validate_spec(spec).models[1]
    finetuned = load_backbone(model_spec, weights_from=str(lm_folder / "model"))
    from safetensors.torch import load_file

    saved = load_file(str(lm_folder / "model" / "model.safetensors"))
    weight = next(v for k, v in saved.items() if k.endswith("h.0.attn.c_attn.weight"))
    assert torch.equal(finetuned.h[0].attn.c_attn.weight, weight)
    set_seed(0)
    assert not torch.equal(load_backbone(model_spec).h[0].attn.c_attn.weight, weight)

    said.clear()
    run_experiment(validate_spec(spec), echo=said.append)
    assert any("0 to train" in line for line in said)
    before = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    spec["models"][1]["generative_finetune"]["lr"] = 1e-3  # new finetuning: gpt's stages rerun, tiny-16's do not
    after = {s.name: s.key for s in plan_run(validate_spec(spec)).stages}
    assert sorted(n for n in after if before[n] != after[n]) == [
        "ground_truth/synthetic/gpt/s0",
        "lm_finetune/synthetic/gpt/s0",
        "transfer/synthetic/tiny-16->gpt/xent/s0",
    ]


def test_generative_finetuning_of_an_encoder_is_a_one_line_error(tmp_path, capsys):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    spec["models"][1]["generative_finetune"] = True
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "w2s: error: models.1.generative_finetune: 'minilm-l6' is not a causal language model "
        "(BertModel); use it with e.g. gpt2 or Qwen models"
    ]
    assert not (tmp_path / "tiny").exists()
