"""w2s's performance claims in one command: every ratio measured side by side, in this run.

    python benchmarks/run.py [--sst2 ../shared/data/sst2] [--rounds 3] [--json benchmarks/results.json]
                             [--model minilm-l6 [--random-init]] [--n-train 1024] [--only trainer]
                             [--ladder] [--compile] [--precision auto|no|bf16]

Each row is the median over interleaved rounds (A, B, A, B, ...: a noisy machine slows both), with
the range of the single rounds; an untimed stage first takes the process's one-time costs:

- trainer: a w2s ground-truth stage at w2s's defaults (MiniLM-L6, or --model, + its mean-pooled
  head, 512 SST-2 sentences at most 64 tokens, batch 32, 2 epochs, AdamW, cosine, dropout off,
  `attention: auto`, the precision `auto` picks here or --precision) against Hugging Face's Trainer
  on the same model, token ids, batches, epochs, optimizer (both fused AdamW), schedule and
  precision, with length grouping and every dropout probability 0; then both with dropout on (the
  Trainer also with its default sampler), and w2s's default against its own dropout-on stage;
  examples per second of training (w2s: the time in `train`; Trainer: its train() call); the same
  w2s stage with `attention: sdpa` and `math`;
- prediction: half B and test after training, at the eval batch size (64): the time in w2s's
  `predict` against `Trainer.predict` on the same rows and precision;
- useful MFU of each: 6 x non-embedding parameters x real (unpadded) tokens / time, over a GEMM
  peak measured in this run at that precision;
- achieved / achievable: the shape-matched bound (`matmul_bound`: the stage's own linear-layer and
  attention matmuls, forward and backward, at w2s's micro-batch shapes, timed alone) over the
  stage's training time; then torch.profiler's op table of one stage of each at the defaults
  (dropout off), where the rest goes;
- stage overhead: the share of a w2s stage's wall time outside training and prediction (loading,
  tokenizing, writing its folder and results.jsonl), for the MiniLM stage above and for the stages
  of a 15-stage sweep of tiny models, and for that sweep's whole wall time;
- cached rerun: the 15-stage sweep run again, every stage cached, against its first run;
- linear probes: a linear-probe sweep on cached features against recomputing the frozen backbone
  every epoch (benchmarks/linear_probe_cache.py);
- with --ladder: experiments/sst2_ladder.yaml reduced to one seed, end to end, and its cached rerun;
- with --compile: a w2s stage with `train.compile: true` against eager (compile time included).

`--only trainer` keeps the trainer rows alone (benchmarks/gpu.sh). The table is printed and written
as JSON. Reads SST-2 from --sst2 (default ../shared/data/sst2 when it exists), else uses the
generated task.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
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

from w2s.pipeline import runner as run_mod  # noqa: E402
from w2s.spec import validate_spec  # noqa: E402
from w2s.training.precision import _cpu_model, auto_precision  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SST2 = ROOT.parent / "shared" / "data" / "sst2"
QUIET = lambda *a, **k: None  # noqa: E731


# ---------------------------------------------------------------------------------------------
# the workloads


WORKLOAD = {"model": "minilm-l6", "random_init": False, "n_train": 1024, "precision": "auto"}  # the command line's


def minilm_spec(out: Path, sst2: Path | None, **train) -> dict:
    """The trainer workload: WORKLOAD's model (MiniLM-L6 unless --model says otherwise) on n_train
    examples, with w2s's defaults (dropout off, `attention: auto`) unless `train` says otherwise."""
    n_train = WORKLOAD["n_train"]
    data = {"name": "synthetic", "n_train": n_train, "n_test": 256, "max_ctx": 64}
    if sst2 is not None:
        data = {
            "name": "sst2",
            "data_files": {"train": str(sst2 / "train.tsv"), "test": str(sst2 / "dev.tsv")},
            "column_names": ["text", "label"],
            "n_train": n_train,
            "n_test": 256,
            "max_ctx": 64,
        }
    model = {"name": WORKLOAD["model"], "label": "bench", "random_init": WORKLOAD["random_init"]}
    return {
        "name": "trainer-bench",
        "output_dir": str(out),
        "datasets": data,
        "models": [model],
        "pairs": [["bench", "bench"]],
        "train": {
            "epochs": 2,
            "lr": 5e-5,
            "batch_size": 32,
            "minibatch_size": 32,
            "optimizer": "adamw",
            "lr_schedule": "cosine",
            "mixed_precision": WORKLOAD["precision"],
            **train,
        },
        "tracking": {"mode": "disabled"},
    }


