"""Loading and splitting: seeded samples of the pool and test split, halves A and B, formatted rows."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from w2s.data.contents import fingerprint
from w2s.data.files import _check_columns, _read_splits, class_range, is_class_index
from w2s.data.registry import DATASETS, Formatter, _local_formatter, load_rows
from w2s.errors import SpecError, first_line


@dataclass
class Splits:
    """Disjoint rows {"id", "txt", "hard_label"}: A trains the weak model, B gets weak labels, test."""

    train_a: list[dict]
    train_b: list[dict]
    test: list[dict]
    notes: list[str] = field(default_factory=list)  # what loading did, for the log


_SPLITS: dict[tuple[str, int], Splits] = {}


def load_splits(spec, seed: int, key: str = "datasets.0") -> Splits:
    """`load_dataset_rows`, once per process for each (dataset, seed): every stage of a sweep shares them."""
    memo = (spec.model_dump_json(), json.dumps(fingerprint(spec, key)), seed)  # files by content, not path
    if memo not in _SPLITS:
        _SPLITS[memo] = load_dataset_rows(spec, seed, key)
    return _SPLITS[memo]


def load_dataset_rows(spec, seed: int, key: str = "datasets.0") -> Splits:
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
    k = spec.num_classes
    pool_a = _format_rows(raw[pool_name], pool_idx[:half], pool_name, formatter, seed, where, k)
    pool_b = _format_rows(raw[pool_name], pool_idx[half:], pool_name, formatter, seed, where, k)
    test = _format_rows(raw[test_name], test_idx, test_name, formatter, seed, where, k)
    return _halves(spec, pool_a, pool_b, test, notes)


def _halves(spec, pool_a: list, pool_b: list, test: list, notes: list) -> Splits:
    """Disjoint halves A and B, or (`halves: same`) the whole pool as both: for zero-shot supervisors,
    which need no half A, so that the ceiling and the students train on the same rows."""
    if spec.halves == "same":
        pool = pool_a + pool_b
        return Splits(
            pool, pool, test, notes + [f"halves: same: the ceiling and the students train on all {len(pool)} pool rows"]
        )
    return Splits(pool_a, pool_b, test, notes)


def _sample(spec, seed: int, n_pool: int, n_test: int | None, where: str):
    """Seeded row indices: (pool, test, notes). With no test split (n_test None), a share of the pool
    is held out and the test indices point into the pool. `sample: random` caps at n_train / n_test
    with a seeded draw; `sample: first` keeps the first rows in file order (the reference's) and then
    shuffles the pool, so that halves A and B are still a seeded split."""
    notes = []
    shuffled = spec.sample == "random"
    pool_idx = list(range(n_pool))
    if shuffled:
        random.Random(f"{seed}:pool").shuffle(pool_idx)
    if n_test is None:  # no test split: hold out a seeded share of the pool
        n_hold = max(1, round(spec.test_frac * len(pool_idx)))
        test_idx, pool_idx = pool_idx[:n_hold], pool_idx[n_hold:]
        notes.append(f"no test split: held out {n_hold} of {n_pool} pool rows (test_frac={spec.test_frac})")
    else:
        test_idx = list(range(n_test))
        if shuffled:
            random.Random(f"{seed}:test").shuffle(test_idx)
    which = "a seeded sample" if shuffled else "the first rows"
    if spec.n_train and len(pool_idx) > spec.n_train:
        notes.append(f"capped the training pool at n_train={spec.n_train} of {len(pool_idx)} rows ({which})")
        pool_idx = pool_idx[: spec.n_train]
    if spec.n_test and len(test_idx) > spec.n_test:
        notes.append(f"capped the test split at n_test={spec.n_test} of {len(test_idx)} rows ({which})")
        test_idx = test_idx[: spec.n_test]
    if not shuffled:
        random.Random(f"{seed}:pool").shuffle(pool_idx)
    if len(pool_idx) < 2:
        raise SpecError(f"{where}: the training pool has {len(pool_idx)} rows; it needs at least 2 (halves A and B)")
    if not test_idx:
        raise SpecError(f"{where}: the test split is empty")
    return pool_idx, test_idx, notes


_IMAGES: dict[tuple, tuple[list, list]] = {}  # (name, data_dir) -> (pool, test): every seed splits the same rows


def _image_splits(spec, seed: int, key: str) -> Splits:
    """Image rows {"id", "image", "hard_label"} (w2s/vision/datasets.py), split like the text datasets."""
    where = f"{key} ({spec.label})"
    if spec.data_files or spec.column_names:
        raise SpecError(f"{key}.data_files: image datasets read no data_files; imagenet and imagenet1k take data_dir")
    try:
        if (spec.name, spec.data_dir) not in _IMAGES:
            _IMAGES[spec.name, spec.data_dir] = load_rows(DATASETS[spec.name], spec, seed)
        pool, test = _IMAGES[spec.name, spec.data_dir]
    except ValueError as err:
        raise SpecError(f"{where}: {first_line(err)}") from None
    pool_idx, test_idx, notes = _sample(spec, seed, len(pool), len(test) or None, where)
    test_rows = [(test or pool)[i] for i in test_idx]
    half = (len(pool_idx) + 1) // 2
    return _halves(spec, [pool[i] for i in pool_idx[:half]], [pool[i] for i in pool_idx[half:]], test_rows, notes)


def _format_rows(
    ds, idx: list[int], split: str, formatter: Formatter, seed: int, where: str, classes: int
) -> list[dict]:
    rows = []
    for i, row in zip(idx, ds.select(idx).to_list()):
        rng = random.Random(f"{seed}:{split}:{i}")  # str seeds hash with sha512: stable across processes
        try:
            out = formatter(row, rng)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise SpecError(f"{where}: cannot format row {split}-{i}: {type(err).__name__}: {err}") from None
        if not is_class_index(out["hard_label"], classes):
            raise SpecError(
                f"{where}: row {split}-{i} has label {out['hard_label']!r}; labels must be {class_range(classes)}"
            )
        row = {"id": f"{split}-{i}", "txt": out["txt"], "hard_label": int(out["hard_label"])}
        decisive = out.get("decisive")
        if decisive:  # tokenization keeps this suffix of the text whole (w2s/data/tokens.py)
            if not out["txt"].endswith(decisive):
                raise ValueError(f"{where}: the formatter's decisive part must end its text (row {split}-{i})")
            row["keep_chars"] = len(decisive)
        rows.append(row)
    return rows
