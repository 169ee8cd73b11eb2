"""w2s's performance claims in one command: every ratio measured side by side, in this run.

    python benchmarks/run.py [--sst2 ../shared/data/sst2] [--rounds 3] [--json benchmarks/results.json]
                             [--compile]

Each row is the median over interleaved rounds (A, B, A, B, ...: a noisy machine slows both), with
the range of the single rounds:

- trainer: a w2s ground-truth stage (MiniLM-L6 + its mean-pooled head, 512 SST-2 sentences at most 64
  tokens, batch 32, 2 epochs, AdamW, cosine, the precision `auto` picks here) against Hugging Face's
  Trainer on the same model, token ids, batches, epochs, optimizer (both fused AdamW), schedule and
  precision, with its default sampler and with length grouping; examples per second of training (w2s: metrics.json's
  train_seconds; Trainer: its train() call);
- useful MFU of each: 6 x non-embedding parameters x real (unpadded) tokens / time, over a GEMM
  peak measured in this run at that precision;
- stage overhead: the share of a w2s stage's wall time outside training and prediction (loading,
  tokenizing, writing its folder and results.jsonl), for the MiniLM stage above and for the stages
  of a 15-stage sweep of tiny models;
- cached rerun: the 15-stage sweep run again, every stage cached, against its first run;
- linear probes: a linear-probe sweep on cached features against recomputing the frozen backbone
  every epoch (benchmarks/linear_probe_cache.py);
- with --compile: a w2s stage with `train.compile: true` against eager (compile time included).

The table is printed and written as JSON. Reads SST-2 from --sst2 (default ../shared/data/sst2 when
it exists), else uses the generated task.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # linear_probe_cache, beside this file
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.conftest's tiny models

import torch  # noqa: E402

from w2s import runner as run_mod  # noqa: E402
from w2s.precision import _cpu_model, auto_precision  # noqa: E402
from w2s.spec import validate_spec  # noqa: E402

DEFAULT_SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
QUIET = lambda *a, **k: None  # noqa: E731


# ---------------------------------------------------------------------------------------------
# the workloads


def minilm_spec(out: Path, sst2: Path | None, **train) -> dict:
    data = {"name": "synthetic", "n_train": 1024, "n_test": 256, "max_ctx": 64}
    if sst2 is not None:
        data = {
            "name": "sst2",
            "data_files": {"train": str(sst2 / "train.tsv"), "test": str(sst2 / "dev.tsv")},
            "column_names": ["sentence", "label"],
            "n_train": 1024,
            "n_test": 256,
            "max_ctx": 64,
        }
    return {
        "name": "trainer-bench",
        "output_dir": str(out),
        "datasets": data,
        "models": [{"name": "minilm-l6"}],
        "pairs": [["minilm-l6", "minilm-l6"]],
        # dropout on, as the Trainer trains (model.train()): the same work per step on both sides
        "train": {
            "epochs": 2,
            "lr": 5e-5,
            "batch_size": 32,
            "minibatch_size": 32,
            "optimizer": "adamw",
            "lr_schedule": "cosine",
            "dropout": True,
            **train,
        },
        "tracking": {"mode": "disabled"},
    }


class StageClock:
    """Wall time of every stage `w2s.runner` runs in this process (run_stage plus the results update)."""

    def __init__(self):
        self.walls: dict[str, float] = {}

    def __enter__(self):
        self.run_stage, self.update = run_mod.run_stage, run_mod.ResultsFile.update
        clock = self

        def timed_stage(stage, *args, **kwargs):
            start = time.perf_counter()
            clock.run_stage(stage, *args, **kwargs)
            clock.current = stage.key
            clock.walls[stage.key] = time.perf_counter() - start

        def timed_update(results):
            start = time.perf_counter()
            rows = clock.update(results)
            if getattr(clock, "current", None) in clock.walls:
                clock.walls[clock.current] += time.perf_counter() - start
                clock.current = None
            return rows

        run_mod.run_stage, run_mod.ResultsFile.update = timed_stage, timed_update
        return self

    def __exit__(self, *exc):
        run_mod.run_stage, run_mod.ResultsFile.update = self.run_stage, self.update


def overhead_shares(root: Path, walls: dict[str, float]) -> list[float]:
    """Per classifier stage: (wall - train_seconds - predict_seconds) / wall."""
    shares = []
    for folder in (root / "stages").iterdir():
        key = folder.name.rsplit("__", 1)[-1]
        metrics = json.loads((folder / "metrics.json").read_text())
        if key in walls and "train_seconds" in metrics and "predict_seconds" in metrics:
            wall = walls[key]
            shares.append((wall - metrics["train_seconds"] - metrics["predict_seconds"]) / wall)
    return shares


def w2s_stage(tmp: Path, sst2: Path | None, **train) -> dict:
    """One ground-truth MiniLM stage through w2s.runner: its metrics and wall time."""
    spec = validate_spec(minilm_spec(tmp, sst2, **train))
    with StageClock() as clock:
        run_mod.run_experiment(spec, only=["ground_truth/*"], echo=QUIET)
    root = tmp / spec.name
    folder = next((root / "stages").glob("ground_truth__*"))
    metrics = json.loads((folder / "metrics.json").read_text())
    return {
        **metrics,
        "wall": clock.walls[folder.name.rsplit("__", 1)[-1]],
        "overhead_share": overhead_shares(root, clock.walls)[0],
    }


def hf_trainer(tmp: Path, sst2: Path | None, grouped: bool) -> dict:
    """Hugging Face Trainer on w2s's model and token ids, with w2s's settings."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from w2s.batches import Encoded
    from w2s.data import load_splits
    from w2s.environment import plan_here
    from w2s.models import count_parameters, load_classifier, load_tokenizer
    from w2s.pipeline.inputs import LengthLog, encode, one_hot

    spec = validate_spec(minilm_spec(tmp, sst2))
    stage = next(s for s in plan_here(spec) if s.kind == "ground_truth")
    rows = load_splits(stage.dataset, stage.seed).train_a
    data: Encoded = encode(rows, stage, one_hot(rows, 2), LengthLog(), "train")[0]
    labels = data.labels.argmax(1)
    examples = [{"input_ids": ids, "labels": int(y)} for ids, y in zip(data.input_ids, labels)]

    class WithLoss(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, attention_mask, labels):
            logits = self.classifier(input_ids, attention_mask)
            return {"loss": torch.nn.functional.cross_entropy(logits.float(), labels), "logits": logits}

    torch.manual_seed(stage.seed)
    classifier = load_classifier(stage.model)
    settings = stage.settings
    args = TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=settings.minibatch_size,
        num_train_epochs=settings.epochs,
        learning_rate=settings.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=settings.weight_decay,
        max_grad_norm=0.0,  # its default optim: fused AdamW, as w2s
        bf16=settings.mixed_precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=stage.seed,
        train_sampling_strategy="group_by_length" if grouped else "random",
    )
    trainer = Trainer(
        model=WithLoss(classifier),
        args=args,
        train_dataset=examples,
        data_collator=DataCollatorWithPadding(load_tokenizer(stage.model)),
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its closing metrics dict: the table has them
        trainer.train()
    seconds = time.perf_counter() - start
    return {
        "train_seconds": seconds,
        "n_train": len(examples),
        "tokens": int(data.lengths().sum()),
        "lengths": data.lengths().tolist(),
        **count_parameters(classifier),
    }


def real_token_shares(lengths: list[int], batch: int = 32, epochs: int = 2, seed: int = 0) -> dict[str, float]:
    """Unpadded tokens / padded tokens of the training batches each trainer forms from the same token
    ids: w2s's (`optimizer_batches`, `micro_batches`), the Trainer's random and length-grouped samplers."""
    import numpy as np
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from w2s.train import micro_batches, optimizer_batches

    n, lengths_np = len(lengths), np.array(lengths)

    def share(batches) -> float:
        return sum(int(lengths_np[b].sum()) for b in batches) / sum(len(b) * int(lengths_np[b].max()) for b in batches)

    w2s = [
        m
        for b in optimizer_batches(lengths_np, batch, epochs, "grouped", np.random.default_rng(seed))
        for m in micro_batches(b, lengths_np, 1, 0, batch)
    ]
    generator = torch.Generator().manual_seed(seed)
    random_order = [i for _ in range(epochs) for i in torch.randperm(n, generator=generator).tolist()]
    grouped = [i for _ in range(epochs) for i in LengthGroupedSampler(batch, lengths=lengths, generator=generator)]
    cut = lambda order: [order[i : i + batch] for i in range(0, len(order), batch)]  # noqa: E731
    return {"w2s": share(w2s), "hf": share(cut(random_order)), "hf_grouped": share(cut(grouped))}


def gemm_peak(precision: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n matmul at the precision the trainers use, best of `repeats`."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def tiny_sweep(tmp: Path) -> dict:
    """The 15-stage tiny sweep, then its cached rerun; per-stage overhead shares of the first run."""
    from tests.conftest import tiny_spec

    spec = validate_spec(tiny_spec(tmp, name="grid", ladder=3, losses=("xent", "logconf")))
    with StageClock() as clock:
        first = _timed(lambda: run_mod.run_experiment(spec, echo=QUIET))
    rerun = _timed(lambda: run_mod.run_experiment(spec, echo=QUIET))
    return {"first": first, "rerun": rerun, "shares": overhead_shares(tmp / "grid", clock.walls)}


def probe_sweep(tmp: Path, sst2: Path | None) -> dict:
    import linear_probe_cache

    spec = validate_spec(linear_probe_cache.sweep_spec(tmp, sst2, n_train=1000, epochs=2))
    cached = _timed(lambda: run_mod.run_experiment(spec, echo=QUIET))
    baseline, _ = linear_probe_cache.recompute_baseline(spec)
    return {"cached": cached, "recompute": baseline}


# ---------------------------------------------------------------------------------------------
# rounds and the table


def median_range(values: list[float]) -> dict:
    return {"median": statistics.median(values), "low": min(values), "high": max(values), "rounds": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sst2", type=Path, default=DEFAULT_SST2 if (DEFAULT_SST2 / "train.tsv").is_file() else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--compile", action="store_true", help="also time train.compile: true against eager")
    args = parser.parse_args()
    precision = auto_precision()
    started = time.perf_counter()
    raw: dict[str, list] = {k: [] for k in ("w2s", "hf", "hf_grouped", "peak", "tiny", "probe", "compiled", "eager")}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds} ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            raw["peak"].append(gemm_peak(precision[0]))
            raw["w2s"].append(w2s_stage(tmp / "w2s", args.sst2))
            raw["hf"].append(hf_trainer(tmp / "hf", args.sst2, grouped=False))
            raw["hf_grouped"].append(hf_trainer(tmp / "hfg", args.sst2, grouped=True))
            raw["tiny"].append(tiny_sweep(tmp / "tiny"))
            raw["probe"].append(probe_sweep(tmp / "probe", args.sst2))
            if args.compile:
                raw["compiled"].append(w2s_stage(tmp / "compiled", args.sst2, compile=True))
                raw["eager"].append(w2s_stage(tmp / "eager", args.sst2, compile=False))
    report = summarise(raw, precision, args)
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"({report['seconds']:.0f} s; JSON in {args.json})")


