"""Vision building blocks offline: digits rows, an ImageNet-layout folder, tiny saved HF image encoders."""

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from w2s.vision.datasets import _imagenet_animal, load_cifar10_rows, load_digits_rows, load_imagenet_rows
from w2s.vision.encoders import load_image_encoder
from w2s.vision.images import open_image

TINY_VIT = {
    "image_size": 16,
    "patch_size": 4,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


@pytest.fixture(scope="module")
def digits():
    return load_digits_rows()[0]


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    ViTModel(ViTConfig(**TINY_VIT)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_resnet_dir(tmp_path_factory) -> Path:
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    folder = tmp_path_factory.mktemp("tiny-resnet")
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(folder)
    # what microsoft/resnet-50 ships: resize the short side, centre crop (crop_pct=1: no crop margin)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(folder)
    return folder


def test_digits_rows(digits):
    pool, test = load_digits_rows()
    assert test == [] and len(pool) == 1797
    assert 0.45 <= np.mean([r["hard_label"] for r in pool]) <= 0.55
    assert len({r["id"] for r in pool}) == 1797 and pool[17]["id"] == "digits-00017"
    assert all(r["image"].mode == "RGB" and r["image"].size == (8, 8) for r in pool)
    assert set(r["hard_label"] for r in pool) == {0, 1}
    again = pool[:50]
    for a, b in zip(digits[:50], again):
        assert a["id"] == b["id"] and a["hard_label"] == b["hard_label"]
        assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    assert max(np.asarray(r["image"]).max() for r in pool) == 255  # scaled from 0..16


@pytest.mark.parametrize("kind", ["vit", "resnet"])
@pytest.mark.parametrize("random_init", [False, True])
def test_tiny_encoders(kind, random_init, digits, tiny_vit_dir, tiny_resnet_dir):
    folder = tiny_vit_dir if kind == "vit" else tiny_resnet_dir
    encoder = load_image_encoder(str(folder), random_init=random_init)
    assert encoder.dim == (32 if kind == "vit" else 16)
    images = [open_image(r) for r in digits[:5]]
    first, second = encoder.embed(images), encoder.embed(images, batch_size=2)
    assert first.shape == (5, encoder.dim) and first.dtype == torch.float32
    assert torch.isfinite(first).all() and first.std() > 0
    assert torch.allclose(first, second, atol=1e-5)
    assert torch.allclose(encoder.embed(images[:1]), first[:1], atol=1e-5)  # a batch of one
    assert encoder.to("cpu").device.type == "cpu"


def test_pretrained_weights_are_the_saved_ones(digits, tiny_vit_dir):
    images = [r["image"] for r in digits[:3]]
    a = load_image_encoder(str(tiny_vit_dir)).embed(images)
    b = load_image_encoder(str(tiny_vit_dir)).embed(images)
    assert torch.equal(a, b)
    torch.manual_seed(1)
    fresh = load_image_encoder(str(tiny_vit_dir), random_init=True).embed(images)
    assert not torch.allclose(a, fresh)


def test_config_overrides_reach_the_config(tiny_vit_dir):
    encoder = load_image_encoder(str(tiny_vit_dir), random_init=True, config_overrides={"num_hidden_layers": 1})
    assert encoder.model.config.num_hidden_layers == 1


def test_linear_probe_on_random_vit_features_beats_chance(digits, tiny_vit_dir):
    from sklearn.linear_model import LogisticRegression

    # 32-d random CLS features give only ~0.62-0.68; 128-d ones ~0.75-0.82 over seeds (shuffled labels: ~0.5)
    wider = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
    torch.manual_seed(0)
    encoder = load_image_encoder(str(tiny_vit_dir), random_init=True, config_overrides=wider)
    assert encoder.dim == 128
    x = encoder.embed([r["image"] for r in digits], batch_size=256).numpy()
    y = np.array([r["hard_label"] for r in digits])
    probe = LogisticRegression(max_iter=2000).fit(x[:1200], y[:1200])
    accuracy = probe.score(x[1200:], y[1200:])
    assert accuracy > 0.65, accuracy  # observed 0.764 (seed 0) on the 597 held-out digits


def _fake_imagenet(root: Path, wnids=("n01440764", "n03000134")) -> Path:
    for split in ("train", "val"):
        for k, wnid in enumerate(wnids):
            (root / split / wnid).mkdir(parents=True)
            for j in range(2):
                name = f"{wnid}_{j}.JPEG" if split == "train" else f"ILSVRC2012_val_{k}{j}.JPEG"
                Image.new("RGB", (12, 10), (40 * k, 80 * j, 7)).save(root / split / wnid / name, "JPEG")
    return root


def test_imagenet_rows(tmp_path, tiny_resnet_dir):
    root = _fake_imagenet(tmp_path / "imagenet")
    (root / "train" / "n01440764" / "notes.txt").write_text("not an image")
    pool, test = load_imagenet_rows(root)
    assert len(pool) == 4 and len(test) == 4
    assert [r["hard_label"] for r in pool] == [1, 1, 0, 0]  # the first sorted wnid (tench) is an animal
    assert [r["hard_label"] for r in test] == [1, 1, 0, 0]
    assert len({r["id"] for r in pool + test}) == 8
    assert all(isinstance(r["image"], str) for r in pool)  # paths: opened lazily
    image = open_image(pool[0])
    assert image.mode == "RGB" and image.size == (12, 10)
    encoder = load_image_encoder(str(tiny_resnet_dir))
    from_paths = encoder.embed([r["image"] for r in test])
    assert torch.allclose(from_paths, encoder.embed([open_image(r) for r in test]))


def test_imagenet_wnid_threshold():
    assert _imagenet_animal("n02655020", Path("x")) == 1  # puffer, class 397
    assert _imagenet_animal("n02666196", Path("x")) == 0  # abacus, class 398
    assert _imagenet_animal("397", Path("x")) == 1 and _imagenet_animal("398", Path("x")) == 0


def test_imagenet_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="nowhere.*train/<wnid>"):
        load_imagenet_rows(missing)
    root = _fake_imagenet(tmp_path / "flatval", wnids=("n01440764",))
    for path in (root / "val" / "n01440764").iterdir():
        path.rename(root / "val" / path.name)
    (root / "val" / "n01440764").rmdir()
    with pytest.raises(ValueError, match="no class subfolders.*flat"):
        load_imagenet_rows(root)
    bad = tmp_path / "bad"
    (bad / "train" / "cats").mkdir(parents=True)
    with pytest.raises(ValueError, match="wnids"):
        load_imagenet_rows(bad)


def test_cifar10_mapping(monkeypatch):
    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    images = [Image.new("RGB", (32, 32), (c * 20, 0, 0)) for c in range(10)]
    split = datasets.Dataset.from_dict({"img": images, "label": list(range(10))}, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(train=split, test=split))
    pool, test = load_cifar10_rows()
    assert [r["hard_label"] for r in pool] == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]  # airplane, automobile, ship, truck
    assert pool[3]["id"] == "cifar10-train-00003" and test[0]["id"] == "cifar10-test-00000"
    assert pool[0]["image"].mode == "RGB"


