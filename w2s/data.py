"""Datasets: a registry of binary classification tasks, loading, deterministic splits, tokenization.

Every task is reduced to rows {"id", "txt", "hard_label"} with hard_label in {0, 1}, as in
Burns et al. (2023): multiple-choice and preference datasets become "is this answer right?".
The training pool is cut into two disjoint halves: A trains the weak supervisor (and the
ceiling), B is what the weak model labels for the strong student. Everything is a pure
function of the seed, so a rerun reproduces the same split and the same random formatting.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from w2s.spec import DataSpec, SpecError, first_line

Formatter = Callable[[dict, random.Random], dict]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    formatter: Formatter | None  # source row + rng -> {"txt", "hard_label"}; None: built from the spec (local)
    hub: str | None = None  # Hugging Face hub path; None: only local files or generated
    config: str | None = None
    pool: str = "train"  # hub split used as the training pool
    test: str | None = "test"  # hub split used as the test set; None: hold out test_frac of the pool
    columns: tuple[str, ...] = ()  # source columns the formatter reads (checked up front for a clear error)
    label_column: str | None = None  # a source column that must be binary (checked over the whole split)
    modality: str = "text"  # "image": rows carry an image instead of a text (w2s/vision.py)


DATASETS: dict[str, DatasetInfo] = {}


def register(name: str, description: str, **info) -> Callable[[Formatter], Formatter]:
    """Decorator: register `formatter` under `name`; keyword arguments are DatasetInfo fields."""

    def wrap(formatter: Formatter) -> Formatter:
        DATASETS[name] = DatasetInfo(name=name, description=description, formatter=formatter, **info)
        return formatter

    return wrap


def describe_datasets() -> list[tuple[str, str]]:
    """(name, one-line description) for `w2s list datasets`."""
    return [(name, info.description) for name, info in DATASETS.items()]


# ---------------------------------------------------------------------------------------------
# formatters: the same rules as OpenAI's weak-to-strong reference code. The rng is per row
# (seeded from the experiment seed, split and row index), so a row's random label does not
# depend on which other rows were sampled or on their order.


@register(
    "sciq", "SciQ science questions: is the shown answer the correct one (or a distractor)?",
    hub="allenai/sciq", columns=("question", "correct_answer", "distractor1", "distractor2", "distractor3"),
)
def format_sciq(row: dict, rng: random.Random) -> dict:
    label = int(rng.random() < 0.5)
    distractors = [row["distractor1"], row["distractor2"], row["distractor3"]]
    answer = row["correct_answer"] if label else rng.choice(distractors)
    return {"txt": f"Q: {row['question']} A: {answer}", "hard_label": label}


@register(
    "boolq", "BoolQ: yes/no questions about a Wikipedia passage.",
    hub="google/boolq", test="validation", columns=("passage", "question", "answer"), label_column="answer",
)
def format_boolq(row: dict, rng: random.Random) -> dict:
    return {"txt": f"Passage: {row['passage']}\nQuestion: {row['question']}", "hard_label": int(row["answer"])}


@register(
    "cosmos_qa", "Cosmos QA commonsense reading comprehension: is the shown answer the right one?",
    hub="allenai/cosmos_qa", test="validation",
    columns=("context", "question", "answer0", "answer1", "answer2", "answer3", "label"),
)
def format_cosmos_qa(row: dict, rng: random.Random) -> dict:
    candidates = [row[f"answer{i}"] for i in range(4)]
    true_answer = candidates[int(row["label"])]
    # "None of the above" as the right answer would make a shown wrong answer "correct": always a negative
    label = 0 if "None of the above choices ." in true_answer else int(rng.random() < 0.5)
    answer = true_answer if label else rng.choice([a for a in candidates if a != true_answer])
    return {"txt": f"Context: {row['context']}\nQuestion: {row['question']}\nAnswer: {answer}", "hard_label": label}


@register(
    "amazon_polarity", "Amazon review polarity: is the review (title + text) positive?",
    hub="fancyzhx/amazon_polarity", columns=("title", "content", "label"), label_column="label",
)
def format_amazon_polarity(row: dict, rng: random.Random) -> dict:
    return {"txt": f"{row['title']} {row['content']}", "hard_label": int(row["label"])}


@register(
    "anthropic_hh", "Anthropic HH-RLHF: is this dialogue the preferred (chosen) one?",
    hub="Anthropic/hh-rlhf", columns=("chosen", "rejected"),
)
def format_anthropic_hh(row: dict, rng: random.Random) -> dict:
    label = int(rng.random() < 0.5)
    return {"txt": row["chosen"] if label else row["rejected"], "hard_label": label}


@register(
    "sst2", "SST-2 movie review sentences: positive or negative? (test = hub validation; hub test labels are hidden)",
    hub="stanfordnlp/sst2", test="validation", columns=("sentence", "label"), label_column="label",
)
def format_sst2(row: dict, rng: random.Random) -> dict:
    return {"txt": row["sentence"], "hard_label": int(row["label"])}


@register(
    "synthetic", "Generated mixed-review sentiment task (w2s/synthetic.py); offline, no files needed.",
    columns=("txt", "hard_label"), label_column="hard_label",
)
def format_synthetic(row: dict, rng: random.Random) -> dict:
    return {"txt": row["txt"], "hard_label": int(row["hard_label"])}


# image datasets (the vision setting): rows carry an image; models on them are linear probes on embeddings
for _name, _description, _hub in (
    ("digits", "scikit-learn's bundled 8x8 digits: is the digit 5 or more? Offline, no files needed.", None),
    ("cifar10", "CIFAR-10 (hub uoft-cs/cifar10): vehicle or animal?", "uoft-cs/cifar10"),
    ("imagenet", "ImageNet-1k, your own copy (data_dir: train/ and val/ in ImageFolder layout): animal or not?", None),
):
    DATASETS[_name] = DatasetInfo(_name, _description, formatter=None, hub=_hub, modality="image")

DATASETS["local"] = DatasetInfo(
    "local", "Your own files (data_files): text_columns joined by newlines, a binary label_column.", formatter=None
)


def _local_formatter(spec: DataSpec) -> Formatter:
    def format_local(row: dict, rng: random.Random) -> dict:
        return {"txt": "\n".join(str(row[c]) for c in spec.text_columns), "hard_label": int(row[spec.label_column])}

    return format_local


# ---------------------------------------------------------------------------------------------
# what the data is: stage keys hash contents, not paths


def fingerprint(spec: DataSpec, key: str = "datasets.0") -> dict:
    """The identity of a dataset's contents, for stage keys: a sha256 of each data file's bytes, a hub
    dataset's resolved revision, a listing of an image folder. A file rewritten in place changes its
    stages' keys; the same bytes under another path keep them. Generated datasets (synthetic,
    digits) are code, covered by plan.KEY_VERSION. Errors (a missing file, no hub) name `key`."""
    info = DATASETS[spec.name]
    if spec.data_files:
        return {"files": {split: file_digest(path, f"{key}.data_files.{split}") for split, path in spec.data_files.items()}}
    if spec.data_dir:
        return {"data_dir": _folder_digest(Path(spec.data_dir).expanduser(), f"{key}.data_dir")}
    if info.hub:
        return {"hub": info.hub, "revision": hub_revision(info.hub, f"{key} ({spec.label})")}
    return {}


def _hash_cache() -> Path:
    from w2s.precision import cache_dir

    return cache_dir() / "file-hashes.json"


def file_digest(path: str | Path, where: str) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) so each file is hashed once."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise SpecError(f"{where}: {path} is a directory; give a file (csv, tsv, json, jsonl, parquet, + .gz)")
    if not path.is_file():
        raise SpecError(f"{where}: file not found: {path}")
    stat = path.stat()
    memo = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = _hash_cache()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if memo not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        cache[memo] = digest.hexdigest()
        try:  # a lost race only means another hash computed later
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
        except OSError:
            pass
    return cache[memo]


def _folder_digest(root: Path, where: str) -> str:
    """An image folder's identity: every file's relative path and size (hashing ImageNet's bytes would
    take longer than the experiment)."""
    if not root.is_dir():
        raise SpecError(f"{where}: not a folder: {root}")
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            digest.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()


@functools.cache
def hub_revision(repo: str, where: str) -> str:
    """The commit a hub dataset resolves to now (or, offline, the one cached locally)."""
    from huggingface_hub import HfApi, constants

    try:
        return HfApi().dataset_info(repo).sha
    except Exception as err:  # noqa: BLE001 - offline mode, no network, no such repo: all "cannot resolve"
        ref = Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}" / "refs" / "main"
        if ref.is_file():
            return ref.read_text().strip()
        raise SpecError(f"{where}: cannot reach the Hugging Face hub for {repo} ({first_line(err)}) and no copy "
                        "is cached; give data_files with a local copy") from None  # fmt: skip


# ---------------------------------------------------------------------------------------------
# loading and splitting


@dataclass
class Splits:
    """Disjoint rows {"id", "txt", "hard_label"}: A trains the weak model, B gets weak labels, test."""

    train_a: list[dict]
    train_b: list[dict]
    test: list[dict]
    notes: list[str] = field(default_factory=list)  # what loading did, for the log


_SPLITS: dict[tuple[str, int], Splits] = {}


def load_splits(spec: DataSpec, seed: int, key: str = "datasets.0") -> Splits:
    """`load_dataset_rows`, once per process for each (dataset, seed): every stage of a sweep shares them."""
    memo = (spec.model_dump_json(), json.dumps(fingerprint(spec, key)), seed)  # files by content, not path
    if memo not in _SPLITS:
        _SPLITS[memo] = load_dataset_rows(spec, seed, key)
    return _SPLITS[memo]


def load_dataset_rows(spec: DataSpec, seed: int, key: str = "datasets.0") -> Splits:
    """Read the dataset, shuffle with `seed`, cap at n_train/n_test, split the pool into halves A and B.

    `key` is the spec location used in error messages (e.g. "datasets.2"). Only the sampled rows
    are formatted, so a cap on a large hub dataset (amazon_polarity: 3.6M rows) stays cheap.
    """
    info = DATASETS[spec.name]
    where = f"{key} ({spec.label})"
    if info.modality == "image":
        return _image_splits(spec, seed, key)
    formatter = info.formatter or _local_formatter(spec)
    columns = info.columns if info.formatter else (*spec.text_columns, spec.label_column)
    label_column = info.label_column if info.formatter else spec.label_column

    raw, pool_name, test_name = _read_splits(spec, info, seed, key)
    for split, ds in raw.items():
        _check_columns(ds, columns, label_column, split, spec, where)

    n_test = len(raw[test_name]) if test_name else None
    pool_idx, test_idx, notes = _sample(spec, seed, len(raw[pool_name]), n_test, where)
    test_name = test_name or pool_name
    half = (len(pool_idx) + 1) // 2  # A gets the extra row
    pool_a = _format_rows(raw[pool_name], pool_idx[:half], pool_name, formatter, seed, where)
    pool_b = _format_rows(raw[pool_name], pool_idx[half:], pool_name, formatter, seed, where)
    test = _format_rows(raw[test_name], test_idx, test_name, formatter, seed, where)
    return Splits(pool_a, pool_b, test, notes)


def _sample(spec: DataSpec, seed: int, n_pool: int, n_test: int | None, where: str):
    """Seeded row indices: (pool, test, notes). With no test split (n_test None), a share of the pool
    is held out and the test indices point into the pool."""
    notes = []
    pool_idx = list(range(n_pool))
    random.Random(f"{seed}:pool").shuffle(pool_idx)
    if n_test is None:  # no test split: hold out a seeded share of the pool
        n_hold = max(1, round(spec.test_frac * len(pool_idx)))
        test_idx, pool_idx = pool_idx[:n_hold], pool_idx[n_hold:]
        notes.append(f"no test split: held out {n_hold} of {n_pool} pool rows (test_frac={spec.test_frac})")
    else:
        test_idx = list(range(n_test))
        random.Random(f"{seed}:test").shuffle(test_idx)
    if spec.n_train and len(pool_idx) > spec.n_train:
        notes.append(f"capped the training pool at n_train={spec.n_train} of {len(pool_idx)} rows")
        pool_idx = pool_idx[: spec.n_train]
    if spec.n_test and len(test_idx) > spec.n_test:
        notes.append(f"capped the test split at n_test={spec.n_test} of {len(test_idx)} rows")
        test_idx = test_idx[: spec.n_test]
    if len(pool_idx) < 2:
        raise SpecError(f"{where}: the training pool has {len(pool_idx)} rows; it needs at least 2 (halves A and B)")
    if not test_idx:
        raise SpecError(f"{where}: the test split is empty")
    return pool_idx, test_idx, notes


@functools.lru_cache(maxsize=4)
def _image_rows(name: str, data_dir: str | None) -> tuple[list[dict], list[dict]]:
    """(pool, test) rows of an image dataset, read once per process (every seed splits the same rows)."""
    from w2s import vision

    loader = vision.IMAGE_DATASETS[name]
    return loader(data_dir) if name == "imagenet" else loader()


def _image_splits(spec: DataSpec, seed: int, key: str) -> Splits:
    """Image rows {"id", "image", "hard_label"} (w2s/vision.py), split like the text datasets."""
    where = f"{key} ({spec.label})"
    if spec.data_files or spec.column_names:
        raise SpecError(f"{key}.data_files: image datasets read no data_files; imagenet takes data_dir")
    try:
        pool, test = _image_rows(spec.name, spec.data_dir)
    except ValueError as err:
        raise SpecError(f"{where}: {first_line(err)}") from None
    pool_idx, test_idx, notes = _sample(spec, seed, len(pool), len(test) or None, where)
    test_rows = [(test or pool)[i] for i in test_idx]
    half = (len(pool_idx) + 1) // 2
    return Splits([pool[i] for i in pool_idx[:half]], [pool[i] for i in pool_idx[half:]], test_rows, notes)


def _read_splits(spec: DataSpec, info: DatasetInfo, seed: int, key: str):
    """-> ({split name: datasets.Dataset}, pool split name, test split name or None)."""
    import datasets

    if spec.name == "synthetic":
        if spec.data_files or spec.column_names:
            raise SpecError(f"{key}.data_files: synthetic is generated; it takes no data_files or column_names")
        from w2s import synthetic

        n_train = spec.n_train or synthetic.DEFAULT_N_TRAIN
        n_test = spec.n_test or synthetic.DEFAULT_N_TEST
        rows = synthetic.generate(n_train, n_test, seed)
        return {s: datasets.Dataset.from_list(rows[s]) for s in ("train", "test")}, "train", "test"

    if spec.data_files:
        pool_names = [info.pool, "train"]
        test_names = [info.test, "test", "validation"]
        valid = [n for n in dict.fromkeys(pool_names + test_names) if n]
        for split in spec.data_files:
            if split not in valid:
                raise SpecError(f"{key}.data_files: unknown split {split!r}; use {', '.join(valid)}")
        pool_name = next((n for n in pool_names if n in spec.data_files), None)
        if pool_name is None:
            raise SpecError(f"{key}.data_files: no training pool; give a `train` file")
        test_name = next((n for n in test_names if n and n in spec.data_files and n != pool_name), None)
        names = [pool_name] + ([test_name] if test_name else [])
        return {s: _read_file(spec, s, key) for s in names}, pool_name, test_name

    if spec.column_names:
        raise SpecError(f"{key}.column_names: only applies to csv/tsv data_files")
    if info.hub is None:
        raise SpecError(f"{key}.data_files: dataset {spec.name!r} has no hub source; give data_files")
    revision = hub_revision(info.hub, f"{key} ({spec.label})")  # the one the stage keys hold
    try:
        with quiet_datasets():
            dd = datasets.load_dataset(info.hub, info.config, revision=revision)
    except Exception as err:  # noqa: BLE001 - network, cache and hub errors all mean "cannot load"
        raise SpecError(f"{key} ({spec.label}): cannot load {info.hub} from the hub: {first_line(err)}; "
                        "give data_files with a local copy") from None  # fmt: skip
    if info.pool not in dd:
        raise SpecError(f"{key} ({spec.label}): hub dataset {info.hub} has no split {info.pool!r}: {list(dd)}")
    test_name = info.test if info.test in dd else None
    return {s: dd[s] for s in (info.pool, test_name) if s}, info.pool, test_name


_COMPRESSION = (".gz", ".bz2", ".xz")
_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _read_file(spec: DataSpec, split: str, key: str):
    """One local file -> datasets.Dataset, parsed once per process for its contents and read options."""
    where = f"{key}.data_files.{split}"
    path = Path(spec.data_files[split]).expanduser()
    memo = (file_digest(path, where), path.name, tuple(spec.column_names or ()))
    if memo not in _FILES:
        _FILES[memo] = _parse_file(path, spec, where, key)
    return _FILES[memo]


_FILES: dict[tuple, object] = {}


def _parse_file(path: Path, spec: DataSpec, where: str, key: str):
    """One local file -> datasets.Dataset, with the builder chosen by extension."""
    import datasets

    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in _BUILDERS:
        raise SpecError(f"{where}: cannot tell the format of {path}; use csv, tsv, json, jsonl, parquet (+ .gz)")
    builder, kwargs = _BUILDERS[ext], {}
    if builder == "csv":
        # keep_default_na=False: a text cell such as "NA" or "null" stays text, never becomes NaN
        kwargs = {"keep_default_na": False, "column_names": spec.column_names}
        if ext == ".tsv":  # tab-separated text uses quote characters literally (SST-2: 'it's "great"')
            kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
    elif spec.column_names:
        raise SpecError(f"{key}.column_names: only applies to csv/tsv files, not {path.name}")
    try:
        with quiet_datasets():
            ds = datasets.load_dataset(builder, data_files={"train": str(path)}, split="train", **kwargs)
    except Exception as err:  # noqa: BLE001 - parser errors of many kinds; report the root cause in one line
        cause = err.__cause__ or err
        if "corresponds to no data" in str(cause):  # a header and no rows: datasets' words for it
            raise SpecError(f"{where}: {path} has no rows") from None
        raise SpecError(f"{where}: cannot read {path} as {ext[1:]}: {first_line(cause)}") from None
    if len(ds) == 0:
        raise SpecError(f"{where}: {path} has no rows")
    return ds


@contextlib.contextmanager
def quiet_datasets():
    """No progress bars or log lines from `datasets` while a file is parsed: w2s says what matters
    (an error is one line on stderr, with nothing before it)."""
    import datasets

    bars, level = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL + 1)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if bars:
            datasets.enable_progress_bars()


def _check_columns(ds, columns, label_column, split, spec, where) -> None:
    """Fail before training starts: missing columns, or a label column with values other than 0/1."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        hint = "" if spec.column_names or not spec.data_files else " (header-less csv/tsv? set column_names)"
        raise SpecError(
            f"{where}: split {split!r} lacks column(s) {', '.join(missing)}; "
            f"columns found: {', '.join(map(str, ds.column_names))}{hint}"
        )
    if label_column:
        bad = [v for v in ds.unique(label_column) if not _is_binary(v)]
        if bad:
            shown = sorted(bad, key=str)[:5]
            raise SpecError(
                f"{where}: label column {label_column!r} has non-binary values {shown}; labels must be 0 or 1"
            )


