"""Sharded training for real, on CPU: two processes launched by `accelerate launch` with the FSDP2
and the DeepSpeed ZeRO-3 configurations docs/cluster.md shows (tests/accelerate_fsdp_cpu2.yaml,
tests/accelerate_deepspeed_cpu2.yaml), sharding a small decoder classifier (the Qwen2 architecture
of the reference's 7B/14B configs, a few layers wide) over gloo, checked against one process.

What a GPU launch does not need: for FSDP the shim tests/fsdp_on_cpu.py (accelerate applies an FSDP
config only to accelerator process groups, so it labels the CPU group as one: see its docstring);
for DeepSpeed, DS_ACCELERATOR=cpu (its CPU accelerator). The DeepSpeed launch runs with --deepspeed
(`pip install -e ".[deepspeed]"`): its package and the minute it spends building its CPU
communication op are not in CI.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from tests.conftest import save_tiny_qwen, tiny_model, tiny_spec, write_spec
from w2s.models.loading import load_classifier
from w2s.pipeline.runner import run_experiment
from w2s.spec import ModelSpec, validate_spec

REPO = Path(__file__).resolve().parents[1]

# One and two processes sum in different orders (the shards' gradients are reduce-scattered), in
# fp32: predicted probabilities agree to 1e-3, accuracies to one test example.
PROB_TOLERANCE = 1e-3
WEIGHT_TOLERANCE = 1e-3


def _spec(out: Path, checkpoints: Path) -> dict:
    """qwen-16 (1 layer) -> qwen-32 (2 layers), pretrained checkpoints of random weights, on 200 rows
    per half, fp32, weights saved. (Pretrained: under ZeRO-3, transformers builds a model already
    partitioned, so `random_init` draws other random weights than one process does.)"""
    spec = tiny_spec(out, name="sharded", pairs=[["qwen-16", "qwen-32"]], save_model=True)
    spec["models"] = [
        {
            "name": str(save_tiny_qwen(checkpoints / f"qwen-{hidden}", hidden, layers, weights=True)),
            "label": f"qwen-{hidden}",
        }
        for hidden, layers in ((16, 1), (32, 2))
    ]
    spec["datasets"].update(n_train=400, max_ctx=32)
    spec["train"].update(epochs=2, lr=1e-2, batch_size=32, minibatch_size=8, mixed_precision="fp32")
    return spec


# how each is launched on CPU: its accelerate config, and the script `accelerate launch` runs
LAUNCHES = {
    "FSDP": ("accelerate_fsdp_cpu2.yaml", [str(REPO / "tests" / "fsdp_on_cpu.py")]),
    "DEEPSPEED": ("accelerate_deepspeed_cpu2.yaml", ["-m", "w2s"]),
}


def _template_block(title: str) -> dict:
    """A commented block at the bottom of accelerate_config.yaml (the docs' FSDP / DeepSpeed), parsed."""
    lines = (REPO / "accelerate_config.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# --- {title}"))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("# ") or line.startswith("# ---"):
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))


@pytest.mark.parametrize("sharding, title", [("FSDP", "FSDP"), ("DEEPSPEED", "DeepSpeed")])
def test_the_launches_use_the_configuration_the_template_shows(sharding, title):
    template = _template_block(title)
    tested = yaml.safe_load((REPO / "tests" / LAUNCHES[sharding][0]).read_text())
    assert template["distributed_type"] == tested["distributed_type"] == sharding
    section = "fsdp_config" if sharding == "FSDP" else "deepspeed_config"
    assert tested[section] == template[section]