def test_bad_model_names(tmp_path):
    from transformers import BertConfig

    empty, missing, text_only = tmp_path / "empty", tmp_path / "missing", tmp_path / "bert"
    empty.mkdir()
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(
        text_only
    )
    for name in (str(empty), str(missing), str(text_only), "torchvision:no_such_arch"):
        with pytest.raises(ValueError, match=rf"^cannot load image model '{re.escape(name)}': \S"):
            load_image_encoder(name)
    with pytest.raises(ValueError, match="no such folder"):
        load_image_encoder(str(missing))
    # (a hub id is not tried: offline, huggingface_hub retries for ~90 s before failing)


def test_registry():
    from w2s.data import DATASETS
    from w2s.data.registry import load_rows
    from w2s.spec import DataSpec

    image = {name: info for name, info in DATASETS.items() if info.modality == "image"}
    assert "digits" in image and "digits10" in image  # the offline ones the rest of this test reads
    for info in DATASETS.values():  # every "module:function" names a function that exists
        if info.loader is not None:
            module, _, function = info.loader.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), info.loader
    for name, info in image.items():
        assert info.loader is not None and info.formatter is None, name  # image rows come from a loader
        if info.hub or info.data_dir:
            continue  # CIFAR-10 needs the hub and ImageNet a local copy: not here
        pool, test = load_rows(info, DataSpec(name=name), seed=0)
        rows = pool + test
        assert rows and len({r["id"] for r in rows}) == len(rows), name
        for r in rows[:: max(1, len(rows) // 50)]:  # an image, and a class index the heads have an output for
            assert open_image(r).mode == "RGB", name
            assert type(r["hard_label"]) is int and 0 <= r["hard_label"] < info.classes, (name, r["hard_label"])
        assert len({r["hard_label"] for r in rows}) == info.classes, name  # every class occurs
    pool, test = load_rows(DATASETS["digits"], DataSpec(name="digits"), seed=0)  # the entry's loader
    assert len(pool) == 1797 and test == [] and {r["hard_label"] for r in pool} == {0, 1}
    ten, _ = load_rows(DATASETS["digits10"], DataSpec(name="digits10"), seed=0)
    assert [r["id"] for r in ten] == [r["id"] for r in pool]  # the same images, labelled with the digit itself
    assert all(r2["hard_label"] == int(r10["hard_label"] >= 5) for r2, r10 in zip(pool, ten))
    assert sorted({r["hard_label"] for r in ten}) == list(range(10))


def test_torchvision_path_with_a_stand_in_module(monkeypatch, digits):
    """torchvision cannot be installed here: a stand-in checks the wiring (weights, transforms, last Linear)."""
    import sys
    import types

    calls = {}

    class Weights:
        def transforms(self):
            return lambda image: torch.from_numpy(np.asarray(image.resize((16, 16)), dtype=np.float32)).permute(2, 0, 1)

    def get_model(arch, weights=None, **kwargs):
        calls.update(arch=arch, weights=weights, **kwargs)
        torch.manual_seed(0)
        features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        classifier = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 10))
        return torch.nn.Sequential(features, classifier)

    weights = types.SimpleNamespace(DEFAULT=Weights())
    models = types.SimpleNamespace(get_model=get_model, get_model_weights=lambda arch: weights)
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
    encoder = load_image_encoder("torchvision:tiny", config_overrides={"dropout": 0.1})
    assert calls["arch"] == "tiny" and isinstance(calls["weights"], Weights) and calls["dropout"] == 0.1
    assert encoder.dim == 6  # the input of the last Linear: penultimate features, after the ReLU
    x = encoder.embed([r["image"] for r in digits[:3]])
    assert x.shape == (3, 6) and (x >= 0).all()
    load_image_encoder("torchvision:tiny", random_init=True)
    assert calls["weights"] is None


def test_torch_hub_github_name_reaches_torch_hub_load(monkeypatch):
    """owner/repo:ref/entry goes to torch.hub.load as owner/repo:ref and entry (no download: load is replaced)."""
    calls = []

    def load(repo, entry, **kwargs):
        calls.append((repo, entry, kwargs))
        return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    monkeypatch.setattr(torch.hub, "load", load)
    encoder = load_image_encoder("torchhub:facebookresearch/dino:main/dino_vitb8", trust_remote_code=True)
    assert calls == [("facebookresearch/dino:main", "dino_vitb8", {"trust_repo": True})] and encoder.dim == 3
    load_image_encoder(
        "torchhub:owner/repo/entry", random_init=True, trust_remote_code=True, config_overrides={"arch": "small"}
    )
    assert calls[-1] == ("owner/repo", "entry", {"trust_repo": True, "arch": "small", "pretrained": False})
