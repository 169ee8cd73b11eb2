"""Images as the vision setting reads them: any row's image as an RGB PIL image, and the ImageNet
evaluation transform (without torchvision, for torch.hub models).

A row's "image" is either a decoded PIL image (small datasets) or a file path (ImageNet: 1.3M files
are listed, not loaded); `open_image(row)` gives the RGB PIL image in both cases.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

ImageLike = Image.Image | str | os.PathLike


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
