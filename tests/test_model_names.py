"""One parser for model names (w2s/models/names.py): each of the five kinds, read from the spelling alone, and
what spec validation, `resolve` and the pre-run check make of it."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from w2s.models.names import MODEL_ALIASES, ModelName, parse_model_name, resolve
from w2s.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["minilm-l3", "minilm-l6", "mpnet-l1", "mpnet-l12"])
def test_aliases(name):
    parsed = parse_model_name(name)
    family, layers = MODEL_ALIASES[name]
    assert parsed == ModelName("alias", name, family=family, layers=layers)
    assert parsed.layers == int(name.rsplit("-l", 1)[1]) and parsed.folder is None and not parsed.is_image


@pytest.mark.parametrize(
    "name",
    ["/abs/ckpt", "./ckpt", "../ckpt", "~/ckpt", "~user/ckpt", ".hidden-ckpt", ".", "..", "runs/sweep/ckpt", "a/b/c/d"],
)
def test_folders_by_their_spelling(name):
    parsed = parse_model_name(name)
    assert parsed.kind == "folder" and parsed.folder == Path(os.path.expanduser(name)) and not parsed.is_image


@pytest.mark.parametrize(
    "name", ["gpt2", "Qwen/Qwen2.5-0.5B", "facebook/dino-vitb8", "my-ckpt", "runs/ckpt", "org/minilm-l9"]
)
def test_hub_ids(name):
    parsed = parse_model_name(name)
    assert parsed == ModelName("hub", name) and parsed.folder is None


def test_a_folder_spelled_like_a_hub_id_is_a_hub_id_until_it_exists(tmp_path, monkeypatch):
    """runs/ckpt reads as a hub id (org/name); `resolve` loads the folder when there is one here."""
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec(name="runs/ckpt")
    assert parse_model_name("runs/ckpt").kind == "hub"
    assert resolve(spec) == ("runs/ckpt", None)  # no such folder: the hub id
    (tmp_path / "runs" / "ckpt").mkdir(parents=True)
    assert parse_model_name("runs/ckpt").kind == "hub"  # the spelling decides the kind, not the disk
    assert resolve(spec) == ("runs/ckpt", None)  # the folder (relative, as written)
    assert resolve(ModelSpec(name=str(tmp_path / "runs" / "ckpt"), num_layers=2)) == (
        str(tmp_path / "runs" / "ckpt"),
        2,
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve(ModelSpec(name="~/runs/ckpt")) == (str(tmp_path / "runs" / "ckpt"), None)  # ~ expanded
    assert resolve(ModelSpec(name="~/no-such-folder")) == ("~/no-such-folder", None)  # missing: as written


def test_resolve_an_alias_keeps_its_layers_unless_the_spec_says(monkeypatch):
    family, layers = MODEL_ALIASES["minilm-l3"]
    moved = dataclasses.replace(family, path=lambda: "/cache/minilm")  # no checkpoint is looked up
    monkeypatch.setitem(MODEL_ALIASES, "minilm-l3", (moved, layers))
    assert resolve(ModelSpec(name="minilm-l3")) == ("/cache/minilm", 3)
    assert resolve(ModelSpec(name="minilm-l3", num_layers=1)) == ("/cache/minilm", 1)


@pytest.mark.parametrize(
    "name", ["torchvision:alexnet", "torchvision:resnet50", "torchvision:vit_b_16", "torchvision:no_such_arch"]
)
def test_torchvision(name):
    parsed = parse_model_name(name)  # whether torchvision has the arch is asked when it loads
    assert parsed == ModelName("torchvision", name, arch=name.split(":")[1]) and parsed.is_image


@pytest.mark.parametrize(
    "name, repo, ref, entry, hub_repo",
    [
        (
            "torchhub:facebookresearch/dino:main/dino_vitb8",
            "facebookresearch/dino",
            "main",
            "dino_vitb8",
            "facebookresearch/dino:main",
        ),
        (
            "torchhub:facebookresearch/dino/dino_vitb8",
            "facebookresearch/dino",
            None,
            "dino_vitb8",
            "facebookresearch/dino",
        ),
        ("torchhub:owner/repo:release/v1.2/entry", "owner/repo", "release/v1.2", "entry", "owner/repo:release/v1.2"),
    ],
)
def test_torchhub_on_github(name, repo, ref, entry, hub_repo):
    parsed = parse_model_name(name)
    assert parsed == ModelName("torchhub", name, repo=repo, ref=ref, entry=entry)
    assert parsed.hub_repo == hub_repo and parsed.folder is None and parsed.is_image


@pytest.mark.parametrize(
    "name, repo",
    [
        ("torchhub:/abs/hub/centroid", "/abs/hub"),
        ("torchhub:./hub/centroid", "./hub"),
        ("torchhub:./centroid", "."),
        ("torchhub:~/hub/centroid", "~/hub"),
        ("torchhub:../a:b/centroid", "../a:b"),  # a folder's ":" is no ref
    ],
)
def test_torchhub_folders(name, repo):
    parsed = parse_model_name(name)
    assert parsed == ModelName("torchhub", name, repo=repo, entry="centroid")
    assert parsed.folder == Path(repo).expanduser()


@pytest.mark.parametrize(
    "name",
    [
        "torchvision:",
        "torchvision:alex-net",
        "torchvision:a/b",
        "torchhub:dino_vitb8",
        "torchhub:facebookresearch/dino",
        "torchhub:owner/repo/sub/entry",
        "torchhub:owner/repo:/entry",
        "torchhub:owner/repo/entry-point",
    ],
)
def test_malformed_image_models(name):
    with pytest.raises(
        ValueError,
        match=r"^image model .*: write torchvision:<arch> \(torchvision:alexnet\) or "
        r"torchhub:<owner>/<repo>\[:<ref>\]/<entrypoint>",
    ):
        parse_model_name(name)


def test_unknown_names():
    with pytest.raises(
        ValueError,
        match=r"^unknown model alias 'minilm-16'; did you mean 'minilm-l6'\? aliases: "
        r"minilm-l1 \.\.\. minilm-l6, mpnet-l1 \.\.\. mpnet-l12$",
    ):
        parse_model_name("minilm-16")
    # an alias past its family's layers names the range, not the nearest spelling (mpnet-l0 is not mpnet-l10)
    for name, family, layers in (("minilm-l9", "minilm", 6), ("mpnet-l0", "mpnet", 12), ("mpnet-l13", "mpnet", 12)):
        with pytest.raises(ValueError, match=rf"^unknown model alias '{name}': {family} has layers 1 to {layers} "):
            parse_model_name(name)
    with pytest.raises(
        ValueError, match=r"^unknown model alias 'MPNet-L6'; aliases are lower case: did you mean 'mpnet-l6'\?$"
    ):
        parse_model_name("MPNet-L6")  # before: taken as a hub id, failing offline
    assert parse_model_name("org/minilm-l9").kind == "hub"  # with a "/" a near-alias is a hub id
    for name in ("no such model", "-gpt2", "a b/c", ""):
        with pytest.raises(ValueError, match=rf"^unknown model '{name}': not an alias \(minilm-l1 \.\.\. "):
            parse_model_name(name)


def test_spec_validation_uses_the_parser():
    assert ModelSpec(name="torchhub:facebookresearch/dino:main/dino_vitb8", trust_remote_code=True).name
    with pytest.raises(ValueError, match="torch.hub runs the repository's hubconf.py; set trust_remote_code"):
        ModelSpec(name="torchhub:facebookresearch/dino:main/dino_vitb8")
    for bad in ("minilm-l9", "torchvision:a-b", "no such model"):
        with pytest.raises(ValueError) as parsed:
            parse_model_name(bad)
        with pytest.raises(ValueError) as validated:
            ModelSpec(name=bad)
        assert str(parsed.value) in str(validated.value)  # the parser's words, under pydantic's


def test_the_parser_imports_no_torch():
    probe = (
        "import sys; from w2s.models.names import parse_model_name; parse_model_name('torchvision:alexnet'); "
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


def test_the_pre_run_check_looks_for_the_folders_a_name_spells(tmp_path):
    """What validation took on spelling, the pre-run check looks for: a checkpoint folder, a hubconf.py."""
    from types import SimpleNamespace

    from w2s.errors import SpecError
    from w2s.experiment.checks import _check_models
    from w2s.spec import validate_spec

    hub, ckpt = tmp_path / "hub", tmp_path / "ckpt"
    spec = validate_spec(
        {
            "name": "names",
            "output_dir": str(tmp_path / "out"),
            "datasets": {"name": "digits"},
            "models": [
                {"name": f"torchhub:{hub}/entry", "label": "hub", "trust_remote_code": True},
                {"name": str(ckpt), "label": "ckpt"},
            ],
            "tracking": {"mode": "disabled"},
        }
    )
    stages = [SimpleNamespace(model=model) for model in spec.models]
    with pytest.raises(
        SpecError, match=rf"^models\.0\.name: no hubconf\.py in {hub} \(a torch\.hub folder needs one\)"
    ):
        _check_models(spec, stages)
    hub.mkdir()
    (hub / "hubconf.py").write_text("")
    with pytest.raises(SpecError, match=rf"^models\.1\.name: no such checkpoint folder: {ckpt}$"):
        _check_models(spec, stages)
    ckpt.mkdir()
    _check_models(spec, stages)  # both there: on an image dataset nothing more is read
