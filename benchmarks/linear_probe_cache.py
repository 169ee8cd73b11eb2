"""Linear probes on cached features vs. recomputing the backbone every epoch, side by side.

    python benchmarks/linear_probe_cache.py [--sst2 ../shared/data/sst2] [--n-train 2000] [--epochs 4]

Also one row of `python benchmarks/run.py`, which runs it side by side in interleaved rounds.

Cached: `w2s run` on a linear-probe sweep (MiniLM 1 and 6 layers, losses xent/logconf/window,
every upward pair): one `features` stage per model, then every stage trains only the head.
Baseline: the same classifier stages trained the way a frozen backbone is trained without the
cache: a forward pass through the backbone for every batch of every epoch, plus prediction on
half B and the test split. Same data, epochs, batch size and precision. Prints both wall times
and their ratio. Reads SST-2 from `--sst2` when given, else uses the generated task.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from w2s.data import load_splits
from w2s.experiment.plan import plan_run
from w2s.models.loading import load_classifier
from w2s.pipeline.inputs import LengthLog, encode, one_hot
from w2s.pipeline.runner import run_experiment
from w2s.spec import validate_spec
from w2s.training.inference import predict
from w2s.training.loop import classification, train
from w2s.training.losses import Xent


def sweep_spec(out: Path, sst2: Path | None, n_train: int, epochs: float) -> dict:
    data = {"name": "synthetic", "n_train": n_train, "n_test": 1000}
    if sst2 is not None:
        data = {
            "name": "sst2",
            "data_files": {"train": str(sst2 / "train.tsv"), "test": str(sst2 / "dev.tsv")},
            "column_names": ["text", "label"],
            "n_train": n_train,
            "max_ctx": 64,
        }
    return {
        "name": "probe-bench",
        "output_dir": str(out),
        "datasets": data,
        "models": [{"name": "minilm-l1", "linear_probe": True}, {"name": "minilm-l6", "linear_probe": True}],
        "losses": [{"name": "xent"}, {"name": "logconf"}, {"name": "window", "radius": "midweak"}],
        "train": {"epochs": epochs, "lr": 1e-3, "batch_size": 32, "minibatch_size": 32},
        "tracking": {"mode": "disabled"},
    }


def recompute_baseline(spec) -> tuple[float, int]:
    """Every classifier stage of the plan, trained with the frozen backbone run on every batch."""
    stages = [s for s in plan_run(spec).stages if s.has_predictions]
    start = time.perf_counter()
    for stage in stages:
        splits = load_splits(stage.dataset, stage.seed)
        rows = (
            splits.train_a if stage.kind == "ground_truth" else splits.train_b
        )  # timing only: labels are ground truth
        lengths, k = LengthLog(), stage.dataset.num_classes
        data, _ = encode(rows, stage, one_hot(rows, k), lengths, "train")
        b_data, _ = encode(splits.train_b, stage, one_hot(splits.train_b, k), lengths, "train_b")
        test_data, _ = encode(splits.test, stage, one_hot(splits.test, k), lengths, "test")
        model = load_classifier(stage.model)
        model, accelerator = train(model, data, classification(Xent()), stage.settings, stage.seed, desc=stage.name)
        for split in (b_data, test_data):
            predict(model, split, accelerator, stage.settings.eval_batch_size)
    return time.perf_counter() - start, len(stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sst2", type=Path, default=None, help="folder with SST-2 train.tsv and dev.tsv")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=4)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp:
        spec = validate_spec(sweep_spec(Path(tmp), args.sst2, args.n_train, args.epochs))
        start = time.perf_counter()
        rows = run_experiment(spec, echo=lambda *a, **k: None)
        cached = time.perf_counter() - start
        root = Path(tmp) / spec.name / "stages"
        extraction = sum(json.loads((f / "metrics.json").read_text())["seconds"] for f in root.glob("features__*"))
        baseline, n_stages = recompute_baseline(spec)
    accuracy = np.mean([r["test_accuracy"] for r in rows])
    print(
        f"linear-probe sweep: {n_stages} classifier stages, {args.epochs:g} epochs, n_train={args.n_train}, "
        f"data={'sst2' if args.sst2 else 'synthetic'}"
    )
    print(
        f"  cached features : {cached:7.1f} s  (feature extraction {extraction:.1f} s; mean test accuracy {accuracy:.3f})"
    )
    print(f"  recompute/epoch : {baseline:7.1f} s")
    print(f"  speed-up        : {baseline / cached:7.1f}x")


if __name__ == "__main__":
    main()
