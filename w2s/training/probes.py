"""Label cleaning: a probe on the strong model's activations second-guesses the weak labels.

Before a weak-to-strong transfer, the weak supervisor's soft labels on half B can be checked
against the geometry of the strong model's (untrained) activations of the same rows. If the
strong model already represents the task, rows that the weak model mislabelled tend to sit
among rows of the other class, and a cheap probe on those activations notices. Then either

  - "relabel": the student trains on the probe's soft predictions instead of the weak labels, or
  - "filter":  the `contamination` fraction of rows the probe finds most suspect is dropped.

Three probes, all binary, all numpy + scikit-learn + scipy:

  - knn:    each row's label is the mean weak label of its k nearest neighbours (not itself).
  - logreg: a logistic regression fit to the hard weak labels, predicted out-of-fold.
  - topo:   TopoCC, the topological filter of Wu et al. (2020), "A Topological Filter for
            Learning with Label Noise", as used in EleutherAI's w2s experiments: per class,
            rows outside the largest connected component of the class's kNN graph are suspect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

PROBES = ("knn", "logreg", "topo")
MODES = ("relabel", "filter")
ISOLATED_BONUS = 1.0  # added to an isolated row's suspicion (which is <= 1), so a filter drops isolated rows first


@dataclass
class CleanedLabels:
    keep: np.ndarray  # bool (n,): rows the student trains on
    p_pos: np.ndarray  # float32 (n,): every row's label after cleaning (weak_p where not relabelled, dropped rows too)
    probe_p: np.ndarray  # float (n,): the probe's own positive-class prediction for every row
    n_changed: int  # kept rows whose hard label (p > 0.5) differs from the weak hard label (relabel mode; else 0)
    n_removed: int  # rows dropped (filter mode; else 0)


def _neighbours(features: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's k nearest neighbours, the row itself excluded.

    Features are standardised (per-dimension z-scores) rather than L2-normalised: transformer
    activations have a few "massive" dimensions that would otherwise dominate Euclidean distance,
    and z-scoring tames them while, unlike cosine, keeping low-dimensional geometry intact
    (in 1-D every L2-normalised point is +-1). kneighbors() without a query leaves each point out
    of its own neighbours, also when it has exact duplicates.
    """
    x = StandardScaler().fit_transform(features)
    return NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)


def _knn(features, weak_p, k):
    probe_p = weak_p[_neighbours(features, k)].mean(axis=1)
    return probe_p, np.abs(probe_p - weak_p)


def _logreg(features, weak_p, seed):
    """Out-of-fold predictions: a probe scored on its own training rows just memorises the weak labels
    (with d >= n it reproduces them exactly), so every row is predicted by a model that never saw it."""
    hard = (weak_p > 0.5).astype(int)
    n_folds = min(5, int(np.bincount(hard, minlength=2).min()))
    if n_folds < 2:  # one class (or a single row of the other): nothing to learn, trust the weak labels
        probe_p = hard.astype(np.float64)
        return probe_p, np.zeros_like(probe_p)
    probe_p = np.empty(len(hard))
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(features, hard):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(features[train], hard[train])
        probe_p[test] = model.predict_proba(features[test])[:, 1]
    return probe_p, np.abs(probe_p - weak_p)


def _topo(features, weak_p, k):
    """TopoCC: clean rows of a class form one big connected blob in the kNN graph; a mislabelled row
    sits among the other class, so within its own (weak) class it has no edges and is "isolated"."""
    n = len(weak_p)
    nbrs = _neighbours(features, k)
    adj = csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), nbrs.ravel())), shape=(n, n))
    adj = adj + adj.T  # symmetrise: an edge if either row is among the other's k nearest (as directed=False does)
    hard = weak_p > 0.5
    kept = np.zeros(n, dtype=bool)
    for cls in (False, True):
        rows = np.flatnonzero(hard == cls)
        if len(rows) == 0:
            continue
        _, comp = connected_components(adj[rows][:, rows], directed=False)
        kept[rows[comp == np.bincount(comp).argmax()]] = True  # largest component (ties: lowest label)
    # probe_p: the mean weak label of the trusted (kept) neighbours; all neighbours if none is trusted
    w = kept[nbrs].astype(np.float64)
    none = w.sum(axis=1) == 0
    w[none] = 1.0
    probe_p = (w * weak_p[nbrs]).sum(axis=1) / w.sum(axis=1)
    suspicion = np.abs(probe_p - weak_p) + ISOLATED_BONUS * ~kept
    return probe_p, suspicion


