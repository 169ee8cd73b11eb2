"""Reading the raw splits: generated (synthetic), local files (csv, tsv, json, jsonl, parquet), or the hub."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

from w2s.data.contents import file_digest, hub_revision, split_files
from w2s.data.registry import DatasetInfo, load_rows
from w2s.errors import SpecError, first_line


class Rows(list):
    """Rows made in memory (the generated task), with the part of `datasets.Dataset` that splitting
    uses: so the quickstart is read, and validated, without importing `datasets` (and torch with it)."""

    @property
    def column_names(self) -> list[str]:
        return list(self[0]) if self else []

    def unique(self, column: str) -> list:
        return list(dict.fromkeys(row[column] for row in self))

    def select(self, indices) -> Rows:
        return Rows(self[i] for i in indices)

    def to_list(self) -> list[dict]:
        return list(self)


def _read_splits(spec, info: DatasetInfo, seed: int, key: str):
    """-> ({split name: datasets.Dataset or Rows}, pool split name, test split name or None)."""
    if info.loader is not None:
        if spec.data_files or spec.column_names:
            raise SpecError(f"{key}.data_files: {spec.name} is generated; it takes no data_files or column_names")
        pool, test = load_rows(info, spec, seed)
        return {"train": Rows(pool), "test": Rows(test)}, "train", "test"

    if spec.data_files:
        pool_names = [info.pool, "train"]
        test_names = [*info.test_splits, "test", "validation"]
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
    import datasets

    if info.hub is None:
        raise SpecError(f"{key}.data_files: dataset {spec.name!r} has no hub source; give data_files")
    revision = hub_revision(info.hub, f"{key} ({spec.label})")  # the one the stage keys hold
    try:
        with quiet_datasets():
            dd = datasets.load_dataset(info.hub, info.config, revision=revision)
    except Exception as err:  # noqa: BLE001 - network, cache and hub errors all mean "cannot load"
        raise SpecError(
            f"{key} ({spec.label}): cannot load {info.hub} from the hub: {first_line(err)}; "
            "give data_files with a local copy, or W2S_DATA_DIR (docs/datasets_and_models.md)"
        ) from None
    if info.pool not in dd:
        raise SpecError(f"{key} ({spec.label}): hub dataset {info.hub} has no split {info.pool!r}: {list(dd)}")
    tests = [dd[s] for s in info.test_splits if s in dd]
    if not tests:
        return {info.pool: dd[info.pool]}, info.pool, None
    test = tests[0] if len(tests) == 1 else datasets.concatenate_datasets(tests)
    return {info.pool: dd[info.pool], "test": test}, info.pool, "test"


_COMPRESSION = (".gz", ".bz2", ".xz")
_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _read_file(spec, split: str, key: str):
    """A split's local file(s) -> one datasets.Dataset; each file parsed once per process for its
    contents and read options. Several files (a list) are concatenated in their order."""
    parts, first = [], None
    for name, where in split_files(spec, split, key):
        path = Path(name).expanduser()
        memo = (file_digest(path, where), path.name, tuple(spec.column_names or ()))
        if memo not in _FILES:
            _FILES[memo] = _parse_file(path, spec, where, key)
        parts.append(_FILES[memo])
        columns = sorted(map(str, parts[-1].column_names))
        if first is None:
            first = (path, columns)
        elif columns != first[1]:  # concatenated, the missing cells would be None: name the file instead
            raise SpecError(
                f"{where}: {path.name} has columns {', '.join(columns)}, but {first[0].name} (the "
                f"split's first file) has {', '.join(first[1])}; a split's files need the same columns"
            )
    if len(parts) == 1:
        return parts[0]
    import datasets

    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as err:  # the files' columns differ
        raise SpecError(f"{key}.data_files.{split}: its files cannot be read as one split: {first_line(err)}") from None


_FILES: dict[tuple, object] = {}


def _parse_file(path: Path, spec, where: str, key: str):
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
    """Fail before training starts: missing columns, or a label column with values other than the class
    indices 0..classes-1."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        hint = "" if spec.column_names or not spec.data_files else " (header-less csv/tsv? set column_names)"
        raise SpecError(
            f"{where}: split {split!r} lacks column(s) {', '.join(missing)}; "
            f"columns found: {', '.join(map(str, ds.column_names))}{hint}"
        )
    if label_column:
        k = spec.num_classes
        bad = [v for v in ds.unique(label_column) if not is_class_index(v, k)]
        if bad:
            shown = sorted(bad, key=str)[:5]
            raise SpecError(
                f"{where}: label column {label_column!r} has values {shown} that are not class indices; "
                f"labels must be {class_range(k)}"
            )


def is_class_index(value, classes: int) -> bool:
    """0, 1, ..., classes - 1 (also as bool or a whole float, as some files store them)."""
    return isinstance(value, (bool, int, float)) and value in range(classes)


def class_range(classes: int) -> str:
    return "0 or 1" if classes == 2 else f"0..{classes - 1} (classes: {classes})"