class StageClock:
    """Wall time of every stage `w2s.pipeline.runner` runs in this process (run_stage plus the results update),
    and, within it, the time in `train` and `predict` (timed here: metrics.json rounds them to 10 ms,
    which is most of a tiny stage)."""

    def __init__(self):
        self.walls: dict[str, float] = {}
        self.inside: dict[str, float] = {}  # key -> seconds in train() and predict()
        self.training: dict[str, float] = {}  # key -> seconds in train()
        self.predicting: dict[str, float] = {}  # key -> seconds in predict()
        self.current = None

    def __enter__(self):
        from w2s.pipeline import stages

        self.saved = run_mod.run_stage, run_mod.ResultsFile.update, stages.train, stages.predict
        run_stage, update, train, predict = self.saved
        clock = self

        def timed_stage(stage, *args, **kwargs):
            clock.current, clock.inside[stage.key] = stage.key, 0.0
            start = time.perf_counter()
            run_stage(stage, *args, **kwargs)
            clock.walls[stage.key] = time.perf_counter() - start

        def timed_update(results):
            start = time.perf_counter()
            rows = update(results)
            if clock.current in clock.walls:
                clock.walls[clock.current] += time.perf_counter() - start
                clock.current = None
            return rows

        def inside(fn):
            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    if clock.current is not None:
                        seconds = time.perf_counter() - start
                        clock.inside[clock.current] += seconds
                        into = clock.training if fn is train else clock.predicting
                        into[clock.current] = into.get(clock.current, 0.0) + seconds

            return timed

        run_mod.run_stage, run_mod.ResultsFile.update = timed_stage, timed_update
        stages.train, stages.predict = inside(train), inside(predict)
        return self

    def __exit__(self, *exc):
        from w2s.pipeline import stages

        run_mod.run_stage, run_mod.ResultsFile.update, stages.train, stages.predict = self.saved

    def overhead_shares(self) -> list[float]:
        """Per stage that trained: (wall - time in train and predict) / wall."""
        return [(wall - self.inside[key]) / wall for key, wall in self.walls.items() if self.inside.get(key)]


def w2s_stage(tmp: Path, sst2: Path | None, **train) -> dict:
    """One ground-truth MiniLM stage through w2s.pipeline.runner: its metrics, wall time, and the
    seconds it trained and predicted (half B and test)."""
    spec = validate_spec(minilm_spec(tmp, sst2, **train))
    with StageClock() as clock:
        run_mod.run_experiment(spec, only=["ground_truth/*"], echo=QUIET)
    root = tmp / spec.name
    folder = next((root / "stages").glob("ground_truth__*"))
    metrics = json.loads((folder / "metrics.json").read_text())
    key = folder.name.rsplit("__", 1)[-1]
    return {
        **metrics,
        "settings": json.loads((folder / "config.json").read_text())["settings"],
        "train_seconds": clock.training[key],  # unrounded
        "predict_seconds": clock.predicting[key],
        "wall": clock.walls[key],
        "overhead_share": clock.overhead_shares()[0],
    }


def bench_stage(tmp: Path, sst2: Path | None):
    """The ground-truth stage the trainer workload plans: its model, data and settings."""
    from w2s.experiment.plan import plan_run

    return next(s for s in plan_run(validate_spec(minilm_spec(tmp, sst2))).stages if s.kind == "ground_truth")


def w2s_micro_batches(lengths: list[int], stage) -> list[list[int]]:
    """The micro-batches (example indices) `stage` trains on, as w2s.training.loop forms them."""
    import numpy as np

    from w2s.training.loop import micro_batches, optimizer_batches

    lengths_np, s = np.array(lengths), stage.settings
    rng = np.random.default_rng(stage.training_seed)
    return [
        m
        for b in optimizer_batches(lengths_np, s.batch_size, s.epochs, s.data_order, rng)
        for m in micro_batches(b, lengths_np, 1, 0, s.minibatch_size)
    ]


