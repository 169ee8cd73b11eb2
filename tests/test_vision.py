"""The vision setting end to end, offline: weak labels from a small image model's probe, a linear probe on
a bigger model's embeddings trained on them, PGR against the same probe on ground truth."""

import json

import pytest

from tests.conftest import apply_changes, save_tiny_vit, write_spec
from w2s.cli import main
from w2s.pipeline.runner import run_experiment
from w2s.report import build_report, load_records
from w2s.scoring.pgr import pgr
from w2s.spec import validate_spec
from w2s.training import activations


@pytest.fixture
def tiny_vit(tmp_path):
    """A saved tiny ViT (config + image processor) that the spec names as a local folder."""
    return save_tiny_vit(tmp_path / "tiny-vit")


def vision_spec(tmp_path, tiny_vit) -> dict:
    wide = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
    return {
        "name": "digits",
        "output_dir": str(tmp_path),
        "datasets": {"name": "digits"},
        "models": [
            {"name": str(tiny_vit), "label": "vit-32", "random_init": True, "config_overrides": {}},
            {"name": str(tiny_vit), "label": "vit-128", "random_init": True, "config_overrides": wide},
        ],
        "pairs": [["vit-32", "vit-128"]],
        "losses": [{"name": "xent"}, {"name": "logconf"}],
        "train": {"epochs": 40, "lr": 1e-2, "batch_size": 32, "minibatch_size": 32},
        "tracking": {"mode": "disabled"},
    }


def test_digits_weak_to_strong_with_linear_probes_on_embeddings(tmp_path, tiny_vit):
    rows = run_experiment(validate_spec(vision_spec(tmp_path, tiny_vit)), echo=lambda *a: None)
    root = tmp_path / "digits"
    truth = {r["model"]: r for r in rows if r["kind"] == "ground_truth"}
    weak, ceiling = truth["vit-32"]["test_accuracy"], truth["vit-128"]["test_accuracy"]
    assert 0.55 < weak < ceiling - 0.05, (weak, ceiling)  # wider random features separate digits better (0.58, 0.72)
    assert {r["n_test"] for r in rows} == {359}  # 20% of the 1,797 digits held out

    # one features stage per model: embeddings of every split, the wider model's are 128-d
    features = {
        json.loads((f / "config.json").read_text())["model"]["label"]: f for f in (root / "stages").glob("features__*")
    }
    assert sorted(features) == ["vit-128", "vit-32"]
    cached = activations.read(features["vit-128"])
    assert cached["test"].array.shape == (359, 128) and len(cached["train_a"].ids) == len(cached["train_b"].ids) == 719

    # the student trained on the weak model's labels of half B, and PGR is computed from the three accuracies
    weak_folder = next((root / "stages").glob(f"*__{truth['vit-32']['key']}"))
    weak_b = [json.loads(line) for line in (weak_folder / "predictions.jsonl").read_text().splitlines()]
    weak_b = [p for p in weak_b if p["split"] == "train_b"]
    assert len(weak_b) == 719
    for row in (r for r in rows if r["kind"] == "transfer"):
        assert row["pgr"] == pytest.approx(pgr(row["test_accuracy"], weak, ceiling))
        assert row["n_train"] == 719 and 0.5 < row["agreement"] <= 1
        assert row["non_embedding_parameters"] == truth["vit-128"]["non_embedding_parameters"]
        assert row["test_accuracy"] > 0.55  # it learned from the weak labels (observed 0.59 and 0.60)

    # the report reads it like any text experiment
    out = tmp_path / "report"
    build_report(load_records(root), out)
    table = (out / "summary.csv").read_text().splitlines()
    assert len(table) == 3 and "vit-32->vit-128" in table[1]


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"datasets": {"name": "imagenet"}},
            "datasets.0: imagenet needs `data_dir`: your local copy with train/ and val/ class folders",
        ),
        (
            {"datasets": {"name": "digits", "data_dir": "/data"}},
            "datasets.0: `data_dir` only applies to the imagenet and imagenet1k datasets",
        ),
        (
            {"datasets": [{"name": "digits"}, {"name": "synthetic"}]},
            "datasets: image and text datasets need different models; put them in separate specs",
        ),
        (
            {"models.1.generative_finetune": True},
            "models.1.generative_finetune: not available for image datasets (models there are linear probes on embeddings)",
        ),
        (
            {"models.0.lora": {"r": 2}},
            "models.0.lora: not available for image datasets (models there are linear probes on embeddings)",
        ),
        (
            {"losses": [{"name": "xent", "probe": {"method": "knn"}}]},
            "losses.0.probe.layer: image models give one embedding; use layer: last",
        ),
        (
            {"datasets": {"name": "synthetic"}, "models.0.name": "torchvision:alexnet"},
            "models.0.name: 'torchvision:alexnet' is an image model; the datasets here are text",
        ),
    ],
)
def test_image_spec_mistakes_are_one_line_errors(tmp_path, tiny_vit, capsys, change, expected):
    spec = vision_spec(tmp_path, tiny_vit)
    apply_changes(spec, change)
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"w2s: error: {path}: {expected}"]
    assert not (tmp_path / "digits").exists()


def test_missing_imagenet_copy_is_a_one_line_error(tmp_path, tiny_vit, capsys):
    spec = vision_spec(tmp_path, tiny_vit)
    spec["datasets"] = {"name": "imagenet", "data_dir": str(tmp_path / "nowhere")}
    assert main(["run", str(write_spec(tmp_path / "b.yaml", spec))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("w2s: error: datasets.0.data_dir: not a folder: ") and "nowhere" in err[0]
    )
    assert not (tmp_path / "digits").exists()
