"""Results: one row per finished stage, with performance gap recovered for transfers.

`results.jsonl` is always rebuilt from the finished stage folders (never appended), so it can
never be half-written or hold a row twice.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

PROBE_METRICS = ("probe_changed", "probe_removed", "weak_label_accuracy", "probe_label_accuracy")
# over-long examples of the stage's splits: shortened (to max_ctx), dropped (ctx_policy: drop), and
# shortened with the decisive part itself cut (w2s/data/tokens.py); linear probes count in their features stage
LENGTH_METRICS = ("shortened", "dropped", "decisive_cut")
# stages whose accuracy is a model's own (not a transfer): the weak and ceiling points of PGR
OWN_KINDS = ("ground_truth", "zero_shot")
MIN_GAP = 0.01  # a ceiling that beats the weak model by less than this leaves PGR undefined


def pgr(student: float, weak: float, ceiling: float, min_gap: float = MIN_GAP) -> float | None:
    """(student - weak) / (ceiling - weak); None when the gap is too small for the ratio to mean anything."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (student, weak, ceiling)):
        return None
    if ceiling - weak < min_gap:
        return None
    return (student - weak) / (ceiling - weak)


def expected_calibration_error(probs, labels, bins: int = 10) -> float:
    """ECE of the top label: the gap between confidence and accuracy, averaged over equal-width
    confidence bins weighted by their size (Guo et al. 2017).

    `probs` are (n, k) class probabilities; confidence is that of the predicted (top) class. A student
    trained on weak labels can be as accurate as another yet far more over- or under-confident, which
    accuracy and AUROC do not show.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    predicted = probs.argmax(axis=1)  # the same rule as test_accuracy: a tie goes to the lower class
    confidence = probs[np.arange(len(probs)), predicted]
    correct = predicted == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        members = which == b
        total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")


def stage_row(stage, metrics: dict, weak_metrics: dict | None, ceiling_metrics: dict | None) -> dict:
    row = {
        "kind": stage.kind,
        "stage": stage.name,
        "key": stage.key,
        "dataset": stage.dataset.label,
        "seed": stage.seed,
        "model": stage.model.display,
        "test_accuracy": metrics["test_accuracy"],
        "test_auroc": metrics["test_auroc"],
        **({"test_auroc_macro_ovr": metrics["test_auroc_macro_ovr"]} if "test_auroc_macro_ovr" in metrics else {}),
        "ece": metrics.get("ece"),
        "n_train": metrics["n_train"],
        "n_test": metrics["n_test"],
        "non_embedding_parameters": metrics["non_embedding_parameters"],
        "train_seconds": metrics["train_seconds"],
        **{k: metrics.get(k) for k in LENGTH_METRICS},
    }
    if stage.kind in OWN_KINDS:
        return {**row, "train_split": stage.train_split} if stage.kind == "ground_truth" else row
    weak_acc = weak_metrics["test_accuracy"] if weak_metrics else None
    ceiling_acc = ceiling_metrics["test_accuracy"] if ceiling_metrics else None
    gap_note = None
    value = pgr(metrics["test_accuracy"], weak_acc, ceiling_acc) if weak_acc is not None and ceiling_acc is not None else None
    if value is None:
        gap_note = "ceiling not finished" if ceiling_acc is None else f"ceiling - weak < {MIN_GAP}"
    row.update(
        weak_model=stage.chain[0],
        chain="->".join(stage.chain),
        loss=stage.loss_label,
        weak_accuracy=weak_acc,
        ceiling_accuracy=ceiling_acc,
        weak_auroc=weak_metrics["test_auroc"] if weak_metrics else None,
        ceiling_auroc=ceiling_metrics["test_auroc"] if ceiling_metrics else None,
        pgr=value,
        pgr_note=gap_note,
        agreement=metrics["agreement"],
        supervisor_accuracy=metrics["supervisor_accuracy"],
        agreement_supervisor_right=metrics.get("agreement_supervisor_right"),
        agreement_supervisor_wrong=metrics.get("agreement_supervisor_wrong"),
    )
    if stage.loss.probe is not None:  # what the label probe did to half B before training
        row.update({k: metrics.get(k) for k in PROBE_METRICS})
    return row


def build_rows(stages, metrics: dict[str, dict]) -> list[dict]:
    """Rows for the finished stages of a plan; `metrics` maps stage key -> its metrics.json."""
    def of(stage):
        return metrics.get(stage.key) if stage is not None else None  # a zero-shot stage has no ceiling

    return [stage_row(s, metrics[s.key], of(s.weak), of(s.ceiling)) for s in stages
            if s.key in metrics and s.trains_classifier]


def write_rows(path: Path, rows: list[dict]) -> None:
    """Atomic rewrite: a reader sees the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed writer's; a live one's is ms old
        try:
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                stale.unlink()
        except OSError:
            pass


STALE_SECONDS = 600


def format_table(rows: list[dict]) -> str:
    """The end-of-run summary: one line per stage, transfers with PGR."""
    width = max([10] + [len(r.get("loss") or "") + 1 for r in rows])  # the loss column fits the longest label
    header = (f"{'kind':<16} {'dataset':<12} {'seed':>4}  {'model(s)':<28} {'loss':<{width}} {'acc':>6} {'auroc':>6} "
              f"{'weak':>6} {'ceil':>6} {'PGR':>6}")
    lines = [header, "-" * len(header)]

    def num(v):
        return "   -  " if v is None else f"{v:6.3f}"

    for r in rows:
        models = r.get("chain") or r["model"] + (" (half B)" if r.get("train_split") == "train_b" else "")
        lines.append(
            f"{r['kind']:<16} {r['dataset'][:12]:<12} {r['seed']:>4}  {models[:28]:<28} "
            f"{(r.get('loss') or '-'):<{width}} "
            f"{num(r['test_accuracy'])} {num(r['test_auroc'])} {num(r.get('weak_accuracy'))} "
            f"{num(r.get('ceiling_accuracy'))} {num(r.get('pgr'))}"
        )
    return "\n".join(lines)
