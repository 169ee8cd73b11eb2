"""What a stage reads: its examples tokenized, its supervisor's labels, cleaned labels, the weights it
starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from w2s import data as data_mod
from w2s import activations
from w2s import probes
from w2s.models import load_tokenizer
from w2s.pipeline.store import finished_folder, read_predictions
from w2s.plan import Stage
from w2s.spec import ExperimentSpec, SpecError
from w2s.batches import Encoded

def encode(rows: list[dict], stage: Stage, labels: np.ndarray, note: list[str], split: str) -> tuple[Encoded, list[dict]]:
    tokenizer = load_tokenizer(stage.model)
    input_ids, kept, n_dropped, n_truncated = data_mod.tokenize(
        rows, tokenizer, stage.dataset.max_ctx, stage.dataset.ctx_policy
    )
    if n_dropped or n_truncated:
        note.append(
            f"{split}: {'dropped' if n_dropped else 'truncated'} {n_dropped or n_truncated} of {len(rows)} "
            f"examples longer than max_ctx={stage.dataset.max_ctx}"
        )
    kept_rows = [rows[i] for i in kept]
    return Encoded([r["id"] for r in kept_rows], input_ids, labels[kept], tokenizer.pad_token_id), kept_rows


def one_hot(rows: list[dict]) -> np.ndarray:
    y = np.array([r["hard_label"] for r in rows], dtype=np.int64)
    return np.eye(2, dtype=np.float32)[y]


def supervisor_labels(root: Path, stage: Stage, rows: list[dict]) -> tuple[list[dict], np.ndarray]:
    """Half B rows and the supervisor's soft labels on them (rows it could not label are dropped)."""
    preds = read_predictions(finished_folder(root, stage.supervisor), "train_b")
    rows = [r for r in rows if r["id"] in preds]
    p = np.array([preds[r["id"]] for r in rows], dtype=np.float32)
    return rows, np.stack([1 - p, p], axis=1)


def clean_with_probe(root: Path, stage: Stage, rows: list[dict], labels: np.ndarray):
    """Relabel or filter half B with a probe on the strong model's activations; score it against the
    ground truth, which only the toolkit sees (the student trains on the cleaned weak labels)."""
    probe = stage.loss.probe
    cached = activations.read(finished_folder(root, stage.probe_activations))["train_b"]
    data, rows = cached.select(rows, labels)
    weak_p = data.labels[:, 1]
    try:
        cleaned = probes.clean_labels(data.array, weak_p, probe.method, probe.mode, k=probe.k,
                                      contamination=probe.contamination, seed=stage.seed)
    except ValueError as err:  # e.g. fewer rows in half B than neighbours asked for
        raise SpecError(f"{stage.name}: probe: {err}") from None
    truth = np.array([r["hard_label"] for r in rows])
    keep = cleaned.keep
    metrics = {
        "probe_changed": int(cleaned.n_changed),
        "probe_removed": int(cleaned.n_removed),
        "weak_label_accuracy": float(((weak_p > 0.5) == truth).mean()),
        "probe_label_accuracy": float(((cleaned.p_pos[keep] > 0.5) == truth[keep]).mean()),
    }
    p = cleaned.p_pos[keep].astype(np.float32)
    return [r for r, k in zip(rows, keep) if k], np.stack([1 - p, p], axis=1), metrics


def base_weights(root: Path, stage: Stage) -> str | None:
    """The generatively finetuned weights a stage starts from, if its model has them."""
    return str(finished_folder(root, stage.base) / "model") if stage.base is not None else None


def model_key(spec: ExperimentSpec, stage: Stage) -> str:
    """Where the stage's model is in the spec, for messages: `models.<index>`."""
    return f"models.{[m.display for m in spec.models].index(stage.model.display)}"
