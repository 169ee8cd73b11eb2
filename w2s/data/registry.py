"""The dataset registry: each task's source (a hub path, or a loader that makes or reads the rows
itself), splits, columns, number of classes and formatter (source row -> {"txt", "hard_label"}, the
label a class index 0..classes-1). Reading goes by the entry, never by a dataset's name
(w2s/data/files.py, splits.py).

A table that imports nothing of w2s: the spec layer checks names against it, and loaders are named
as "module:function" (resolved when rows are read), so neither torch nor an import cycle comes in."""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# source row + rng -> {"txt", "hard_label"} and, where the text ends in what decides the label,
# "decisive": that suffix of "txt" (kept whole when the text is shortened to max_ctx)
Formatter = Callable[[dict, random.Random], dict]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    formatter: Formatter | None  # source row + rng -> {"txt", "hard_label"}; None: built from the spec (local)
    hub: str | None = None  # Hugging Face hub path; None: only local files or generated
    config: str | None = None
    pool: str = "train"  # hub split used as the training pool
    # hub split(s) used as the test set (several: concatenated in order); None: hold out test_frac of the pool
    test: str | tuple[str, ...] | None = "test"
    columns: tuple[str, ...] = ()  # source columns the formatter reads (checked up front for a clear error)
    label_column: str | None = None  # a source column of class indices (checked over the whole split)
    classes: int = 2  # labels are 0..classes-1; heads have this many outputs
    modality: str = "text"  # "image": rows carry an image instead of a text (w2s/vision/datasets.py)
    # "module:function", called as function(spec, seed) -> (pool rows, test rows; [] for none): for
    # generated and image datasets, which read no hub and no data_files. Image loaders ignore the seed
    # (the rows are fixed; splitting is seeded) and run once per process.
    loader: str | None = None
    truncate: str = "right"  # which side of a too-long text (before its decisive part) is cut by default
    data_dir: str | None = None  # read from the user's own copy (DataSpec.data_dir), which holds this
    # a local copy's files in $W2S_DATA_DIR/<name>/ per split (`local_copy`), and the column names of
    # header-less csv/tsv files
    local_files: dict[str, str | tuple[str, ...]] | None = None
    local_columns: tuple[str, ...] | None = None

    @property
    def test_splits(self) -> tuple[str, ...]:
        return self.test if isinstance(self.test, tuple) else (self.test,) if self.test else ()


DATASETS: dict[str, DatasetInfo] = {}


def register(name: str, **info) -> Callable[[Formatter], Formatter]:
    """Decorator: register `formatter` under `name`, described by its docstring's first line (`w2s list
    datasets`); keyword arguments are DatasetInfo fields."""

    def wrap(formatter: Formatter) -> Formatter:
        description = formatter.__doc__.strip().splitlines()[0]
        DATASETS[name] = DatasetInfo(name=name, description=description, formatter=formatter, **info)
        return formatter

    return wrap


def load_rows(info: DatasetInfo, spec, seed: int) -> tuple[list, list]:
    """Call the entry's loader (imported only now: image loaders need torch and PIL)."""
    module, _, function = info.loader.partition(":")
    return getattr(importlib.import_module(module), function)(spec, seed)


DATA_DIR = "W2S_DATA_DIR"  # a folder of local copies: $W2S_DATA_DIR/<dataset>/, read instead of the hub


def local_copy(name: str) -> dict | None:
    """The spec fields that read dataset `name` from its local copy, $W2S_DATA_DIR/<name>/ laid out as
    its entry's `local_files` say (data_files, with their column_names), or None: no W2S_DATA_DIR, no
    such folder, or no layout for the dataset. A missing file there is named when the data is read."""
    root, info = os.environ.get(DATA_DIR), DATASETS.get(name) if isinstance(name, str) else None
    if not root or info is None or info.local_files is None or not (Path(root).expanduser() / name).is_dir():
        return None
    folder = Path(root).expanduser() / name
    files = {
        split: [str(folder / f) for f in names] if isinstance(names, tuple) else str(folder / names)
        for split, names in info.local_files.items()
    }
    return {"data_files": files, **({"column_names": list(info.local_columns)} if info.local_columns else {})}


