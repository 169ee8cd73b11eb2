"""The vision setting of Burns et al. (2023): image datasets as rows, and frozen image models.

In the paper's vision experiments the weak supervisor is AlexNet, used as it is (its own ImageNet
predictions are the weak labels), and the strong student is a linear probe on the embeddings of a
strong self-supervised model (DINO ResNet-50 / ViT-B/8). The backbones are never fine-tuned, so
everything here is inference only:

* loaders turn an image dataset into the rows every w2s task uses, {"id", "image", "hard_label"}:
  ImageNet's 1000 classes (imagenet1k) or animal or not (imagenet); CIFAR-10: vehicle or animal;
  digits: which digit (digits10) or >= 5 (digits);
* `load_image_encoder` wraps a torchvision model, a torch.hub entry point or a Hugging Face vision
  model as an `ImageEncoder` whose `embed` maps images to one vector each, preprocessing included:
  features for probes, or (`head=True`) the model's own class logits for a zero-shot supervisor.

A row's "image" is either a decoded PIL image (small datasets) or a file path (ImageNet: 1.3M
files are listed, not loaded); `open_image(row)` gives the RGB PIL image in both cases, and
`ImageEncoder.embed` accepts either form, so callers never need to care.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from w2s.models import quiet_transformers
from w2s.errors import first_line

ImageLike = Image.Image | str | os.PathLike
Rows = list[dict]

# ---------------------------------------------------------------------------------------------
# images


def to_rgb(image: ImageLike) -> Image.Image:
    """A PIL image in RGB mode, from a PIL image (any mode) or a path to an image file."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    with Image.open(image) as opened:  # convert() reads the pixels, so the file can be closed
        return opened.convert("RGB")


def open_image(row: dict) -> Image.Image:
    """The RGB image of a row, whether the loader stored it decoded or as a path (opened lazily)."""
    return to_rgb(row["image"])


