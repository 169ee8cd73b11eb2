"""Every score w2s reports, in one place: accuracy, AUROC and ECE of a stage's predictions, and
their resampled forms for the report's intervals.

Predictions are (n, k) class probabilities; the predicted class is the top one (a tie goes to the
lower class, so two classes predict positive only when p_pos > 0.5). AUROC is the binary one for two
classes; with more, `auroc` returns None and `macro_ovr_auroc` the macro average of the one-vs-rest
AUROCs. Resampling (the report's within-seed intervals) weighs each test example by how often a
bootstrap draw picked it: `metric_values`, `bootstrap_seed`, `aggregate_seeds`.

A stage's scores are `test_scores` (its metrics.json, each selection rule's checkpoint, an
ensemble's), under the names `SCORE_COLUMNS` gives every result row; the scores PGR is taken on,
with intervals, are `PGR_METRICS`. Adding a metric is this file (docs/extending.md).
"""

from __future__ import annotations

import warnings

import numpy as np

# every stage's scores on test, as metrics.json and the result rows name them (`test_scores`)
SCORE_COLUMNS = ("test_accuracy", "test_auroc", "ece")
# the metrics PGR and its intervals are taken on (`w2s report --metric`): each has a resampled form in
# `metric_values`, computed from the prediction column it reads
PGR_METRICS = ("accuracy", "auroc")
PREDICTION_COLUMN = {"accuracy": "predicted", "auroc": "p_pos"}  # auroc: two classes only

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0  # fixed random state: the same stages give the same intervals


def test_scores(probs, labels) -> dict:
    """The scores of (n, k) test probabilities against integer labels: `SCORE_COLUMNS`, and with more
    than two classes the macro one-vs-rest AUROC too."""
    probs = np.asarray(probs)
    scores = {
        "test_accuracy": accuracy(probs, labels),
        "test_auroc": auroc(probs, labels),
        "ece": expected_calibration_error(probs, labels),
    }
    if probs.shape[1] > 2:
        scores["test_auroc_macro_ovr"] = macro_ovr_auroc(probs, labels)
    return scores


def accuracy(probs, labels) -> float:
    """Top-1 accuracy of (n, k) probabilities against integer labels."""
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean())


def auroc(probs, labels) -> float | None:
    """Binary AUROC of p_pos (two classes, both present in `labels`); None otherwise. sklearn's
    roc_auc_score, computed as `metric_values` does: its input checks cost more than a tiny stage's
    prediction."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.shape[1] != 2 or len(set(labels.tolist())) != 2:
        return None
    return float(metric_values(labels, probs[:, 1], "auroc"))


def macro_ovr_auroc(probs, labels) -> float | None:
    """Macro average of the one-vs-rest AUROCs (k > 2 classes); None where a class is absent."""
    from sklearn.metrics import roc_auc_score

    probs, labels = np.asarray(probs), np.asarray(labels)
    k = probs.shape[1]
    if len(set(labels.tolist())) != k:
        return None
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(k))))


def expected_calibration_error(probs, labels, bins: int = 10) -> float:
    """ECE of the top label: the gap between confidence and accuracy, averaged over equal-width
    confidence bins weighted by their size (Guo et al. 2017).

    A student trained on weak labels can be as accurate as another yet far more over- or
    under-confident, which accuracy and AUROC do not show.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    predicted = probs.argmax(axis=1)  # the same rule as accuracy: a tie goes to the lower class
    confidence = probs[np.arange(len(probs)), predicted]
    correct = predicted == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        members = which == b
        total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


# ---------------------------------------------------------------------------------------------
# resampled forms (the report's intervals; w2s/scoring/pgr.py turns them into PGR intervals)


def metric_values(y: np.ndarray, p: np.ndarray, metric: str, counts: np.ndarray | None = None) -> np.ndarray:
    """Accuracy of predicted classes `p`, or AUROC of positive-class scores `p` (two classes), on labels
    `y`, each example weighted by how often a resample drew it (`counts`, shape (..., n); all ones: the
    plain metric).

    Working from counts keeps a resample O(n): no per-resample sort. AUROC counts, for each
    positive, the negatives scored lower plus half the tied ones (as sklearn does); NaN when a
    resample holds one class only.
    """
    if metric == "accuracy":
        correct = np.asarray(p) == np.asarray(y)
        counts = np.ones(correct.shape) if counts is None else counts
        return (counts * correct).sum(axis=-1) / counts.sum(axis=-1)
    y, p = np.asarray(y) == 1, np.asarray(p, dtype=float)
    counts = np.ones_like(p) if counts is None else counts
    order = np.argsort(p, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(p[order]) != 0])  # first example of each distinct score
    ranked = counts[..., order]
    pos = np.add.reduceat(ranked * y[order], starts, axis=-1)  # weight per distinct score
    neg = np.add.reduceat(ranked * ~y[order], starts, axis=-1)
    below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + neg / 2)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))


