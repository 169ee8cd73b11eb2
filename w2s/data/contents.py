"""What the data is, for stage keys: content fingerprints hash contents, not paths (file hashes, hub
revisions, image folder listings)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from w2s import machine_cache
from w2s.data.registry import DATASETS
from w2s.errors import SpecError, first_line


def fingerprint(spec, key: str = "datasets.0") -> dict:
    """The identity of a dataset's contents, for stage keys: a sha256 of each data file's bytes, a hub
    dataset's resolved revision, a listing of an image folder. A file rewritten in place changes its
    stages' keys; the same bytes under another path keep them. Generated datasets (synthetic,
    digits) are code, covered by plan.KEY_VERSION. Errors (a missing file, no hub) name `key`."""
    info = DATASETS[spec.name]
    if spec.data_files:
        files = {}
        for split, paths in spec.data_files.items():
            digests = [file_digest(path, where) for path, where in split_files(spec, split, key)]
            files[split] = digests if isinstance(paths, list) else digests[0]  # one file: its digest alone
        return {"files": files}
    if spec.data_dir:
        return {"data_dir": _folder_digest(Path(spec.data_dir).expanduser(), f"{key}.data_dir")}
    if info.hub:
        return {"hub": info.hub, "revision": hub_revision(info.hub, f"{key} ({spec.label})")}
    return {}


def fingerprints(spec) -> list[dict]:
    """The `fingerprint` of each of an experiment spec's datasets, in order: what `w2s.experiment.plan.plan` keys on."""
    return [fingerprint(dataset, f"datasets.{i}") for i, dataset in enumerate(spec.datasets)]


def split_files(spec, split: str, key: str) -> list[tuple[str, str]]:
    """(path, spec key for messages) of each file of a split: one file, or a list read as one split."""
    paths = spec.data_files[split]
    if isinstance(paths, str):
        return [(paths, f"{key}.data_files.{split}")]
    return [(path, f"{key}.data_files.{split}.{i}") for i, path in enumerate(paths)]


def file_digest(path: str | Path, where: str) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) so each file is hashed once."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise SpecError(f"{where}: {path} is a directory; give a file (csv, tsv, json, jsonl, parquet, + .gz)")
    if not path.is_file():
        raise SpecError(f"{where}: file not found: {path}")
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """In this process: once per file version; across processes: through the per-machine cache."""
    memo = f"{path}:{size}:{mtime_ns}"
    known = machine_cache.read(HASHES) or {}
    if memo not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        # one entry per path: the version hashed last (older versions of a rewritten file go)
        known = {k: v for k, v in known.items() if k.rsplit(":", 2)[0] != path}
        known[memo] = digest.hexdigest()
        machine_cache.write(HASHES, known)
    return known[memo]


HASHES = "file-hashes.json"


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
        raise SpecError(
            f"{where}: cannot reach the Hugging Face hub for {repo} ({first_line(err)}) and no copy "
            "is cached; give data_files with a local copy, or W2S_DATA_DIR (docs/datasets_and_models.md)"
        ) from None