def imagenet_eval_preprocess(images: list[Image.Image], resize: int = 256, crop: int = 224) -> torch.Tensor:
    """The ImageNet evaluation transform (shorter side to 256, centre 224 x 224 crop, ImageNet mean and
    std), the one the reference and DINO's linear evaluation use, written without torchvision (whose
    Resize and CenterCrop it follows on PIL images) for torch.hub models."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    out = []
    for image in images:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(resize * long / short)
        size = (resize, new_long) if w <= h else (new_long, resize)
        image = image.resize(size, Image.BILINEAR)
        left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
        pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(((pixels - mean) / std).astype(np.float32)).permute(2, 0, 1))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# datasets: each loader returns (pool_rows, test_rows) with "hard_label" class indices; the dataset
# registry (w2s/data/registry.py) names them and their number of classes


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
        out.append([
            {"id": f"cifar10-{split}-{i:05d}", "image": to_rgb(row["img"]),
             "hard_label": int(row["label"] in CIFAR10_VEHICLES)}
            for i, row in enumerate(data)
        ])
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
            rows += [{"id": f"imagenet-{split}-{name}-{Path(f).stem}", "image": str(folder / name / f),
                      "hard_label": label} for f in files]
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
        raise ValueError(f"ImageNet folder {folder} has {len(names)} class folders; imagenet1k needs the 1000 wnid "
                         f"folders (a class's index is its sorted place) or folders named 0..999: {layout}")
    rows = []
    for name in names:
        files = _image_files(folder / name)
        rows += [{"id": f"imagenet-val-{name}-{Path(f).stem}", "image": str(folder / name / f),
                  "hard_label": index[name]} for f in files]
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


# ---------------------------------------------------------------------------------------------
# encoders


class ImageEncoder:
    """A frozen image model that maps images to one `dim`-sized feature vector each.

    `preprocess` turns a list of RGB PIL images into a pixel batch; `features(model, pixels)` runs the
    model and reduces its output to (batch, dim) features. The model is kept in eval mode and run
    without gradients, since the vision setting only probes frozen features.
    """

    def __init__(
        self, name: str, model: nn.Module, preprocess: Callable, features: Callable, dtype: torch.dtype
    ) -> None:
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.features = features
        self.dtype = dtype
        self.dim = int(self.embed([Image.new("RGB", (32, 32))]).shape[1])  # one dummy image: any architecture

    @property
    def device(self) -> torch.device:
        tensors = [*self.model.parameters(), *self.model.buffers()]  # a model may hold buffers only
        return tensors[0].device if tensors else torch.device("cpu")

    def to(self, device: str | torch.device) -> "ImageEncoder":
        """Move the model (e.g. to `accelerator.device`); inputs follow it automatically."""
        self.model.to(device)
        return self

    @torch.inference_mode()
    def embed(self, images: Sequence[ImageLike], batch_size: int = 64) -> torch.Tensor:
        """(len(images), dim) float32 features on the CPU; images may be PIL images or file paths.

        Batches of `batch_size` bound the accelerator memory; the result is on the CPU in float32
        whatever the model's device and dtype, ready to cache or to fit a probe on.
        """
        if not images:
            raise ValueError("embed() needs at least one image")
        out = []
        for start in range(0, len(images), batch_size):
            batch = [to_rgb(image) for image in images[start : start + batch_size]]
            pixels = self.preprocess(batch).to(device=self.device, dtype=self.dtype)
            out.append(self.features(self.model, pixels).float().cpu())
        return torch.cat(out)


def load_image_encoder(
    name: str, *, random_init: bool = False, config_overrides: dict | None = None, dtype: torch.dtype = torch.float32,
    head: bool = False, trust_remote_code: bool = False,
) -> ImageEncoder:
    """An `ImageEncoder` for `name`: "torchvision:<arch>", "torchhub:<repo>/<entry>", or a Hugging Face
    hub id / local folder. `head=False` gives features (for probes), `head=True` the model's own class
    logits (a zero-shot supervisor).

    * torchvision:<arch> (alexnet, resnet50, vit_b_16, ...): the ImageNet classifier; for features its
      last linear layer is replaced by the identity, so features are that layer's input (AlexNet: the
      4096-d penultimate layer; ResNet-50: 2048-d). `config_overrides` go to the torchvision builder.
    * torchhub:<owner>/<repo>[:<ref>]/<entry> (or a local folder with a hubconf.py for the repo):
      `torch.hub.load`, whose output is used as it is (DINO's entries give the embedding the
      reference probes; a classifier's entry gives logits), on the ImageNet evaluation transform.
      It runs the repository's code, so it needs `trust_remote_code`. `config_overrides` are the
      entry point's keyword arguments; `random_init` passes pretrained=False.
    * otherwise AutoModel (head: AutoModelForImageClassification, its logits) + AutoImageProcessor;
      features are `pooler_output` when the model has a parameter-free pooler (ResNet's average
      pool, DINOv2's normalised CLS), else the CLS token of `last_hidden_state` (DINO's linear-probe
      convention; a ViT's dense+tanh pooler is not in DINO checkpoints, it would be random).
      `config_overrides` update the AutoConfig.

    `random_init` builds the architecture with fresh weights (from the global torch RNG: seed it
    for reproducible features). A model that cannot be loaded raises ValueError whose first line
    names it and the reason.
    """
    overrides = dict(config_overrides or {})
    try:
        if name.startswith("torchvision:"):
            return _torchvision_encoder(name, name.split(":", 1)[1], random_init, overrides, dtype, head)
        if name.startswith("torchhub:"):
            return _torch_hub_encoder(name, random_init, overrides, dtype, trust_remote_code)
        return _hf_encoder(name, random_init, overrides, dtype, head)
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, KeyError, ImportError, ... all mean "cannot load"
        raise ValueError(f"cannot load image model {name!r}: {first_line(err)}") from None


def _torchvision_encoder(name: str, arch: str, random_init: bool, overrides: dict, dtype: torch.dtype,
                         head: bool) -> ImageEncoder:
    try:
        import torchvision
    except ImportError:
        raise ImportError("needs torchvision (pip install torchvision matching your torch)") from None
    try:
        default = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        default = None  # an unknown arch, or one without weights
    if default is None and not random_init:
        raise ValueError(f"torchvision has no pretrained weights for {arch!r} (an unknown arch?)")
    model = torchvision.models.get_model(arch, weights=None if random_init else default, **overrides)
    transform = default.transforms() if default is not None else _plain_imagenet_transform()
    if not head:
        _drop_last_linear(model, arch)
    model.to(dtype)

    def preprocess(images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([transform(image) for image in images])

    def features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        return model(pixels).flatten(1)

    return ImageEncoder(name, model, preprocess, features, dtype)


def _torch_hub_encoder(name: str, random_init: bool, overrides: dict, dtype: torch.dtype,
                       trust_remote_code: bool) -> ImageEncoder:
    repo, _, entry = name.split(":", 1)[1].rpartition("/")
    if not trust_remote_code:
        raise ValueError("torch.hub runs the repository's hubconf.py; set trust_remote_code: true if you trust it")
    local = repo.startswith(("/", ".", "~"))
    if local and not (Path(repo).expanduser() / "hubconf.py").is_file():
        raise ValueError(f"{repo} has no hubconf.py")
    kwargs = {**overrides, **({"pretrained": False} if random_init else {})}
    if local:
        model = torch.hub.load(str(Path(repo).expanduser()), entry, source="local", **kwargs)
    else:
        model = torch.hub.load(repo, entry, trust_repo=True, **kwargs)
    model.to(dtype)

    def features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        return model(pixels).flatten(1)

    return ImageEncoder(name, model, imagenet_eval_preprocess, features, dtype)


def _plain_imagenet_transform() -> Callable:
    """Resize to 224x224 and ImageNet-normalise: for architectures that ship no pretrained weights."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize((224, 224)), transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


def _drop_last_linear(model: nn.Module, arch: str) -> None:
    """Replace the classifier's final nn.Linear (the last one registered) by nn.Identity."""
    linears = [qualname for qualname, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"torchvision model {arch!r} has no nn.Linear classification layer to strip")
    parent_name, _, child = linears[-1].rpartition(".")
    setattr(model.get_submodule(parent_name), child, nn.Identity())


def _hf_encoder(name: str, random_init: bool, overrides: dict, dtype: torch.dtype, head: bool) -> ImageEncoder:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

    auto = AutoModelForImageClassification if head else AutoModel
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise ValueError("no such folder (and not a hub id)")  # transformers would say "Repo id must be ..."
    with quiet_transformers():  # also hushes the unused ViT pooler that loading lists as missing
        path = str(Path(name).expanduser()) if name.startswith("~") else name
        processor = AutoImageProcessor.from_pretrained(path)
        config = AutoConfig.from_pretrained(path, **overrides)
        if random_init:
            model = auto.from_config(config, dtype=dtype)
        else:
            model = auto.from_pretrained(path, config=config, dtype=dtype)
    pooler = getattr(model, "pooler", None)
    pooler_has_weights = isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters())

    def features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        output = model(pixel_values=pixels)  # by keyword: some models (CLIP) take input_ids first
        if head:
            return output.logits
        pooled = getattr(output, "pooler_output", None)
        if pooled is not None and not pooler_has_weights:
            pooled = pooled.flatten(1)  # ResNet: (b, d, 1, 1)
            if pooled.dim() == 2:
                return pooled
        hidden = output.last_hidden_state
        if hidden.dim() != 3:
            raise ValueError(f"{name}: no (batch, dim) pooler_output and no (batch, tokens, dim) last_hidden_state")
        return hidden[:, 0]  # the CLS token

    def preprocess(images: list[Image.Image]) -> torch.Tensor:
        return processor(images=images, return_tensors="pt")["pixel_values"]

    return ImageEncoder(name, model, preprocess, features, dtype)
