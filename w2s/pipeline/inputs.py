"""What a stage reads: its examples tokenized, its supervisor's labels, cleaned labels, the weights it
starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from w2s.data import Tokenized, tokenize
from w2s.errors import SpecError
from w2s.experiment.gold import choose_gold
from w2s.experiment.kinds import Stage
from w2s.models.loading import load_tokenizer
from w2s.pipeline.store import finished_folder
from w2s.scoring.predictions import read_split_probabilities
from w2s.spec import ExperimentSpec
from w2s.spec.training import Gold
from w2s.training import activations, probes
from w2s.training.batches import Encoded


class LengthLog:
    """What tokenization did to a stage's over-long examples, per split: a note for the log, and
    counts for metrics.json, W&B and the report (`shortened`, `dropped`, `decisive_cut`)."""

    def __init__(self):
        self.notes: list[str] = []
        self.counts: dict[str, dict[str, int]] = {}

    def record(self, split: str, n_rows: int, result: Tokenized, max_ctx: int) -> None:
        counts = {"shortened": result.n_shortened, "dropped": result.n_dropped, "decisive_cut": result.n_decisive_cut}
        self.counts[split] = counts
        if result.n_dropped:
            self.notes.append(f"{split}: dropped {result.n_dropped} of {n_rows} examples longer than max_ctx={max_ctx}")
        if result.n_shortened:
            whole = (
                "its decisive part kept whole in all"
                if not result.n_decisive_cut
                else f"its decisive part alone too long in {result.n_decisive_cut}"
            )
            self.notes.append(
                f"{split}: shortened {result.n_shortened} of {n_rows} examples longer than max_ctx={max_ctx} ({whole})"
            )

    def metrics(self) -> dict:
        totals = {k: sum(c[k] for c in self.counts.values()) for k in ("shortened", "dropped", "decisive_cut")}
        return {**(totals if self.counts else {}), "lengths": self.counts, "notes": self.notes}


_TOKENIZED: dict[tuple, Tokenized] = {}  # this process's tokenizations, by everything they depend on


def encode(
    rows: list[dict], stage: Stage, labels: np.ndarray, lengths: LengthLog, split: str
) -> tuple[Encoded, list[dict]]:
    """The rows tokenized for the stage's model, with their labels. A sweep tokenizes the same split
    for many stages (every loss, pair and round): each (texts, tokenizer, max_ctx, policy, side) is
    tokenized once per process, the texts themselves being the key (exact, and cheap to hash)."""
    tokenizer = load_tokenizer(stage.model)
    dataset = stage.dataset
    key = (
        tokenizer.name_or_path,
        stage.model.trust_remote_code,
        dataset.max_ctx,
        dataset.ctx_policy,
        dataset.truncate_side,
        tuple(r["txt"] for r in rows),
        tuple(r.get("keep_chars") for r in rows),
    )
    if key not in _TOKENIZED:
        _TOKENIZED[key] = tokenize(rows, tokenizer, dataset.max_ctx, dataset.ctx_policy, dataset.truncate_side)
    result = _TOKENIZED[key]
    lengths.record(split, len(rows), result, dataset.max_ctx)
    kept_rows = [rows[i] for i in result.kept]
    return Encoded(
        [r["id"] for r in kept_rows], result.input_ids, labels[result.kept], tokenizer.pad_token_id
    ), kept_rows


def one_hot(rows: list[dict], classes: int) -> np.ndarray:
    """Ground truth as (n, k) class probabilities."""
    y = np.array([r["hard_label"] for r in rows], dtype=np.int64)
    return np.eye(classes, dtype=np.float32)[y]


def supervisor_predictions(root: Path, stage: Stage) -> dict[str, tuple[list[str], np.ndarray]]:
    """The supervisor's (ids, probabilities) on half B (a student's labels) and test (what its
    metrics compare the student with), of its checkpoint under the stage's selection rule."""
    return read_split_probabilities(finished_folder(root, stage.supervisor), ("train_b", "test"), stage.select)


def supervisor_labels(train_b: tuple[list[str], np.ndarray], rows: list[dict]) -> tuple[list[dict], np.ndarray]:
    """Half B rows and the supervisor's soft labels (n, k) on them (rows it could not label are
    dropped), from its predictions on half B (`supervisor_predictions`)."""
    ids, probs = train_b
    where = {id_: i for i, id_ in enumerate(ids)}
    rows = [r for r in rows if r["id"] in where]
    return rows, probs[[where[r["id"]] for r in rows]].reshape(len(rows), probs.shape[1])


def clean_with_probe(root: Path, stage: Stage, rows: list[dict], labels: np.ndarray):
    """Relabel or filter half B with a probe on the strong model's activations; score it against the
    ground truth, which only the toolkit sees (the student trains on the cleaned weak labels). Binary
    tasks only (the spec says so for more classes)."""
    probe = stage.loss.probe
    cached = activations.read(finished_folder(root, stage.probe_features))["train_b"]
    data, rows = cached.select(rows, labels)
    weak_p = data.labels[:, 1]
    try:
        cleaned = probes.clean_labels(
            data.array, weak_p, probe.method, probe.mode, k=probe.k, contamination=probe.contamination, seed=stage.seed
        )
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


def mix_gold(
    rows: list[dict], labels: np.ndarray, confidence: dict[str, float], gold: Gold, seed: int
) -> tuple[np.ndarray, list[int], dict]:
    """The labels with `gold`'s rows' replaced by their ground truth (w2s/experiment/gold.py: how many,
    and which: at random or the least confident first, by the supervisor's `confidence` per id), the
    indices of those rows, and the record of the choice (the stage's gold.json)."""
    ids = [r["id"] for r in rows]
    chosen, record = choose_gold(ids, np.array([confidence[i] for i in ids]), gold, seed)
    mixed = labels.copy()
    mixed[chosen] = one_hot([rows[i] for i in chosen], labels.shape[1])
    record = {"gold_frac": gold.frac, "gold_n": gold.n, **record, "ids": [ids[i] for i in chosen]}
    return mixed, chosen, record


def base_weights(root: Path, stage: Stage) -> str | None:
    """The generatively finetuned weights a stage starts from, if its model has them."""
    return str(finished_folder(root, stage.base) / "model") if stage.base is not None else None


def model_location(spec: ExperimentSpec, stage: Stage) -> str:
    """Where the stage's model is in the spec, for messages: `models.<index>`."""
    return f"models.{[m.display for m in spec.models].index(stage.model.display)}"
