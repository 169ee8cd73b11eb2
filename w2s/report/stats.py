"""Statistics: metric values, PGR elementwise, bootstrap intervals and seed aggregation.

Uncertainty has two sources and the intervals cover both:
- within a seed, the test set is a sample: `scipy.stats.bootstrap` resamples test examples
  jointly for the weak model, the ceiling and the student (matched by example id), so the
  three accuracies move together, as they do in reality;
- across seeds, training is noisy: the aggregate resamples seeds, and within each drawn seed
  one of its test-set resamples, then takes PGR of the averaged metrics.

PGR is (student - weak) / (ceiling - weak), a ratio whose denominator can come near zero. Its
interval is Fieller's (1954): the set of r for which student - weak - r (ceiling - weak) is
indistinguishable from 0, with the variances and covariance of numerator and denominator taken
from the resamples above. It is exact for a ratio of (approximately) normal quantities and stays
honest when the gap is small: it widens as the gap shrinks, and once the gap itself is within noise
of zero it is unbounded (reported as -inf / inf), where a percentile interval of the ratio would be
undefined (the ratio is undefined in some resamples). The student-minus-weak difference, which needs no ratio,
gets a plain percentile interval beside it. When the point estimate of the gap is below
`results.MIN_GAP`, PGR itself is reported as missing, with the reason.
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
    `bootstrap_distribution` (3 x N_RESAMPLES) feeds `pgr_interval`, `difference_interval` and the
    across-seed aggregate (percentile intervals; BCa's jackknife would cost n fits more).
    """
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
            (np.arange(n),), statistic, vectorized=True, n_resamples=N_RESAMPLES, batch=500,
            method="percentile", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED),
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


def pgr_interval(draws: np.ndarray, weak: float, ceiling: float, student: float) -> tuple[float, float] | tuple[None, None]:
    """Fieller's 95% interval for PGR = (student - weak) / (ceiling - weak): every r with
    (N - r D)^2 <= z^2 Var(N - r D), N = student - weak and D = ceiling - weak at the point values,
    Var and Cov from the resamples `draws` (rows weak, ceiling, student). A quadratic in r: bounded
    when D is clearly non-zero (D^2 > z^2 Var D), otherwise unbounded, returned as (-inf, inf).
    (None, None) when the draws do not vary (a single seed without predictions)."""
    finite = np.isfinite(draws).all(axis=0)
    w, c, s = draws[:, finite]
    if w.size < 2:
        return None, None
    cov = np.cov(s - w, c - w)
    if not cov.any():
        return None, None
    z2 = stats.norm.ppf(0.5 + CONFIDENCE / 2) ** 2
    num, den = student - weak, ceiling - weak
    a = den**2 - z2 * cov[1, 1]
    b = num * den - z2 * cov[0, 1]
    c_ = num**2 - z2 * cov[0, 0]
    if a <= 0:  # the gap is within noise of zero: the confidence set is unbounded
        return -math.inf, math.inf
    root = math.sqrt(max(b * b - a * c_, 0.0))
    return (b - root) / a, (b + root) / a


def difference_interval(draws: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    """Percentile 95% interval of student - weak over the resamples (rows weak, ceiling, student)."""
    diff = draws[2] - draws[0]
    diff = diff[np.isfinite(diff)]
    return _interval(diff) if diff.size > 1 else (None, None)


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
