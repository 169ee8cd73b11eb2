"""The image datasets as rows {"id", "image", "hard_label"}, the rows every w2s task uses: ImageNet's
1000 classes (imagenet1k) or animal or not (imagenet); CIFAR-10: vehicle or animal; digits: which
digit (digits10) or >= 5 (digits).

Each `load_*_rows` returns (pool rows, test rows) with "hard_label" class indices; the `*_rows(spec,
seed)` functions at the end are the dataset registry's loaders (w2s/data/registry.py names them
"w2s.vision.datasets:<function>", with their number of classes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from w2s.errors import first_line
from w2s.vision.images import to_rgb

Rows = list[dict]


def load_digits_rows(classes: int = 2) -> tuple[Rows, Rows]:
    """scikit-learn's bundled 8x8 digits (1797 images, offline): the digit itself (classes=10), or
    is it >= 5 (classes=2)?

    A seconds-fast, download-free image task for tests and smoke runs. It has no test split of
    its own, so everything is the pool and the caller holds out a share.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16 -> 0..255
    labels = digits.target if classes == 10 else (digits.target >= 5)
    rows = [
        {"id": f"digits-{i:05d}", "image": Image.fromarray(img).convert("RGB"), "hard_label": int(y)}
        for i, (img, y) in enumerate(zip(pixels, labels))
    ]
    return rows, []


CIFAR10_VEHICLES = frozenset({0, 1, 8, 9})  # airplane, automobile, ship, truck; the other six are animals