def bootstrap_seed(y, weak, ceiling, student, metric: str = "accuracy"):
    """Resample test examples jointly for the three models of one seed: scipy resamples example
    indices, so one draw is the same examples for weak, ceiling and student (a paired bootstrap).

    Returns scipy's BootstrapResult for the statistic [weak, ceiling, student]: its
    `bootstrap_distribution` (3 x N_RESAMPLES) feeds the PGR and difference intervals (w2s/scoring/pgr.py)
    and the across-seed aggregate (percentile intervals; BCa's jackknife would cost n fits more).
    """
    from scipy import stats

    y, scores = np.asarray(y), [np.asarray(p, dtype=float) for p in (weak, ceiling, student)]
    n = len(y)

    def statistic(index, axis=-1):
        """Resampled example indices (..., n) -> how often each example was drawn -> the metrics."""
        rows = index.reshape(-1, n)
        flat = (np.arange(len(rows))[:, None] * n + rows).ravel()
        counts = np.bincount(flat, minlength=rows.size).reshape(rows.shape)
        w, c, s = (metric_values(y, p, metric, counts) for p in scores)
        return np.stack([w, c, s]).reshape((3,) + index.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # NaN intervals are handled by the caller
        return stats.bootstrap(
            (np.arange(n),),
            statistic,
            vectorized=True,
            n_resamples=N_RESAMPLES,
            batch=500,
            method="percentile",
            confidence_level=CONFIDENCE,
            rng=np.random.default_rng(SEED),
        )


def aggregate_seeds(draws: list[np.ndarray]) -> np.ndarray:
    """Two-level resampling over seeds: each draw picks seeds with replacement and, for every picked
    seed, one of its test-set resamples (rows weak, ceiling, student), then averages them.

    Returns the mean metrics over each draw's seeds, a 3 x N array (rows weak, ceiling, student).
    A seed without predictions contributes its point values (a 3 x 1 array).
    """
    rng = np.random.default_rng(SEED)
    k = len(draws)
    stacked = np.stack([np.broadcast_to(d, (3, N_RESAMPLES)) for d in draws])  # a 3 x 1 point repeats
    seed_pick = rng.integers(k, size=(N_RESAMPLES, k))
    draw_pick = rng.integers(N_RESAMPLES, size=(N_RESAMPLES, k))
    return stacked[seed_pick, :, draw_pick].mean(axis=1).T  # (3, N)


def percentile_interval(values: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    """The central CONFIDENCE interval of resampled values; (None, None) if any is NaN."""
    if np.isnan(values).any():
        return None, None
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def transfer_diagnostics(student: dict, supervisor: dict, truth: dict[str, int]) -> dict:
    """How a student relates to its supervisor, from both stages' predictions ({split: (ids, (n, k)
    probabilities)}; `truth`: test ids -> label), so it needs no retraining:

    - on test: agreement, the supervisor's accuracy, agreement where the supervisor was right and
      where it was wrong; of the supervisor's errors the share the student repeats (error_inheritance,
      the same as agreement_supervisor_wrong) and the share it gets right (error_correction: with two
      classes the rest);
    - on half B, the rows the student trained on: its misfit on its weak labels (Charikar et al.
      2024), the mean squared distance between its probabilities and the supervisor's, and the share
      of rows where their classes differ (misfit_disagreement);
    - on test, their bound in the loss it is stated in (squared distance; Charikar et al. 2024,
      Theorem 1: for a realisable, convex strong class, gain >= misfit): misfit_test, the student's
      gain over its supervisor in Brier score (brier_gain), and bound_slack = gain - misfit, with
      its standard error over the test rows (per row it is 2 (p_s - y) . (p_w - p_s)).
    """
    s_ids, s_test = student["test"]
    where = {id_: i for i, id_ in enumerate(supervisor["test"][0])}
    both = [(j, where[id_]) for j, id_ in enumerate(s_ids) if id_ in where]
    mine = s_test[[j for j, _ in both]].argmax(axis=1)
    theirs = supervisor["test"][1][[i for _, i in both]].argmax(axis=1)
    y = np.array([truth[s_ids[j]] for j, _ in both])
    agrees, right = mine == theirs, theirs == y
    out = {
        "agreement": float(agrees.mean()),
        "supervisor_accuracy": float(right.mean()),
        # does the student copy the supervisor's mistakes, or only its correct answers?
        "agreement_supervisor_right": _mean_or_none(agrees[right]),
        "agreement_supervisor_wrong": _mean_or_none(agrees[~right]),
        "error_inheritance": _mean_or_none(agrees[~right]),
        "error_correction": _mean_or_none((mine == y)[~right]),
    }
    out.update(misfit_bound(s_test[[j for j, _ in both]], supervisor["test"][1][[i for _, i in both]], y))
    b_ids, s_b = student["train_b"]
    where = {id_: i for i, id_ in enumerate(supervisor["train_b"][0])}
    both = [(j, where[id_]) for j, id_ in enumerate(b_ids) if id_ in where]
    mine, theirs = s_b[[j for j, _ in both]], supervisor["train_b"][1][[i for _, i in both]]
    out["misfit"] = float(((mine - theirs) ** 2).sum(axis=1).mean()) if both else None
    out["misfit_disagreement"] = float((mine.argmax(axis=1) != theirs.argmax(axis=1)).mean()) if both else None
    return out


def misfit_bound(student: np.ndarray, supervisor: np.ndarray, y: np.ndarray) -> dict:
    """On rows with labels `y`, in squared loss over the (n, k) probabilities: the misfit between the
    student and its supervisor, the student's gain over it (Brier score, lower is better), and the
    slack of Charikar et al.'s bound gain >= misfit, with its standard error over the rows."""
    if not len(y):
        return dict.fromkeys(("misfit_test", "brier_gain", "bound_slack", "bound_slack_se"))
    truth = np.eye(student.shape[1])[y]
    misfit = ((student - supervisor) ** 2).sum(axis=1)
    gain = ((supervisor - truth) ** 2).sum(axis=1) - ((student - truth) ** 2).sum(axis=1)
    slack = gain - misfit  # = 2 (student - truth) . (supervisor - student), row by row
    se = float(slack.std(ddof=1) / np.sqrt(len(slack))) if len(slack) > 1 else None
    return {
        "misfit_test": float(misfit.mean()),
        "brier_gain": float(gain.mean()),
        "bound_slack": float(slack.mean()),
        "bound_slack_se": se,
    }


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None