def test_transformer_based_wrap_gives_each_block_of_the_classifier_its_own_shard_group(tmp_path):
    """The docs' FSDP config wraps by the model's block classes, which accelerate reads from the model
    it prepares: w2s's classifier, around the backbone that names them."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    qwen = ModelSpec(name=str(save_tiny_qwen(tmp_path / "qwen", 16, 2, weights=True)))
    bert = ModelSpec(**tiny_model("bert", 16, 2))
    for spec, blocks in ((qwen, ["Qwen2DecoderLayer"] * 2), (bert, ["BertEmbeddings", "BertLayer", "BertLayer"])):
        model = load_classifier(spec)
        policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
        assert [type(m).__name__ for m in model.modules() if policy(m)] == blocks


def _launch(spec_path: Path, sharding: str, extensions: Path) -> subprocess.CompletedProcess:
    """`accelerate launch` of `w2s run`; `extensions`: where DeepSpeed builds its CPU communication op
    (by default ~/.cache/torch_extensions: outside the test's folders)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO), DS_ACCELERATOR="cpu")
    env["TORCH_EXTENSIONS_DIR"] = str(extensions)
    config, script = LAUNCHES[sharding]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "tests" / config),
        "--main_process_port",
        "0",
        *script,
        "run",
        str(spec_path),
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _predictions(folder: Path) -> dict:
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert len({(r["split"], r["id"]) for r in rows}) == len(rows)  # each example once, not once per process
    return {(r["split"], r["id"]): r["p_pos"] for r in rows}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[dict, Path]:
    """The spec, and its stage folders trained in one process (what every launch is compared with)."""
    tmp = tmp_path_factory.mktemp("one-process")
    spec = _spec(tmp / "one", tmp / "checkpoints")
    run_experiment(validate_spec(spec), echo=lambda *a: None)
    return spec, tmp / "one" / "sharded" / "stages"


@pytest.mark.parametrize(
    "sharding",
    ["FSDP", pytest.param("DEEPSPEED", marks=pytest.mark.deepspeed)],  # DeepSpeed: with --deepspeed
)
def test_sharded_launch_trains_and_matches_one_process(tmp_path, one_process, sharding):
    spec, reference = one_process
    extensions = reference.parents[2] / "torch_extensions"  # built once, by the first DeepSpeed launch
    spec = dict(spec, output_dir=str(tmp_path / "two"))  # the same checkpoints: the same stage keys
    path = write_spec(tmp_path / "spec.yaml", spec)
    done = _launch(path, sharding, extensions)
    shown = f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}"
    assert done.returncode == 0, shown
    assert done.stdout.count("3 stages, 3 to train") == 1, shown  # one process group: the plan printed once

    two = tmp_path / "two" / "sharded" / "stages"
    folders = sorted(two.iterdir())
    assert [f.name.split("__")[0] for f in folders] == ["ground_truth", "ground_truth", "transfer"], folders
    for folder in folders:  # written once, by the main process, and trained sharded
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics["distributed"], metrics["processes"]) == (sharding, 2), folder
    results = [json.loads(line) for line in (tmp_path / "two" / "sharded" / "results.jsonl").read_text().splitlines()]
    assert len(results) == len({r["key"] for r in results}) == 3

    n_test = spec["datasets"]["n_test"]
    for folder in folders:
        twin = reference / folder.name  # the same key: the same stage
        metrics = [json.loads((f / "metrics.json").read_text()) for f in (folder, twin)]
        assert metrics[1]["distributed"] == "NO"
        assert abs(metrics[0]["test_accuracy"] - metrics[1]["test_accuracy"]) <= 1 / n_test + 1e-9
        sharded, single = _predictions(folder), _predictions(twin)
        assert sharded.keys() == single.keys()
        assert max(abs(sharded[k] - single[k]) for k in sharded) < PROB_TOLERANCE, folder.name
        # get_state_dict gathered the shards: the full weights, as one process trained them
        weights = [load_file(str(f / "model" / "model.safetensors")) for f in (folder, twin)]
        assert weights[0].keys() == weights[1].keys()
        for name, value in weights[1].items():
            assert weights[0][name].shape == value.shape, name
            np.testing.assert_allclose(weights[0][name], value, atol=WEIGHT_TOLERANCE, err_msg=name)

    written = {f.name: (f / "metrics.json").stat().st_mtime_ns for f in folders}
    again = _launch(path, sharding, extensions)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("3 stages, 0 to train") == 1, again.stdout[-2000:]
    assert {f.name: (f / "metrics.json").stat().st_mtime_ns for f in sorted(two.iterdir())} == written