def _check(features, weak_p, method, k) -> tuple[np.ndarray, np.ndarray]:
    if method not in PROBES:
        raise ValueError(f"unknown probe method {method!r}; valid: {', '.join(PROBES)}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    features = np.asarray(features, dtype=np.float64)
    weak_p = np.asarray(weak_p, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d), got shape {features.shape}")
    if weak_p.ndim != 1 or len(weak_p) != len(features):
        raise ValueError(
            f"weak_p must have shape ({len(features)},) to match features {features.shape}, got {weak_p.shape}"
        )
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
    if not ((weak_p >= 0) & (weak_p <= 1)).all():  # also catches NaN
        raise ValueError("weak_p must be probabilities in [0, 1]")
    if method in ("knn", "topo") and len(weak_p) <= k:
        raise ValueError(f"probe {method!r} needs more rows than neighbours: n={len(weak_p)} <= k={k}")
    return features, weak_p


def probe_predictions(method: str, features, weak_p, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(probe_p, suspicion): the probe's p_pos per row and a per-row score, higher = the weak label is more suspect.

    `k` is the neighbour count of knn and topo (unused by logreg); `seed` drives logreg's folds
    (knn and topo are deterministic). Both arrays are float64 of shape (n,).
    """
    features, weak_p = _check(features, weak_p, method, k)
    if method == "knn":
        return _knn(features, weak_p, k)
    if method == "logreg":
        return _logreg(features, weak_p, seed)
    return _topo(features, weak_p, k)


def clean_labels(
    features, weak_p, method: str = "knn", mode: str = "relabel", k: int = 10, contamination: float = 0.1, seed: int = 0
) -> CleanedLabels:
    """Relabel every row with the probe's prediction, or drop the most suspect `contamination` fraction.

    relabel: keep all rows, p_pos = probe_p (soft). `contamination` is ignored.
    filter:  drop ceil(contamination * n) rows with the highest suspicion (ties: lower index first),
             p_pos = weak_p (dropped rows keep theirs too; use `keep` to select).
    """
    if mode not in MODES:
        raise ValueError(f"unknown cleaning mode {mode!r}; valid: {', '.join(MODES)}")
    is_number = isinstance(contamination, (int, float, np.number)) and not isinstance(contamination, bool)
    if not is_number or not 0 <= contamination < 1:
        raise ValueError(f"contamination must be a fraction in [0, 1), got {contamination!r}")
    probe_p, suspicion = probe_predictions(method, features, weak_p, k=k, seed=seed)
    weak_p = np.asarray(weak_p, dtype=np.float64)
    n = len(weak_p)
    if mode == "relabel":
        p_pos = probe_p.astype(np.float32)
        n_changed = int(((p_pos > 0.5) != (weak_p > 0.5)).sum())  # on the float32 labels the student sees
        return CleanedLabels(np.ones(n, dtype=bool), p_pos, probe_p, n_changed, 0)
    # round first so that e.g. 0.07 * 100 = 7.000000000000001 drops 7 rows, not 8
    n_drop = math.ceil(round(contamination * n, 9))
    keep = np.ones(n, dtype=bool)
    keep[np.argsort(-suspicion, kind="stable")[:n_drop]] = False
    return CleanedLabels(keep, weak_p.astype(np.float32), probe_p, 0, n_drop)
