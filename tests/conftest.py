"""Shared fixtures: tiny random models (seconds to train) and spec files."""

from pathlib import Path

import pytest
import yaml

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_model(label: str, hidden: int = 16, layers: int = 1, **extra) -> dict:
    """A randomly initialised BERT with the MiniLM tokenizer: trains in well under a second."""
    overrides = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
                 "intermediate_size": 2 * hidden}  # fmt: skip
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


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def sst2_dir() -> Path:
    path = SHARED_DATA / "sst2"
    if not (path / "train.tsv").is_file():
        pytest.skip(f"SST-2 copy not found at {path} (it lives in the project's shared/ folder)")
    return path
