"""Scoring what stages predicted, in one vocabulary for every reader (results.jsonl, W&B, the report).

- predictions.py: a stage folder's predictions (predictions.jsonl, probs.npz, per selection rule);
- metrics.py: every score of a set of predictions and its resampled form (the intervals);
- pgr.py: PGR, its Fieller interval, and why it is undefined when it is;
- rows.py: result rows, one per finished stage that predicts.

No torch: the report and the Python API read results without it. (`w2s.results`, the Python API's
function, returns these rows; this package is named for what it does, so the two never collide.)
"""
