"""Cached activations: a model's pooled hidden states of every split, computed once per stage graph.

A `features` stage runs a frozen model (pretrained, or generatively finetuned) over halves A and B
and the test split and stores one vector per example in `features.npz`. Every stage that needs
them reads that file instead of running the model again:

- linear probes (`linear_probe: true`, and every model on an image dataset) train only a head on
  the last layer's activations, so a sweep over losses, pairs and rounds costs one forward pass per
  model and split instead of one per epoch per stage;
- label probes (`probe:` on a loss) fit kNN / logistic regression / TopoCC on a chosen layer.

Text models are pooled like the classifier (mean, or the last token for causal LMs); image models
give the input of their classification layer or their pooled output (w2s/vision/encoders.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from w2s.training.batches import Activations, Encoded, ImageRows
from w2s.training.inference import batch_outputs

SPLITS = ("train_a", "train_b", "test")
FILE = "features.npz"


@dataclass
class SplitActivations:
    """One split's activations as stored: row ids and an (n, d) array."""

    ids: list[str]
    array: np.ndarray  # float32 (n, d)

    def select(self, rows: list[dict], labels: np.ndarray) -> tuple[Activations, list[dict]]:
        """The activations of `rows` (in their order) with their labels, and the rows kept: rows
        without activations (a text the features stage dropped as too long) are left out."""
        index = {id_: i for i, id_ in enumerate(self.ids)}
        kept = [j for j, r in enumerate(rows) if r["id"] in index]
        kept_rows = [rows[j] for j in kept]
        array = self.array[[index[r["id"]] for r in kept_rows]] if kept_rows else self.array[:0]
        return Activations([r["id"] for r in kept_rows], array, labels[kept]), kept_rows


def write(folder: Path, splits: dict[str, SplitActivations]) -> None:
    arrays = {}
    for name, split in splits.items():
        arrays[name] = split.array.astype(np.float32)
        arrays[f"{name}_ids"] = np.array(split.ids, dtype=str)
    np.savez(folder / FILE, **arrays)


def read(folder: Path) -> dict[str, SplitActivations]:
    with np.load(folder / FILE) as data:
        return {name: SplitActivations(data[f"{name}_ids"].tolist(), data[name]) for name in SPLITS}


def of_text(model, data: Encoded, layer: int | None, accelerator, batch_size: int, desc: str) -> np.ndarray:
    """Pooled hidden states of a `Classifier`'s backbone at `layer` (None: the last) for `data`."""
    model.to(accelerator.device).eval()

    def pooled(inputs: dict) -> torch.Tensor:
        with accelerator.autocast():
            return model.pooled(inputs["input_ids"], inputs["attention_mask"], layer)

    with torch.no_grad():
        return batch_outputs(pooled, data, accelerator, batch_size, desc)


def of_images(encoder, rows: list[dict], accelerator, batch_size: int, desc: str) -> np.ndarray:
    """Embeddings of an image encoder (w2s/vision/encoders.py) for image rows."""
    encoder.to(accelerator.device)

    def embed(inputs: dict) -> torch.Tensor:
        with accelerator.autocast():
            images = inputs["images"]  # one batch of batch_outputs; the result is gathered across processes
            return encoder.embed(images, batch_size=len(images)).to(accelerator.device)

    with torch.no_grad():
        return batch_outputs(embed, ImageRows(rows), accelerator, batch_size, desc)
