"""Running a sweep: every stage of the plan trained once, here or in another process, and written.

- runner.py: what to do with each stage, the queue of claims, one stage run and published;
- stages.py: one class per stage kind: what it reads, trains, predicts and reports;
- inputs.py: what a stage reads (tokens, its supervisor's labels, label probes, gold rows, weights);
- checkpoints.py, evaluation.py: evaluation during training; a classifier stage's metrics;
- store.py, locks.py: the stage-folder format and its file protocol; locks for shared filesystems;
- summary.py, tracking.py: results.jsonl and the W&B summary run; each stage's W&B run;
- workers.py, submit.py, status.py: `--workers`, `w2s submit` (one worker command), `w2s status`.
"""