def hf_trainer(tmp: Path, sst2: Path | None, grouped: bool, dropout: bool = True, profiled: bool = False) -> dict:
    """Hugging Face Trainer on w2s's model and token ids, with w2s's settings: it trains (dropout on,
    as it trains a model, or off: every dropout probability 0), then predicts half B and test with
    `Trainer.predict` at w2s's eval batch size, as a w2s stage does (`profiled`: its training's op
    profile too, under "ops")."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from w2s.data import load_splits
    from w2s.models.loading import count_parameters, load_classifier, load_tokenizer
    from w2s.pipeline.inputs import LengthLog, encode, one_hot
    from w2s.training.batches import Encoded

    stage = bench_stage(tmp, sst2)
    splits = load_splits(stage.dataset, stage.seed)

    def examples_of(rows: list[dict], split: str) -> tuple[list[dict], Encoded]:
        data: Encoded = encode(rows, stage, one_hot(rows, 2), LengthLog(), split)[0]
        return [{"input_ids": ids, "labels": int(y)} for ids, y in zip(data.input_ids, data.labels.argmax(1))], data

    examples, data = examples_of(splits.train_a, "train")
    to_predict = examples_of(splits.train_b, "train_b")[0] + examples_of(splits.test, "test")[0]

    class WithLoss(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, attention_mask, labels):
            logits = self.classifier(input_ids, attention_mask)
            return {"loss": torch.nn.functional.cross_entropy(logits.float(), labels), "logits": logits}

    torch.manual_seed(stage.seed)
    classifier = load_classifier(stage.model)
    if not dropout:
        for module in classifier.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0  # BERT's attention reads its dropout's p too
    settings = stage.settings
    args = TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=settings.minibatch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
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
    ops = OpProfile() if profiled else contextlib.nullcontext()
    start = time.perf_counter()
    with ops, contextlib.redirect_stdout(io.StringIO()):  # its closing metrics dict: the table has them
        trainer.train()
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    trainer.predict(to_predict)
    predict_seconds = time.perf_counter() - start
    return {
        **({"ops": ops} if profiled else {}),
        "train_seconds": seconds,
        "predict_seconds": predict_seconds,
        "n_predict": len(to_predict),
        "n_train": len(examples),
        "tokens": int(data.lengths().sum()),
        "lengths": data.lengths().tolist(),
        **count_parameters(classifier),
    }


def real_token_shares(
    lengths: list[int], w2s: list[list[int]], batch: int = 32, epochs: int = 2, seed: int = 0
) -> dict[str, float]:
    """Unpadded tokens / padded tokens of the training batches each trainer forms from the same token
    ids: w2s's (`w2s_micro_batches`), the Trainer's random and length-grouped samplers."""
    import numpy as np
    from transformers.trainer_pt_utils import LengthGroupedSampler

    n, lengths_np = len(lengths), np.array(lengths)

    def share(batches) -> float:
        return sum(int(lengths_np[b].sum()) for b in batches) / sum(len(b) * int(lengths_np[b].max()) for b in batches)

    generator = torch.Generator().manual_seed(seed)
    random_order = [i for _ in range(epochs) for i in torch.randperm(n, generator=generator).tolist()]
    grouped = [i for _ in range(epochs) for i in LengthGroupedSampler(batch, lengths=lengths, generator=generator)]
    cut = lambda order: [order[i : i + batch] for i in range(0, len(order), batch)]  # noqa: E731
    return {"w2s": share(w2s), "hf": share(cut(random_order)), "hf_grouped": share(cut(grouped))}


def gemm_peak(precision: str, n: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of an n x n matmul at the precision the trainers use, best of `repeats` (n: 2048 on a
    CPU, 8192 on a GPU, which a smaller one leaves partly idle)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = n or (8192 if device == "cuda" else 2048)
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def matmul_bound(stage, batches: list[list[int]], lengths: list[int], precision: str) -> dict:
    """The shape-matched bound: the seconds the model's own matmuls take in isolation at w2s's
    micro-batch shapes, forward and backward, at the run's precision.

    Per micro-batch of b rows padded to L tokens (T = b L): every trainable linear layer's x W^T
    (T x in x out), and its two gradients dY W and dY^T X; attention's Q K^T and P V per head (b h
    batched (L x d) products) and their four gradients. Each distinct shape is timed (best of 3)
    and weighted by how often the stage meets it. What this leaves out (embeddings, norms,
    activations, softmax, the optimizer) is what makes it a bound."""
    from w2s.models.loading import load_classifier

    model = load_classifier(stage.model)
    config = model.backbone.config
    linears = collections.Counter(
        (m.in_features, m.out_features)
        for m in model.backbone.modules()
        if isinstance(m, torch.nn.Linear) and m.weight.requires_grad
    )
    heads, layers = config.num_attention_heads, config.num_hidden_layers
    head_dim = config.hidden_size // heads
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    randn = lambda *shape: torch.randn(*shape, dtype=dtype, device=device)  # noqa: E731

    def best(fn) -> float:
        fn()
        return min(_timed(fn) for _ in range(3))

    shapes = collections.Counter((len(m), max(lengths[i] for i in m)) for m in batches)  # (rows, padded length)
    seconds, flops = 0.0, 0.0
    for (rows, length), count in shapes.items():
        tokens = rows * length
        per_batch = 0.0
        for (fan_in, fan_out), n in linears.items():
            x, w, dy = randn(tokens, fan_in), randn(fan_out, fan_in), randn(tokens, fan_out)
            per_batch += n * (best(lambda: x @ w.T) + best(lambda: dy @ w) + best(lambda: dy.T @ x))  # noqa: B023
            flops += count * n * 3 * 2 * tokens * fan_in * fan_out
        q, k, v = (randn(rows * heads, length, head_dim) for _ in range(3))
        p, dp = randn(rows * heads, length, length), randn(rows * heads, length, length)
        do = randn(rows * heads, length, head_dim)
        attention = [
            lambda: q @ k.transpose(1, 2),  # scores   # noqa: B023
            lambda: p @ v,  # output                   # noqa: B023
            lambda: dp @ k,  # dQ                      # noqa: B023
            lambda: dp.transpose(1, 2) @ q,  # dK      # noqa: B023
            lambda: do @ v.transpose(1, 2),  # dP      # noqa: B023
            lambda: p.transpose(1, 2) @ do,  # dV      # noqa: B023
        ]
        per_batch += layers * sum(best(fn) for fn in attention)
        flops += count * layers * 6 * 2 * rows * heads * length * length * head_dim
        seconds += count * per_batch
    return {"seconds": seconds, "flops": flops, "shapes": len(shapes), "micro_batches": sum(shapes.values())}


class OpProfile:
    """torch.profiler's self time per op over what runs inside (`with OpProfile() as ops:`)."""

    def __enter__(self):
        from torch.profiler import ProfilerActivity, profile

        cuda = torch.cuda.is_available()
        self.attr = "self_device_time_total" if cuda else "self_cpu_time_total"
        self.profiler = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))
        self.profiler.__enter__()
        return self

    def __exit__(self, *exc):
        self.profiler.__exit__(*exc)
        self.ops = {e.key: (e.count, getattr(e, self.attr) / 1e6) for e in self.profiler.key_averages()}