def local_copy_notes(datasets) -> list[str]:
    """A line for each of a spec's datasets that reads its local copy through W2S_DATA_DIR."""
    notes = []
    for i, dataset in enumerate(datasets):
        found = local_copy(dataset.name)
        if found is not None and dataset.data_files == found["data_files"]:
            notes.append(
                f"datasets.{i} ({dataset.label}): the local copy in {Path(os.environ[DATA_DIR]) / dataset.name}"
            )
    return notes


def describe_datasets() -> list[tuple[str, str]]:
    """(name, its classes, where it comes from and the columns it reads, and its description) for
    `w2s list datasets`."""
    rows = []
    for name, info in DATASETS.items():
        if info.hub:
            source = f"hub {info.hub} ({info.pool}; test: {' + '.join(info.test_splits) or f'a share of {info.pool}'})"
        elif info.loader:
            source = "your copy (data_dir)" if info.data_dir else "generated offline"
        else:
            source = "your files (data_files)"
        columns = f"; columns {', '.join(info.columns)}" if info.columns else ""
        rows.append((name, f"{info.classes} classes; {source}{columns}. {info.description}"))
    return rows


# ---------------------------------------------------------------------------------------------
# formatters: the same rules as OpenAI's weak-to-strong reference code. The rng is per row
# (seeded from the experiment seed, split and row index), so a row's random label does not
# depend on which other rows were sampled or on their order.


@register(
    "sciq",
    hub="allenai/sciq",
    columns=("question", "correct_answer", "distractor1", "distractor2", "distractor3"),
)
def format_sciq(row: dict, rng: random.Random) -> dict:
    """SciQ science questions: is the shown answer the correct one (or a distractor)?"""
    label = int(rng.random() < 0.5)
    distractors = [row["distractor1"], row["distractor2"], row["distractor3"]]
    answer = row["correct_answer"] if label else rng.choice(distractors)
    decisive = f" A: {answer}"
    return {"txt": f"Q: {row['question']}{decisive}", "hard_label": label, "decisive": decisive}


@register(
    "boolq",
    hub="google/boolq",
    test="validation",
    columns=("passage", "question", "answer"),
    label_column="answer",
)
def format_boolq(row: dict, rng: random.Random) -> dict:
    """BoolQ: yes/no questions about a Wikipedia passage."""
    decisive = f"\nQuestion: {row['question']}"
    return {"txt": f"Passage: {row['passage']}{decisive}", "hard_label": int(row["answer"]), "decisive": decisive}


@register(
    "cosmos_qa",
    hub="allenai/cosmos_qa",
    test="validation",
    columns=("context", "question", "answer0", "answer1", "answer2", "answer3", "label"),
)
def format_cosmos_qa(row: dict, rng: random.Random) -> dict:
    """Cosmos QA commonsense reading comprehension: is the shown answer the right one?"""
    candidates = [row[f"answer{i}"] for i in range(4)]
    true_answer = candidates[int(row["label"])]
    # "None of the above" as the right answer would make a shown wrong answer "correct": always a negative
    label = 0 if "None of the above choices ." in true_answer else int(rng.random() < 0.5)
    answer = true_answer if label else rng.choice([a for a in candidates if a != true_answer])
    decisive = f"\nQuestion: {row['question']}\nAnswer: {answer}"
    return {"txt": f"Context: {row['context']}{decisive}", "hard_label": label, "decisive": decisive}


@register(
    "amazon_polarity",
    hub="fancyzhx/amazon_polarity",
    columns=("title", "content", "label"),
    label_column="label",
)
def format_amazon_polarity(row: dict, rng: random.Random) -> dict:
    """Amazon review polarity: is the review (title + text) positive?"""
    return {"txt": f"{row['title']} {row['content']}", "hard_label": int(row["label"])}


