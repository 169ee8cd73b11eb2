"""Does the head learn fast enough for its soft labels to mean something? `train.head_lr` side by side.

The classifier's head starts at zero (Burns et al.); at the backbone's learning rate a short run
barely moves it, so a supervisor can be accurate with near-uniform probabilities: its soft labels
then carry its ranking but not its knowledge. This runs one setting at several `train.head_lr`
multipliers and prints, per setting, each supervisor's test accuracy, mean confidence (its top
probability) and ECE, and each student's accuracy and PGR.

  python benchmarks/confident_heads.py three-class            # a generated 3-class task (written here)
  W2S_DATA_DIR=../shared/data python benchmarks/confident_heads.py sst2 --seeds 0,1,2

three-class: 600 training rows (halves of 300), 300 test rows of a made-up 3-way review task
(positive / negative / neutral adjectives), MiniLM-L1 (1 epoch, lr 3e-4, batch 16) supervising
MiniLM-L2 with xent and logconf. sst2: the SST-2 setting of docs/supervision.md (MiniLM-L1 ->
MiniLM-L6, 2,000 rows, 2 epochs, xent). Run folders go under --out (default runs/confident-heads);
stages are cached, so a rerun only trains what is missing.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

import w2s
from w2s.pipeline.runner import run_experiment
from w2s.spec import validate_spec

POSITIVE = "excellent wonderful superb delightful brilliant lovely fantastic splendid terrific outstanding".split()
NEGATIVE = "dreadful awful terrible horrible dismal miserable appalling atrocious lousy abysmal".split()
NEUTRAL = "ordinary average typical standard adequate acceptable unremarkable routine moderate plain".split()
NOUNS = "film meal service room staff plot soundtrack menu view ending".split()
TEMPLATES = ["The {noun} was {adj}.", "Honestly, the {noun} seemed {adj}.", "I found the {noun} {adj} overall."]


def three_class_files(folder: Path, n_train: int = 600, n_test: int = 300) -> dict:
    """A deterministic 3-class task as CSV files: label 0 negative, 1 neutral, 2 positive."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        path = folder / f"{split}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for _ in range(n):
                label = rng.randrange(3)
                adj = rng.choice((NEGATIVE, NEUTRAL, POSITIVE)[label])
                writer.writerow([rng.choice(TEMPLATES).format(noun=rng.choice(NOUNS), adj=adj), label])
        files[split] = str(path)
    return files


def spec_for(case: str, out: Path, head_lr: float, seeds: list[int]) -> dict:
    if case == "three-class":
        files = three_class_files(out / "data")
        return {
            "name": f"three-class-head{head_lr:g}",
            "output_dir": str(out),
            "datasets": {
                "name": "local",
                "id": "three",
                "data_files": files,
                "text_columns": ["text"],
                "label_column": "label",
                "classes": 3,
                "n_train": 600,
                "n_test": 300,
            },
            "models": [{"name": "minilm-l1", "lr": 3e-4, "epochs": 1}, {"name": "minilm-l2", "lr": 1e-4}],
            "pairs": [["minilm-l1", "minilm-l2"]],
            "losses": [{"name": "xent"}, {"name": "logconf"}],
            "seeds": seeds,
            "train": {"epochs": 2, "batch_size": 16, "minibatch_size": 16, "head_lr": head_lr},
            "tracking": {"mode": "disabled"},
        }
    return {
        "name": f"sst2-head{head_lr:g}",
        "output_dir": str(out),
        "datasets": {"name": "sst2", "n_train": 2000, "max_ctx": 64},
        "models": [{"name": "minilm-l1", "lr": 3e-4}, {"name": "minilm-l6", "lr": 1e-4}],
        "pairs": [["minilm-l1", "minilm-l6"]],
        "losses": [{"name": "xent"}],
        "seeds": seeds,
        "train": {"epochs": 2, "batch_size": 32, "minibatch_size": 32, "head_lr": head_lr},
        "tracking": {"mode": "disabled"},
    }


def mean_confidence(folder: Path) -> float:
    """A stage's mean top probability on test."""
    frame = pd.read_json(folder / "predictions.jsonl", lines=True, dtype={"id": str})
    test = frame[frame["split"] == "test"]
    if "p_pos" in test and test["p_pos"].notna().all():
        return float(np.maximum(test["p_pos"], 1 - test["p_pos"]).mean())
    return float(test["confidence"].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["three-class", "sst2"])
    parser.add_argument("--head-lr", default="1,10,100", help="multipliers, comma-separated (default 1,10,100)")
    parser.add_argument("--seeds", default="0", help="comma-separated (default 0)")
    parser.add_argument("--out", default="runs/confident-heads")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = []
    for head_lr in (float(h) for h in args.head_lr.split(",")):
        start = time.perf_counter()
        spec = spec_for(args.case, Path(args.out), head_lr, seeds)
        run_experiment(validate_spec(spec), echo=lambda *a: None)
        df = w2s.results(Path(args.out) / spec["name"], echo=lambda *a: None)
        wall = time.perf_counter() - start
        for _, r in df.iterrows():
            confidence = mean_confidence(Path(r["folder"]))
            lines.append(
                {
                    "head_lr": head_lr,
                    "kind": r["kind"],
                    "model": r["chain"] if r["kind"] == "transfer" else r["model"],
                    "loss": r["loss"] if r["kind"] == "transfer" else "",
                    "seed": r["seed"],
                    "accuracy": r["test_accuracy"],
                    "confidence": confidence,
                    "ece": r["ece"],
                    "pgr": r.get("pgr"),
                    "wall_s": round(wall, 1),
                }
            )
    table = pd.DataFrame(lines)
    means = table.groupby(["head_lr", "kind", "model", "loss"], sort=False)[["accuracy", "confidence", "ece", "pgr"]]
    print(means.mean().round(3).to_string())
    print(f"\nseeds {seeds}; wall time per setting (s): {table.groupby('head_lr')['wall_s'].first().to_dict()}")


if __name__ == "__main__":
    main()