def op_profiles(tmp: Path, sst2: Path | None, top: int = 14) -> list[dict]:
    """Op by op, the training of a w2s stage at its defaults against the length-grouped Trainer's at
    equal settings (dropout off; w2s's attention kernel as `auto` resolves it, the Trainer's as
    PyTorch picks): where the time goes that the matmul bound does not count, and which ops the
    speed ratio comes from."""
    from w2s.pipeline import stages

    train, holder = stages.train, {}

    def profiled_train(*args, **kwargs):
        with OpProfile() as holder["w2s"]:
            return train(*args, **kwargs)

    stages.train = profiled_train
    try:
        run_mod.run_experiment(validate_spec(minilm_spec(tmp / "w2s", sst2)), only=["ground_truth/*"], echo=QUIET)
    finally:
        stages.train = train
    holder["hf"] = hf_trainer(tmp / "hf", sst2, grouped=True, dropout=False, profiled=True)["ops"]
    w2s, hf = holder["w2s"].ops, holder["hf"].ops
    total_w2s, total_hf = sum(s for _, s in w2s.values()), sum(s for _, s in hf.values())
    names = sorted(set(w2s) | set(hf), key=lambda k: -max(w2s.get(k, (0, 0))[1], hf.get(k, (0, 0))[1]))[:top]
    rows = [
        {
            "op": name,
            "w2s_calls": w2s.get(name, (0, 0.0))[0],
            "w2s_seconds": w2s.get(name, (0, 0.0))[1],
            "trainer_calls": hf.get(name, (0, 0.0))[0],
            "trainer_seconds": hf.get(name, (0, 0.0))[1],
        }
        for name in names
    ]
    shown_w2s, shown_hf = sum(r["w2s_seconds"] for r in rows), sum(r["trainer_seconds"] for r in rows)
    rows.append(
        {"op": "(all other ops)", "w2s_calls": 0, "w2s_seconds": total_w2s - shown_w2s, "trainer_calls": 0,
         "trainer_seconds": total_hf - shown_hf}
    )  # fmt: skip
    rows.append({"op": "(total)", "w2s_calls": 0, "w2s_seconds": total_w2s, "trainer_calls": 0,
                 "trainer_seconds": total_hf})  # fmt: skip
    return rows