def _is_binary(value) -> bool:
    return isinstance(value, (bool, int, float)) and value in (0, 1)


def _format_rows(ds, idx: list[int], split: str, formatter: Formatter, seed: int, where: str) -> list[dict]:
    rows = []
    for i, row in zip(idx, ds.select(idx).to_list()):
        rng = random.Random(f"{seed}:{split}:{i}")  # str seeds hash with sha512: stable across processes
        try:
            out = formatter(row, rng)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise SpecError(f"{where}: cannot format row {split}-{i}: {type(err).__name__}: {err}") from None
        if out["hard_label"] not in (0, 1):
            raise SpecError(f"{where}: row {split}-{i} has label {out['hard_label']!r}; labels must be 0 or 1")
        rows.append({"id": f"{split}-{i}", "txt": out["txt"], "hard_label": int(out["hard_label"])})
    return rows


# ---------------------------------------------------------------------------------------------
# tokenization


class Tokenized(NamedTuple):
    input_ids: list[list[int]]
    kept: list[int]  # positions in `rows` of the examples kept (all of them under "truncate")
    n_dropped: int
    n_truncated: int


def tokenize(rows: list[dict], tokenizer, max_ctx: int, policy: str, where: str = "dataset") -> Tokenized:
    """Tokenize the rows' "txt" in one batched call, then drop or truncate examples over max_ctx tokens.

    Truncation re-tokenizes only the long examples with the tokenizer's own truncation, so special
    tokens (e.g. BERT's final [SEP]) survive. The caller logs the counts, e.g.
    "dropped 12 of 2000 examples longer than max_ctx=512".
    """
    if policy not in ("drop", "truncate"):
        raise ValueError(f"policy must be 'drop' or 'truncate', got {policy!r}")
    texts = [r["txt"] for r in rows]
    ids = tokenizer(texts, truncation=False, verbose=False)["input_ids"] if texts else []
    long = [i for i, x in enumerate(ids) if len(x) > max_ctx]
    if policy == "drop":
        skip = set(long)
        kept = [i for i in range(len(ids)) if i not in skip]
        ids, n_dropped, n_truncated = [ids[i] for i in kept], len(long), 0
    else:
        if long:
            cut = tokenizer([texts[i] for i in long], truncation=True, max_length=max_ctx)["input_ids"]
            for i, x in zip(long, cut):
                ids[i] = x
        kept, n_dropped, n_truncated = list(range(len(ids))), 0, len(long)
    if not kept:
        raise SpecError(
            f"{where}: no examples left: all {len(rows)} are longer than max_ctx={max_ctx} tokens "
            "(raise max_ctx or use ctx_policy: truncate)"
            if rows else f"{where}: the split is empty"
        )
    return Tokenized(ids, kept, n_dropped, n_truncated)
