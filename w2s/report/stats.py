"""Statistics: metric values, PGR elementwise, bootstrap intervals and seed aggregation.

Uncertainty has two sources and the intervals cover both:
- within a seed, the test set is a sample: `scipy.stats.bootstrap` resamples test examples
  jointly for the weak model, the ceiling and the student (matched by example id), so the
  three accuracies move together, as they do in reality;
- across seeds, training is noisy: the aggregate resamples seeds, and within each drawn seed
  one of its test-set resamples, then takes PGR of the averaged metrics.

PGR is (student - weak) / (ceiling - weak). When the ceiling beats the weak model by less than
`results.MIN_GAP`, the ratio is noise divided by almost nothing, so it is reported as missing
with the reason; the same goes for an interval when that happens in any resample.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from w2s.results import MIN_GAP

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0  # fixed random state: the same stages give the same intervals


def metric_values(y: np.ndarray, p: np.ndarray, metric: str, counts: np.ndarray | None = None) -> np.ndarray:
    """Accuracy or AUROC of scores `p` on labels `y`, each example weighted by how often a resample
    drew it (`counts`, shape (..., n); all ones: the plain metric).

    Working from counts keeps a resample O(n): no per-resample sort. AUROC counts, for each
    positive, the negatives scored lower plus half the tied ones (as sklearn does); NaN when a
    resample holds one class only.
    """
    y, p = np.asarray(y) == 1, np.asarray(p, dtype=float)
    counts = np.ones_like(p) if counts is None else counts
    if metric == "accuracy":
        return (counts * ((p > 0.5) == y)).sum(axis=-1) / counts.sum(axis=-1)
    order = np.argsort(p, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(p[order]) != 0])  # first example of each distinct score
    ranked = counts[..., order]
    pos = np.add.reduceat(ranked * y[order], starts, axis=-1)  # weight per distinct score
    neg = np.add.reduceat(ranked * ~y[order], starts, axis=-1)
    below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + neg / 2)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))


def _pgr_array(student, weak, ceiling) -> np.ndarray:
    """PGR elementwise; NaN where the ceiling does not beat the weak model by MIN_GAP."""
    gap = ceiling - weak
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap >= MIN_GAP, (student - weak) / gap, np.nan)


def bootstrap_seed(y, weak, ceiling, student, metric: str = "accuracy"):
    """Resample test examples jointly for the three models of one seed: scipy resamples example
    indices, so one draw is the same examples for weak, ceiling and student (a paired bootstrap).

    Returns scipy's BootstrapResult for the statistic [weak, ceiling, student, pgr]: its
    `bootstrap_distribution` (4 x N_RESAMPLES) feeds the across-seed aggregate. Percentile
    intervals, since a ratio's distribution is skewed and BCa's jackknife costs n fits more.
    """
    y, scores = np.asarray(y), [np.asarray(p, dtype=float) for p in (weak, ceiling, student)]
    n = len(y)

    def statistic(index, axis=-1):
        """Resampled example indices (..., n) -> how often each example was drawn -> the metrics."""
        rows = index.reshape(-1, n)
        flat = (np.arange(len(rows))[:, None] * n + rows).ravel()
        counts = np.bincount(flat, minlength=rows.size).reshape(rows.shape)
        w, c, s = (metric_values(y, p, metric, counts) for p in scores)
        return np.stack([w, c, s, _pgr_array(s, w, c)]).reshape((4,) + index.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # NaN intervals are handled by the caller
        return stats.bootstrap(
            (np.arange(n),), statistic, vectorized=True, n_resamples=N_RESAMPLES, batch=500,
            method="percentile", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED),
        )


def aggregate_seeds(draws: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two-level resampling over seeds: each draw picks seeds with replacement and, for every picked
    seed, one of its test-set resamples (rows weak, ceiling, student), then averages them.

    Returns (mean metrics over the draws' seeds as a 3 x N array, PGR of those means, length N).
    A seed without predictions contributes its point values (a 3 x 1 array).
    """
    rng = np.random.default_rng(SEED)
    k = len(draws)
    stacked = np.stack([np.broadcast_to(d, (3, N_RESAMPLES)) for d in draws])  # a 3 x 1 point repeats
    seed_pick = rng.integers(k, size=(N_RESAMPLES, k))
    draw_pick = rng.integers(N_RESAMPLES, size=(N_RESAMPLES, k))
    means = stacked[seed_pick, :, draw_pick].mean(axis=1).T  # (3, N)
    return means, _pgr_array(means[2], means[0], means[1])


def _interval(values: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    if np.isnan(values).any():
        return None, None
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def _undefined_reason(weak, ceiling, student) -> str:
    """Why `results.pgr` gave None: a missing number, or too small a gap."""
    values = {"weak": weak, "ceiling": ceiling, "student": student}
    missing = [who for who, v in values.items() if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        return f"PGR undefined: no score for {', '.join(missing)} (stage not finished, or AUROC on one class)"
    return f"PGR undefined: ceiling - weak = {ceiling - weak:.3f} < {MIN_GAP}"
