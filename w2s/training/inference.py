"""Inference: a function of a model over every example of a split, gathered across processes
(`batch_outputs`), and class probabilities in their canonical form (`predict`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from w2s.training.batches import Batches
from w2s.training.launch import no_progress_bar


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


@torch.no_grad()
def batch_outputs(
    fn: Callable[[dict], torch.Tensor], data: Batches, accelerator: Accelerator, batch_size: int, desc: str | None
) -> np.ndarray:
    """`fn(inputs) -> (b, d)` over every example of `data`, as an (n, d) float32 array on every process.

    Processes can hold batches of different sizes (the short last batch); all_gather needs equal
    shapes, so pad with index -1 and drop it after. Plain gather, not gather_for_metrics: its
    duplicate trimming assumes equal batches and could cut real examples. Writing by index counts
    every example once; the repeats Accelerate adds for even batch counts overwrite.
    """
    order = np.argsort(-data.lengths(), kind="stable")  # similar lengths together: little padding
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    pin = accelerator.device.type == "cuda"  # pinned host memory: the loader's copies to the GPU do not wait
    loader = DataLoader(_Rows(len(data)), batch_sampler=batches, collate_fn=data.collate, pin_memory=pin)
    loader = accelerator.prepare(loader)
    result = None
    for batch in tqdm(loader, desc=desc, disable=no_progress_bar(accelerator) or desc is None, leave=False):
        out = fn(batch["inputs"]).float()
        index, out = accelerator.pad_across_processes((batch["index"], out), dim=0, pad_index=-1)
        index, out = accelerator.gather((index, out))
        keep = (index >= 0).cpu().numpy()
        if result is None:
            result = np.full((len(data), out.shape[1]), np.nan, dtype=np.float32)
        result[index.cpu().numpy()[keep]] = out.cpu().numpy()[keep]
    assert result is not None and not np.isnan(result).any(), "some examples were not computed"
    return result


def predict(model, data: Batches, accelerator: Accelerator, batch_size: int, desc: str = "predict") -> np.ndarray:
    """Class probabilities (n, k) for every example, each counted once across processes."""
    model.eval()
    probs = batch_outputs(
        lambda inputs: torch.softmax(model(**inputs).float(), dim=-1), data, accelerator, batch_size, desc
    )
    model.train()
    return canonical_probabilities(probs)


def canonical_probabilities(probs: np.ndarray) -> np.ndarray:
    """float64 class probabilities. Two classes are described by the positive one alone (predictions.jsonl
    stores p_pos), so column 0 is set to exactly 1 - p_pos: a binary stage's metrics are those of p_pos."""
    probs = probs.astype(np.float64)
    if probs.shape[1] == 2:
        probs[:, 0] = 1 - probs[:, 1]
    return probs
