"""Performance gap recovered: PGR = (student - weak) / (ceiling - weak), its interval, and why it is
undefined when it is.

Uncertainty has two sources and the intervals cover both:
- within a seed, the test set is a sample: the weak model, the ceiling and the student are resampled
  jointly over test examples (`w2s.scoring.metrics.bootstrap_seed`), so their scores move together, as they
  do in reality;
- across seeds, training is noisy: the aggregate resamples seeds, and within each drawn seed one of
  its test-set resamples (`w2s.scoring.metrics.aggregate_seeds`), then takes PGR of the averaged scores.

PGR is a ratio whose denominator can come near zero. Its interval is Fieller's (1954): the set of r
for which student - weak - r (ceiling - weak) is indistinguishable from 0, with the variances and
covariance of numerator and denominator taken from the resamples. It is exact for a ratio of
(approximately) normal quantities and stays honest when the gap is small: it widens as the gap
shrinks, and once the gap itself is within noise of zero it is unbounded (-inf, inf), where a
percentile interval of the ratio would be undefined (the ratio is undefined in some resamples). The
student-minus-weak difference, which needs no ratio, gets a plain percentile interval beside it.
When the point estimate of the gap is below MIN_GAP, PGR is missing, with the reason (`undefined_note`).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from w2s.scoring.metrics import CONFIDENCE, percentile_interval

MIN_GAP = 0.01  # a ceiling that beats the weak model by less than this leaves PGR undefined


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pgr(student: float | None, weak: float | None, ceiling: float | None, min_gap: float = MIN_GAP) -> float | None:
    """(student - weak) / (ceiling - weak); None when a score is missing or the gap is too small for
    the ratio to mean anything."""
    if any(_missing(v) for v in (student, weak, ceiling)) or ceiling - weak < min_gap:
        return None
    return (student - weak) / (ceiling - weak)


def undefined_note(weak, ceiling, student, absent: tuple[str, ...] = ()) -> str | None:
    """Why `pgr` gives None for these scores (None when it does not): `absent` names the stages that
    are not finished (`weak`, `ceiling`, `student`); a finished stage without a score is AUROC on a
    test split of one class; else the gap is too small."""
    if absent:
        return f"{', '.join(absent)} not finished"
    values = {"weak": weak, "ceiling": ceiling, "student": student}
    missing = [who for who, v in values.items() if _missing(v)]
    if missing:
        return f"no score for {', '.join(missing)} (AUROC of a test split with one class)"
    if ceiling - weak < MIN_GAP:
        return f"ceiling - weak = {ceiling - weak:.3f} < {MIN_GAP}"
    return None


def pgr_interval(
    draws: np.ndarray, weak: float, ceiling: float, student: float
) -> tuple[float, float] | tuple[None, None]:
    """Fieller's interval for PGR at CONFIDENCE: every r with (N - r D)^2 <= z^2 Var(N - r D),
    N = student - weak and D = ceiling - weak at the point values, Var and Cov from the resamples
    `draws` (rows weak, ceiling, student). A quadratic in r: bounded when D is clearly non-zero
    (D^2 > z^2 Var D), otherwise unbounded, returned as (-inf, inf). (None, None) when the draws do
    not vary (a single seed without predictions)."""
    finite = np.isfinite(draws).all(axis=0)
    w, c, s = draws[:, finite]
    if w.size < 2:
        return None, None
    cov = np.cov(s - w, c - w)
    if not cov.any():
        return None, None
    z2 = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2) ** 2
    num, den = student - weak, ceiling - weak
    a = den**2 - z2 * cov[1, 1]
    b = num * den - z2 * cov[0, 1]
    c_ = num**2 - z2 * cov[0, 0]
    if a <= 0:  # the gap is within noise of zero: the confidence set is unbounded
        return -math.inf, math.inf
    root = math.sqrt(max(b * b - a * c_, 0.0))
    return (b - root) / a, (b + root) / a


def unbounded_note(low: float | None, note: str | None) -> str | None:
    """The note of a PGR whose interval is unbounded (else `note` as it was)."""
    if low is not None and math.isinf(low):
        return "CI unbounded: ceiling - weak is within noise of 0 (see student_minus_weak)"
    return note


def difference_interval(draws: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    """Percentile interval of student - weak over the resamples (rows weak, ceiling, student)."""
    diff = draws[2] - draws[0]
    diff = diff[np.isfinite(diff)]
    return percentile_interval(diff) if diff.size > 1 else (None, None)
