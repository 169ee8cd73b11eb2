"""A stage folder's predictions: the tidy view pandas reads (predictions.jsonl, a line per example and
split), the whole (n, k) probabilities where there are more than two classes (probs.npz), and the
checkpoints other selection rules chose (predictions.<rule>.jsonl, probs.<rule>.npz). Stages write
them; students, ensembles, the diagnostics and the report read them back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from w2s.jsonfiles import write_jsonl

PROBS_FILE = "probs.npz"  # (n, k) class probabilities per split, for k > 2


def prediction_rows(split: str, rows: list[dict], probs: np.ndarray) -> list[dict]:
    """predictions.jsonl's lines for one split: the tidy view (pandas reads it), one per example.

    Two classes: p_pos, the positive class's probability, which describes the prediction fully. More
    classes: the predicted class and its probability; the whole (n, k) array goes to probs.npz
    (`write_probabilities`), since a 1000-way split as JSON would be hundreds of megabytes.
    """
    predicted = probs.argmax(axis=1)
    if probs.shape[1] == 2:
        extra = [{"p_pos": float(p)} for p in probs[:, 1]]
    else:
        extra = [{"confidence": float(c)} for c in probs[np.arange(len(probs)), predicted]]
    return [
        {"split": split, "id": r["id"], "hard_label": r["hard_label"], "predicted": int(c), **e}
        for r, c, e in zip(rows, predicted, extra)
    ]


def write_probabilities(
    folder: Path, splits: dict[str, tuple[list[dict], np.ndarray]], rule: str | None = None
) -> None:
    """probs.npz (or, for another rule's checkpoint, probs.<rule>.npz): per split the (n, k)
    probabilities (float32) and the row ids, in order."""
    arrays = {}
    for split, (rows, probs) in splits.items():
        arrays[split] = probs.astype(np.float32)
        arrays[f"{split}_ids"] = np.array([r["id"] for r in rows], dtype=str)
    np.savez(folder / rule_file(PROBS_FILE, rule), **arrays)


def rule_file(name: str, rule: str | None) -> str:
    """A stage folder's file of one selection rule's checkpoint (w2s/experiment/selection.py): `name` itself
    (predictions.jsonl, probs.npz) holds the stage's own result; the checkpoints other rules chose,
    where the stage evaluated, are `<stem>.<rule>.<suffix>`."""
    if rule is None:
        return name
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.{rule}.{suffix}"


def read_probabilities(folder: Path, split: str, rule: str | None = None) -> tuple[list[str], np.ndarray]:
    """A finished stage's class probabilities on one split: (ids, float32 (n, k)). Binary stages keep
    p_pos in predictions.jsonl (column 0 is 1 - p_pos); others keep them in probs.npz. `rule`: the
    checkpoint that selection rule chose, where the stage kept one apart from its result (else its
    result is that checkpoint: a stage that did not evaluate has one, a student is its rule's)."""
    return read_split_probabilities(folder, (split,), rule)[split]


def read_split_probabilities(
    folder: Path, splits: tuple[str, ...], rule: str | None = None
) -> dict[str, tuple[list[str], np.ndarray]]:
    """`read_probabilities` of several splits, from one read of the file."""
    if rule is not None and (folder / rule_file("predictions.jsonl", rule)).is_file():
        probs_file, predictions_file = rule_file(PROBS_FILE, rule), rule_file("predictions.jsonl", rule)
    else:
        probs_file, predictions_file = PROBS_FILE, "predictions.jsonl"
    if (folder / probs_file).is_file():
        with np.load(folder / probs_file) as data:
            return {split: (data[f"{split}_ids"].tolist(), data[split]) for split in splits}
    found = {split: ([], []) for split in splits}  # split -> (ids, p_pos)
    lines = [line for line in (folder / predictions_file).read_text().splitlines() if line.strip()]
    for row in json.loads("[" + ",".join(lines) + "]"):  # one parse: a split of many rows reads fast
        if row["split"] in found:
            ids, p_pos = found[row["split"]]
            ids.append(row["id"])
            p_pos.append(row["p_pos"])
    read = {}
    for split, (ids, p_pos) in found.items():
        p = np.array(p_pos, dtype=np.float32)
        read[split] = ids, np.stack([1 - p, p], axis=1)
    return read


def prediction_lines(folder: Path, splits: dict[str, tuple[list[dict], np.ndarray]]) -> list[dict]:
    """The lines of a stage's predictions.jsonl (`w2s.pipeline.store.write_stage` writes them); with
    more than two classes the probabilities also go to `folder`/probs.npz."""
    if any(probs.shape[1] > 2 for _, probs in splits.values()):
        write_probabilities(folder, splits)
    return [line for name, (rows, probs) in splits.items() for line in prediction_rows(name, rows, probs)]


def write_rule_predictions(folder: Path, splits: dict[str, tuple[list[dict], np.ndarray]], rule: str) -> None:
    """predictions.<rule>.jsonl (and probs.<rule>.npz): the checkpoint another selection rule chose."""
    if any(probs.shape[1] > 2 for _, probs in splits.values()):
        write_probabilities(folder, splits, rule)
    lines = [line for name, (rows, probs) in splits.items() for line in prediction_rows(name, rows, probs)]
    write_jsonl(folder / rule_file("predictions.jsonl", rule), lines)
