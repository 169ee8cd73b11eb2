"""w2s against OpenAI's weak-to-strong code on the same setting: the side-by-side table of docs/reference.md.

    python benchmarks/compare_reference.py REFERENCE_RESULTS runs/reference-minilm [--weak minilm-l1 --strong minilm-l6]
        [--out plots/reference_minilm/compare.md]

REFERENCE_RESULTS is the folder the reference's train_simple.py wrote (`--results_folder`, then its
`sweep_subfolder`, e.g. /tmp/results/default): one folder per run with config.json and
results_summary.json. The w2s side is the experiment folder of `experiments/reference_minilm.yaml`
(its results.jsonl). Prints, per seed and as the mean over seeds, the weak model's, the ceiling's and
each transfer's test accuracy and PGR for both, then the verdict per number: the two agree within
seed noise when the mean difference is within twice its standard error (seeds of the two are
independent draws: the reference and w2s split the pool with different generators).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from w2s.report import load_records, provenance


def reference_runs(folder: Path, weak: str, strong: str) -> dict[int, dict[str, float]]:
    """seed -> {weak, ceiling, <loss>...} test accuracies from the reference's run folders."""
    seeds: dict[int, dict[str, float]] = {}
    for summary in sorted(folder.glob("*/results_summary.json")):
        config = json.loads((summary.parent / "config.json").read_text())
        accuracy = json.loads(summary.read_text())["accuracy"]
        row = seeds.setdefault(int(config["seed"]), {})
        if config.get("weak_model_size") == weak and config["model_size"] == strong:
            row[config["loss"]] = accuracy
        elif "weak_model_size" not in config and config["loss"] == "xent":
            role = {weak: "weak", strong: "ceiling"}.get(config["model_size"])
            if role:
                row[role] = accuracy
    return seeds


def w2s_runs(folder: Path, weak: str, strong: str) -> dict[int, dict[str, float]]:
    """seed -> {weak, ceiling, <loss>...} from results.jsonl (logconf-reference is the reference's logconf)."""
    seeds: dict[int, dict[str, float]] = {}
    for line in (folder / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        out = seeds.setdefault(int(row["seed"]), {})
        if row["kind"] == "transfer" and row.get("chain") == f"{weak}->{strong}":
            out[row["loss"].removesuffix("-reference")] = row["test_accuracy"]
        elif row["kind"] == "ground_truth":
            role = {weak: "weak", strong: "ceiling"}.get(row["model"])
            if role:
                out[role] = row["test_accuracy"]
    return seeds


def with_pgr(seeds: dict[int, dict[str, float]], losses: list[str]) -> dict[int, dict[str, float]]:
    for row in seeds.values():
        for loss in losses:
            if loss in row and row["ceiling"] - row["weak"] > 0:
                row[f"pgr_{loss}"] = (row[loss] - row["weak"]) / (row["ceiling"] - row["weak"])
    return seeds


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan)


def table(sides: dict[str, dict[int, dict[str, float]]], columns: list[str]) -> list[str]:
    """The markdown lines: per seed and mean +- s.e. for both sides, then the verdict per number."""
    lines = ["| code | seed | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, seeds in sides.items():
        for seed, row in sorted(seeds.items()):
            lines.append(
                f"| {name} | {seed} | " + " | ".join(f"{row[c]:.3f}" if c in row else "–" for c in columns) + " |"
            )
        means = [mean_se([row[c] for row in seeds.values() if c in row]) for c in columns]
        lines.append(
            f"| {name} | mean ± s.e. ({len(seeds)} seeds) | "
            + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in means)
            + " |"
        )
    lines += ["", "| number | w2s − reference | 2 × s.e. of the difference | within seed noise |", "|---|---|---|---|"]
    for c in columns:
        (a, sa), (b, sb) = (
            mean_se([row[c] for row in sides[side].values() if c in row]) for side in ("w2s", "reference")
        )
        bound = 2 * math.hypot(sa, sb)
        lines.append(f"| {c} | {a - b:+.3f} | {bound:.3f} | {'yes' if abs(a - b) <= bound else 'no'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("w2s", type=Path)
    parser.add_argument("--weak", default="minilm-l1")
    parser.add_argument("--strong", default="minilm-l6")
    parser.add_argument("--losses", default="xent,logconf")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    losses = args.losses.split(",")
    sides = {
        "reference": with_pgr(reference_runs(args.reference, args.weak, args.strong), losses),
        "w2s": with_pgr(w2s_runs(args.w2s, args.weak, args.strong), losses),
    }
    columns = ["weak", "ceiling", *losses, *(f"pgr_{loss}" for loss in losses)]
    # where the w2s side ran (its stage folders), as `w2s report` writes it under its tables
    w2s_side = provenance(load_records(args.w2s, echo=lambda *a: None))
    text = "\n".join(
        [
            *table(sides, columns),
            "",
            f"w2s side: {w2s_side}",
            f"reference side: the run folders of openai/weak-to-strong's train_simple.py in {args.reference.name}/",
        ]
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
