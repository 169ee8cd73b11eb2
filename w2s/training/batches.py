"""What the training loop reads a split from: one small interface, three kinds of rows.

`train`, `predict` and `batch_outputs` (w2s/training/loop.py) take any `Batches`: its length, a length per
example (training batches group similar lengths, so little compute goes to padding; fixed-size rows
say 1) and `collate`, which turns example indices into {"inputs": the model's keyword arguments,
"labels": (b, k) class probabilities where the rows carry labels, "index": the row indices}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


class Batches(Protocol):
    def __len__(self) -> int: ...

    def lengths(self) -> np.ndarray: ...

    def collate(self, indices: list[int]) -> dict: ...


@dataclass
class Encoded:
    """A tokenized split: token ids per example and (soft) labels as class probabilities (n, k)."""

    ids: list[str]
    input_ids: list[list[int]]
    labels: np.ndarray  # float32 (n, k)
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids])

    def collate(self, indices: list[int]) -> dict:
        """Right-padded ids and mask (the backbone's keyword arguments), labels, row indices."""
        seqs = [self.input_ids[i] for i in indices]
        width = max(map(len, seqs))
        input_ids = np.full((len(seqs), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, seq in enumerate(seqs):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return {
            "inputs": {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)},
            "labels": torch.from_numpy(self.labels[indices]),
            "index": torch.tensor(indices),
        }


@dataclass
class Activations:
    """Cached activations per example (n, d) with labels: what a linear probe's head trains on."""

    ids: list[str]
    array: np.ndarray  # float32 (n, d)
    labels: np.ndarray  # float32 (n, k)

    def __len__(self) -> int:
        return len(self.array)

    def lengths(self) -> np.ndarray:
        return np.ones(len(self), dtype=np.int64)

    def collate(self, indices: list[int]) -> dict:
        return {
            "inputs": {"features": torch.from_numpy(self.array[indices])},  # ProbeHead.forward(features)
            "labels": torch.from_numpy(self.labels[indices]),
            "index": torch.tensor(indices),
        }


class ImageRows:
    """Image rows, unlabelled, for an image encoder: the images themselves (PIL images or file paths;
    the encoder opens and converts them)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> np.ndarray:
        return np.ones(len(self.rows), dtype=np.int64)

    def collate(self, indices: list[int]) -> dict:
        return {"inputs": {"images": [self.rows[i]["image"] for i in indices]}, "index": torch.tensor(indices)}