def summarise(raw: dict, precision: tuple[str, str], args) -> dict:
    epochs = 2

    def speed(run: dict) -> float:
        return run["n_train"] * epochs / run["train_seconds"]

    def mfu(run: dict, peak: float) -> float:
        tokens = run.get("tokens") or run["tokens_train"]
        return 6 * run["non_embedding_parameters"] * tokens * epochs / run["train_seconds"] / peak

    for run in raw["w2s"] + raw["compiled"] + raw["eager"]:
        run["tokens"] = raw["hf"][0]["tokens"]  # the same token ids (w2s's half A)
    rows = {}
    rows["w2s examples/s"] = median_range([speed(r) for r in raw["w2s"]])
    for name in ("hf", "hf_grouped"):
        label = "Trainer, default sampler" if name == "hf" else "Trainer, group_by_length"
        rows[f"{label} examples/s"] = median_range([speed(r) for r in raw[name]])
        rows[f"w2s / {label}"] = median_range([speed(a) / speed(b) for a, b in zip(raw["w2s"], raw[name])])
    for name, label in (("w2s", "w2s"), ("hf", "Trainer, default sampler"), ("hf_grouped", "Trainer, group_by_length")):
        rows[f"useful MFU, {label}"] = median_range([mfu(r, p) for r, p in zip(raw[name], raw["peak"])])
    shares = real_token_shares(raw["hf"][0]["lengths"])
    for name, label in (("w2s", "w2s"), ("hf", "Trainer, default sampler"), ("hf_grouped", "Trainer, group_by_length")):
        rows[f"real-token share of batches, {label}"] = median_range([shares[name]])
    rows["GEMM peak GFLOP/s"] = median_range([p / 1e9 for p in raw["peak"]])
    rows["stage overhead share, MiniLM-L6 stage"] = median_range([r["overhead_share"] for r in raw["w2s"]])
    rows["stage overhead share, tiny sweep (median stage)"] = median_range(
        [statistics.median(t["shares"]) for t in raw["tiny"]]
    )
    rows["cached rerun: first run / rerun (15 stages)"] = median_range([t["first"] / t["rerun"] for t in raw["tiny"]])
    rows["linear probes: recompute / cached features"] = median_range(
        [p["recompute"] / p["cached"] for p in raw["probe"]]
    )
    if raw["compiled"]:
        rows["compile: eager / compiled stage wall time"] = median_range(
            [e["wall"] / c["wall"] for c, e in zip(raw["compiled"], raw["eager"])]
        )
        rows["compile: eager / compiled train_seconds"] = median_range(
            [e["train_seconds"] / c["train_seconds"] for c, e in zip(raw["compiled"], raw["eager"])]
        )
    native = precision[0] == "bf16"
    return {
        "machine": {
            "cpu": _cpu_model(),
            "precision": precision[0],
            "why": precision[1],
            "native_bf16": native,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "rounds": args.rounds,
        "data": "sst2" if args.sst2 else "synthetic",
        "rows": rows,
    }


def print_table(report: dict) -> None:
    m = report["machine"]
    print(
        f"\n{m['cpu']} ({m['threads']} threads), torch {m['torch']}, precision {m['precision']} ({m['why']})"
        + (f", {m['cuda']}" if m["cuda"] else "")
    )
    width = max(len(k) for k in report["rows"])
    print(f"{'':<{width}}  {'median':>9}  {'range':>19}")
    for name, row in report["rows"].items():
        percent = "share" in name or "MFU" in name
        fmt = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.2f}")
        print(f"{name:<{width}}  {fmt(row['median']):>9}  {fmt(row['low']):>9}-{fmt(row['high']):<9}")


if __name__ == "__main__":
    main()