@register(
    "anthropic_hh",
    hub="Anthropic/hh-rlhf",
    columns=("chosen", "rejected"),
    truncate="left",
)
def format_anthropic_hh(row: dict, rng: random.Random) -> dict:
    """Anthropic HH-RLHF: is this dialogue the preferred (chosen) one?"""
    # chosen and rejected share the history and differ in the last assistant turn: that turn decides,
    # and a long history is cut from its start (truncate: left), keeping the turns nearest the answer
    label = int(rng.random() < 0.5)
    text = row["chosen"] if label else row["rejected"]
    last_turn = text.rfind("\n\nAssistant:")
    return {"txt": text, "hard_label": label, "decisive": text[last_turn:] if last_turn >= 0 else ""}


@register(
    "sst2",
    hub="SetFit/sst2",
    test=("validation", "test"),
    columns=("text", "label"),
    label_column="label",
    local_files={"train": "train.tsv", "test": ("dev.tsv", "test.tsv")},
    local_columns=("text", "label"),
)
def format_sst2(row: dict, rng: random.Random) -> dict:
    """SST-2 movie review sentences (train 6,920; test: validation 872 + test 1,821): positive or negative?"""
    return {"txt": row["text"], "hard_label": int(row["label"])}


@register(
    "synthetic",
    columns=("txt", "hard_label"),
    label_column="hard_label",
    loader="w2s.data.synthetic:load_rows",
)
def format_synthetic(row: dict, rng: random.Random) -> dict:
    """Generated mixed-review sentiment task (w2s/data/synthetic.py); offline, no files needed."""
    return {"txt": row["txt"], "hard_label": int(row["hard_label"])}


# image datasets (the vision setting): rows carry an image; models on them are linear probes on embeddings
# (or, with `train: false`, classifiers used as they are). Loaders: w2s/vision/datasets.py.
for _info in (
    DatasetInfo(
        "digits",
        "scikit-learn's bundled 8x8 digits: is the digit 5 or more? Offline, no files needed.",
        formatter=None,
        modality="image",
        loader="w2s.vision.datasets:digits_rows",
    ),
    DatasetInfo(
        "digits10",
        "scikit-learn's bundled 8x8 digits: which digit (10 classes)? Offline, no files needed.",
        formatter=None,
        modality="image",
        loader="w2s.vision.datasets:digits10_rows",
        classes=10,
    ),
    DatasetInfo(
        "cifar10",
        "CIFAR-10 (hub uoft-cs/cifar10): vehicle or animal?",
        formatter=None,
        modality="image",
        loader="w2s.vision.datasets:cifar10_rows",
        hub="uoft-cs/cifar10",
    ),
    DatasetInfo(
        "imagenet",
        "ImageNet-1k, your own copy (data_dir: train/ and val/ in ImageFolder layout): animal or not?",
        formatter=None,
        modality="image",
        loader="w2s.vision.datasets:imagenet_rows",
        data_dir="train/ and val/ class folders",
    ),
    DatasetInfo(
        "imagenet1k",
        "ImageNet-1k's 1000 classes on its 50,000 validation images, your own copy (data_dir: "
        "val/ in ImageFolder layout); test is held out of them, as in Burns et al.'s vision "
        "experiment.",
        formatter=None,
        modality="image",
        loader="w2s.vision.datasets:imagenet1k_rows",
        data_dir="val/ and its 1000 class folders",
        classes=1000,
    ),
):
    DATASETS[_info.name] = _info

DATASETS["local"] = DatasetInfo(
    "local",
    "Your own files (data_files): text_columns joined by newlines, a label_column of class indices "
    "0..classes-1 (classes: 2 unless set).",
    formatter=None,
)


def _local_formatter(spec) -> Formatter:
    def format_local(row: dict, rng: random.Random) -> dict:
        return {"txt": "\n".join(str(row[c]) for c in spec.text_columns), "hard_label": int(row[spec.label_column])}

    return format_local