def tiny_sweep(tmp: Path) -> dict:
    """The 15-stage tiny sweep, then its cached rerun; per-stage overhead shares of the first run."""
    from tests.conftest import tiny_spec

    spec = validate_spec(tiny_spec(tmp, name="grid", ladder=3, losses=("xent", "logconf")))
    with StageClock() as clock:
        first = _timed(lambda: run_mod.run_experiment(spec, echo=QUIET))
    rerun = _timed(lambda: run_mod.run_experiment(spec, echo=QUIET))
    outside = 1 - sum(clock.inside.values()) / first  # planning, checks, claiming stages too
    return {"first": first, "rerun": rerun, "shares": clock.overhead_shares(), "sweep_share": outside}


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


def ladder_sweep(tmp: Path, sst2: Path) -> dict:
    """experiments/sst2_ladder.yaml with one seed, end to end through `w2s.pipeline.runner`, then rerun (cached)."""
    from w2s.spec import load_spec

    if sst2.name != "sst2":
        raise SystemExit(f"--ladder reads SST-2 through W2S_DATA_DIR, which needs a folder named sst2: {sst2}")
    os.environ["W2S_DATA_DIR"] = str(sst2.parent)  # the local-data switch (docs/datasets_and_models.md)
    overrides = [f"output_dir={tmp}", "seeds=[0]", "tracking.mode=disabled"]
    spec = load_spec(ROOT / "experiments" / "sst2_ladder.yaml", overrides)
    first = _timed(lambda: run_mod.run_experiment(spec, echo=QUIET))
    rerun = _timed(lambda: run_mod.run_experiment(spec, echo=QUIET))
    stages = len(list((tmp / spec.name / "stages").iterdir()))
    return {"first": first, "rerun": rerun, "stages": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # SST-2 is read through `datasets`; without it (the GPU pack does not carry it) the generated task
    has_sst2 = (DEFAULT_SST2 / "train.tsv").is_file() and importlib.util.find_spec("datasets") is not None
    parser.add_argument("--sst2", type=Path, default=DEFAULT_SST2 if has_sst2 else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument(
        "--model", default="minilm-l6", help="the trainer workload's model: a spec model name or folder"
    )
    parser.add_argument("--random-init", action="store_true", help="that model with random weights (a config folder)")
    parser.add_argument("--n-train", type=int, default=1024, help="the trainer workload's pool (half A trains)")
    parser.add_argument("--only", choices=["trainer"], help="trainer: only the w2s-against-Trainer rows")
    parser.add_argument("--ladder", action="store_true", help="also time the SST-2 ladder sweep (1 seed) end to end")
    parser.add_argument("--compile", action="store_true", help="also time train.compile: true against eager")
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "no", "bf16"], help="the workload's train.mixed_precision"
    )
    args = parser.parse_args()
    WORKLOAD.update(model=args.model, random_init=args.random_init, n_train=args.n_train, precision=args.precision)
    if args.ladder and args.sst2 is None:
        parser.error("--ladder: needs SST-2 (--sst2 FOLDER with train.tsv, dev.tsv and test.tsv)")
    precision = auto_precision() if args.precision == "auto" else (args.precision, "--precision")
    started = time.perf_counter()
    names = ("w2s", "w2s_dropout", "w2s_sdpa", "w2s_math", "hf", "hf_grouped", "hf_no_dropout", "peak", "tiny", "probe")
    names += ("compiled", "eager")
    raw: dict = {k: [] for k in names}
    with tempfile.TemporaryDirectory() as tmp:  # untimed: the first stage of a process pays one-time costs
        print("warm-up stage ...", flush=True)
        w2s_stage(Path(tmp), args.sst2)
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds} ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            raw["peak"].append(gemm_peak(precision[0]))
            raw["w2s"].append(w2s_stage(tmp / "w2s", args.sst2))  # the defaults: dropout off, attention auto
            raw["hf_no_dropout"].append(hf_trainer(tmp / "hfn", args.sst2, grouped=True, dropout=False))
            raw["w2s_dropout"].append(w2s_stage(tmp / "w2s-dropout", args.sst2, dropout=True))
            raw["hf"].append(hf_trainer(tmp / "hf", args.sst2, grouped=False))
            raw["hf_grouped"].append(hf_trainer(tmp / "hfg", args.sst2, grouped=True))
            raw["w2s_sdpa"].append(w2s_stage(tmp / "w2s-sdpa", args.sst2, attention="sdpa"))
            raw["w2s_math"].append(w2s_stage(tmp / "w2s-math", args.sst2, attention="math"))
            if args.only is None:
                raw["tiny"].append(tiny_sweep(tmp / "tiny"))
                raw["probe"].append(probe_sweep(tmp / "probe", args.sst2))
            if args.compile:
                raw["compiled"].append(w2s_stage(tmp / "compiled", args.sst2, compile=True))
                raw["eager"].append(w2s_stage(tmp / "eager", args.sst2, compile=False))
    print("the shape-matched bound, the op profile ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage, lengths = bench_stage(Path(tmp), args.sst2), raw["hf"][0]["lengths"]
        raw["w2s_batches"] = w2s_micro_batches(lengths, stage)
        raw["bound"] = matmul_bound(stage, raw["w2s_batches"], lengths, precision[0])
        raw["profile"] = op_profiles(Path(tmp), args.sst2)
    if args.ladder:
        print("the SST-2 ladder sweep, 1 seed, and its cached rerun ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            raw["ladder"] = ladder_sweep(Path(tmp), args.sst2)
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

    w2s_runs = ("w2s", "w2s_dropout", "w2s_sdpa", "w2s_math", "compiled", "eager")
    for run in (r for name in w2s_runs for r in raw[name]):
        run["tokens"] = raw["hf"][0]["tokens"]  # the same token ids (w2s's half A)
    ratio = lambda a, b: median_range([speed(x) / speed(y) for x, y in zip(raw[a], raw[b])])  # noqa: E731
    kernel = raw["w2s"][0]["settings"]["attention"]  # what auto resolved to here
    rows = {}
    # the four rows: each precision, dropout off (w2s's defaults) and on, equal settings each
    rows[f"w2s examples/s, defaults (dropout off, attention auto: {kernel})"] = median_range(
        [speed(r) for r in raw["w2s"]]
    )
    rows["Trainer, group_by_length, dropout off examples/s"] = median_range([speed(r) for r in raw["hf_no_dropout"]])
    rows["w2s defaults / Trainer, group_by_length, dropout off"] = ratio("w2s", "hf_no_dropout")
    rows["w2s examples/s, dropout on"] = median_range([speed(r) for r in raw["w2s_dropout"]])
    for name in ("hf_grouped", "hf"):
        label = "Trainer, default sampler" if name == "hf" else "Trainer, group_by_length"
        rows[f"{label}, dropout on examples/s"] = median_range([speed(r) for r in raw[name]])
        rows[f"w2s dropout on / {label}, dropout on"] = ratio("w2s_dropout", name)
    rows["w2s defaults / w2s dropout on"] = ratio("w2s", "w2s_dropout")
    rows["w2s dropout off: attention math / sdpa"] = ratio("w2s_math", "w2s_sdpa")
    # prediction: half B and test after training, at the eval batch size (w2s: both splits' predict)
    predicted = raw["hf"][0]["n_predict"]
    rows["prediction examples/s, w2s (half B + test)"] = median_range(
        [predicted / r["predict_seconds"] for r in raw["w2s"]]
    )
    rows["prediction examples/s, Trainer.predict"] = median_range(
        [predicted / r["predict_seconds"] for r in raw["hf_no_dropout"]]
    )
    rows["prediction: w2s / Trainer.predict"] = median_range(
        [b["predict_seconds"] / a["predict_seconds"] for a, b in zip(raw["w2s"], raw["hf_no_dropout"])]
    )
    for name, label in (("w2s", "w2s defaults"), ("hf_no_dropout", "Trainer, group_by_length, dropout off")):
        rows[f"useful MFU, {label}"] = median_range([mfu(r, p) for r, p in zip(raw[name], raw["peak"])])
    bound = raw["bound"]
    rows["matmul bound: seconds of the stage's own matmuls"] = median_range([bound["seconds"]])
    for name, label in (
        ("w2s", "w2s defaults"),
        ("w2s_dropout", "w2s dropout on"),
        ("w2s_sdpa", "w2s dropout off, attention: sdpa"),
        ("w2s_math", "w2s dropout off, attention: math"),
    ):
        rows[f"achieved / achievable (matmul bound / train time), {label}"] = median_range(
            [bound["seconds"] / r["train_seconds"] for r in raw[name]]
        )
    rows["matmul GFLOP/s at the stage's shapes"] = median_range([bound["flops"] / bound["seconds"] / 1e9])
    shares = real_token_shares(raw["hf"][0]["lengths"], raw["w2s_batches"])
    for name, label in (("w2s", "w2s"), ("hf", "Trainer, default sampler"), ("hf_grouped", "Trainer, group_by_length")):
        rows[f"real-token share of batches, {label}"] = median_range([shares[name]])
    rows["GEMM peak GFLOP/s"] = median_range([p / 1e9 for p in raw["peak"]])
    rows["stage overhead share, MiniLM-L6 stage"] = median_range([r["overhead_share"] for r in raw["w2s"]])
    if raw["tiny"]:
        rows["stage overhead share, tiny sweep (median stage)"] = median_range(
            [statistics.median(t["shares"]) for t in raw["tiny"]]
        )
        rows["overhead share of the whole tiny sweep (planning, checks, claims included)"] = median_range(
            [t["sweep_share"] for t in raw["tiny"]]
        )
        rows["cached rerun: first run / rerun (15 stages)"] = median_range(
            [t["first"] / t["rerun"] for t in raw["tiny"]]
        )
    if raw["probe"]:
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
    if "ladder" in raw:
        ladder = raw["ladder"]
        rows[f"SST-2 ladder sweep, 1 seed ({ladder['stages']} stages): first run, seconds"] = median_range(
            [ladder["first"]]
        )
        rows["SST-2 ladder sweep: cached rerun, seconds"] = median_range([ladder["rerun"]])
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
        "workload": dict(WORKLOAD),
        "rounds": args.rounds,
        "data": "sst2" if args.sst2 else "synthetic",
        "rows": rows,
        "bound": bound,
        "profile": raw["profile"],
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
    print("\nop by op, one stage's training (torch.profiler, self time; w2s's defaults, equal settings):")
    print(f"  {'op':<36} {'w2s calls':>9} {'w2s s':>8} {'Trainer calls':>13} {'Trainer s':>9} {'Trainer / w2s':>13}")
    for op in report["profile"]:
        ratio = op["trainer_seconds"] / op["w2s_seconds"] if op["w2s_seconds"] else float("nan")
        print(
            f"  {op['op']:<36} {op['w2s_calls']:>9} {op['w2s_seconds']:>8.2f} {op['trainer_calls']:>13}"
            f" {op['trainer_seconds']:>9.2f} {ratio:>13.2f}"
        )


if __name__ == "__main__":
    main()