def load_cifar10_rows(cache_dir: str | None = None) -> tuple[Rows, Rows]:
    """CIFAR-10 from the hub ("uoft-cs/cifar10"; train = pool, test = test): vehicle (1) or animal (0)?"""
    import datasets

    try:
        splits = datasets.load_dataset("uoft-cs/cifar10", cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001 - hub, network and cache errors all mean "cannot load"
        raise ValueError(f"cannot load CIFAR-10 (uoft-cs/cifar10): {first_line(err)}") from None
    out = []
    for split in ("train", "test"):
        data = splits[split]
        missing = {"img", "label"} - set(data.column_names)
        if missing:
            raise ValueError(f"uoft-cs/cifar10 {split} split lacks columns {sorted(missing)} (has {data.column_names})")
        out.append(
            [
                {
                    "id": f"cifar10-{split}-{i:05d}",
                    "image": to_rgb(row["img"]),
                    "hard_label": int(row["label"] in CIFAR10_VEHICLES),
                }
                for i, row in enumerate(data)
            ]
        )
    return out[0], out[1]


# ImageNet-1k's classes in sorted-wnid order start with 398 animals (tench .. puffer); class 398 is
# the abacus. Comparing wnids with the abacus's gives the same label as "index < 398" on the full
# 1000 classes, and stays right on a subset of the classes, where folder indices would shift.
IMAGENET_FIRST_NON_ANIMAL = "n02666196"  # abacus, class 398
IMAGENET_ANIMAL_CLASSES = 398
_WNID = re.compile(r"n\d{8}")
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


def _class_folders(folder: Path) -> list[str]:
    """The class folders of an ImageFolder split, sorted (sorted wnids are ImageNet's class order)."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def _image_files(folder: Path) -> list[str]:
    """The image files of one class folder, sorted."""
    return sorted(e.name for e in os.scandir(folder) if Path(e.name).suffix.lower() in _IMAGE_SUFFIXES)


def load_imagenet_rows(root: str | os.PathLike) -> tuple[Rows, Rows]:
    """The user's own ImageNet copy (train = pool, val = test): is the class an animal?

    Expects the torchvision ImageFolder layout: root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG.
    Only file paths are listed (rows hold the path in "image"; `open_image` reads it when needed),
    because decoding 1.3M images up front would not fit in memory. Folder names may also be the
    class indices 0..999 (some converted copies use them) instead of wnids.
    """
    root = Path(root).expanduser()
    layout = f"expected {root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG (the torchvision ImageFolder layout)"
    if not root.is_dir():
        raise ValueError(f"ImageNet folder {root} not found: {layout}")
    out = []
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise ValueError(f"ImageNet folder {root} has no {split}/ folder: {layout}")
        classes = _class_folders(folder)
        if not classes:
            hint = " (the raw val download is flat: sort it into <wnid>/ folders first)" if split == "val" else ""
            raise ValueError(f"ImageNet folder {folder} has no class subfolders{hint}: {layout}")
        rows = []
        for name in classes:
            label = _imagenet_animal(name, folder)
            files = _image_files(folder / name)
            rows += [
                {"id": f"imagenet-{split}-{name}-{Path(f).stem}", "image": str(folder / name / f), "hard_label": label}
                for f in files
            ]
        if not rows:
            raise ValueError(f"ImageNet folder {folder} has class folders but no image files: {layout}")
        out.append(rows)
    return out[0], out[1]


def _imagenet_animal(name: str, folder: Path) -> int:
    """1 when the ImageNet class folder `name` (a wnid, or a class index 0..999) is one of the 398 animals."""
    if _WNID.fullmatch(name):
        return int(name < IMAGENET_FIRST_NON_ANIMAL)
    if name.isdigit() and int(name) < 1000:
        return int(int(name) < IMAGENET_ANIMAL_CLASSES)
    raise ValueError(f"ImageNet folder {folder}/{name}: class folders must be wnids like n01440764 (or indices 0..999)")


def load_imagenet_val_rows(root: str | os.PathLike) -> tuple[Rows, Rows]:
    """ImageNet-1k's validation images with their 1000 class indices, all as the pool (the caller holds
    out the test share), as the reference's vision experiment uses them: the pretrained models never
    trained on these images, whereas AlexNet would label its own training images nearly perfectly.

    Expects root/val/<wnid>/*.JPEG with all 1000 class folders (the index of a class is its place in
    sorted-wnid order, torchvision's and the pretrained heads' order), or folders named 0..999.
    """
    root = Path(root).expanduser()
    folder = root / "val"
    layout = f"expected {folder}/<wnid>/*.JPEG for the 1000 classes (the torchvision ImageFolder layout)"
    if not folder.is_dir():
        raise ValueError(f"ImageNet folder {root} has no val/ folder: {layout}")
    names = _class_folders(folder)
    if names and all(n.isdigit() and int(n) < 1000 for n in names):
        index = {n: int(n) for n in names}  # folders named by class index: any subset
    elif len(names) == 1000 and all(_WNID.fullmatch(n) for n in names):
        index = {n: i for i, n in enumerate(names)}
    else:
        raise ValueError(
            f"ImageNet folder {folder} has {len(names)} class folders; imagenet1k needs the 1000 wnid "
            f"folders (a class's index is its sorted place) or folders named 0..999: {layout}"
        )
    rows = []
    for name in names:
        files = _image_files(folder / name)
        rows += [
            {"id": f"imagenet-val-{name}-{Path(f).stem}", "image": str(folder / name / f), "hard_label": index[name]}
            for f in files
        ]
    if not rows:
        raise ValueError(f"ImageNet folder {folder} has class folders but no image files: {layout}")
    return rows, []


# the dataset registry's loaders (w2s/data/registry.py names them): (spec, seed) -> (pool, test).
# The rows are fixed; the seed only splits them (w2s/data/splits.py).
def digits_rows(spec, seed: int) -> tuple[Rows, Rows]:
    return load_digits_rows()


def digits10_rows(spec, seed: int) -> tuple[Rows, Rows]:
    return load_digits_rows(classes=10)


def imagenet1k_rows(spec, seed: int) -> tuple[Rows, Rows]:
    return load_imagenet_val_rows(spec.data_dir)


def cifar10_rows(spec, seed: int) -> tuple[Rows, Rows]:
    return load_cifar10_rows()


def imagenet_rows(spec, seed: int) -> tuple[Rows, Rows]:
    return load_imagenet_rows(spec.data_dir)
