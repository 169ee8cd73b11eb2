"""w2s from Python: the functions behind the CLI, returning DataFrames and figures.

    import w2s

    spec = w2s.load_spec("experiments/quickstart.yaml", ["seeds=[0,1,2]"])
    w2s.run(spec)                                  # trains what is not cached; the rows of results.jsonl
    df = w2s.results("runs/quickstart")            # one row per finished stage, results.jsonl's columns
    w2s.pgr(df)                                    # PGR per pair and loss, with w2s report's intervals
    w2s.plots.accuracy_vs_size(df)                 # the paper's Figure 3, a matplotlib Figure

`w2s report` is `results` + `pgr` + `plots`, written to files. Everything that only reads results
imports no torch (nor transformers or wandb unless it reads W&B); `run` imports them when called.
docs/api.md documents each function.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from w2s.errors import SpecError
from w2s.scoring.metrics import PGR_METRICS
from w2s.spec import ExperimentSpec


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentSpec:
    """A validated experiment spec from its YAML, with `key=value` overrides as `--set` takes them
    (SpecError, naming the key, for anything invalid)."""
    from w2s.spec import load_spec as load

    return load(str(path), list(overrides))


def run(
    spec: ExperimentSpec | str | Path,
    only: list[str] | tuple[str, ...] = (),
    force: list[str] | tuple[str, ...] = (),
    dry_run: bool = False,
    echo=print,
) -> pd.DataFrame:
    """Run the experiment as `w2s run` does (cached stages are reused; progress bars in a notebook too)
    and return results.jsonl's rows. `spec`: an ExperimentSpec or the path of its YAML. Raises
    StagesFailed after the other stages finished when some failed."""
    from w2s.pipeline.runner import run_experiment

    if not isinstance(spec, ExperimentSpec):
        spec = load_spec(spec)
    return pd.DataFrame(run_experiment(spec, only=list(only), force=list(force), dry_run=dry_run, echo=echo))


def results(*run_dirs: str | Path, wandb: str | None = None, group: str | None = None, echo=print) -> pd.DataFrame:
    """One row per finished stage that predicts, in results.jsonl's vocabulary (docs/outputs.md), from
    several run folders at once or from W&B. `superseded` marks stages that a newer one of the same
    slot replaces (the tables leave them out); `folder` is where its predictions are (None from W&B)."""
    from w2s.report.records import records_of

    return pd.DataFrame(records_of(*run_dirs, wandb=wandb, group=group, echo=echo))


def _records(df: pd.DataFrame | list[dict]) -> list[dict]:
    """A results DataFrame back as the records the tables read (missing values as None)."""
    if isinstance(df, list):
        return df
    return df.astype(object).where(df.notna(), None).to_dict("records")


def pgr(
    df: pd.DataFrame | list[dict], by: list[str] | None = None, metric: str = "accuracy", per_seed: bool = False
) -> pd.DataFrame:
    """PGR with `w2s report`'s 95% intervals and "undefined" notes: per transfer stage (`per_seed`,
    per_seed.csv), or the seed mean per group (summary.csv): by default each experiment's dataset x
    chain x loss, or the columns `by`. `df` is what `results` returned (a filtered copy too)."""
    from w2s.report.tables import GROUP_COLUMNS, seed_rows, summary_rows

    if metric not in PGR_METRICS:
        raise SpecError(f"pgr: unknown metric {metric!r}; use one of {', '.join(PGR_METRICS)}")
    rows, draws = seed_rows(_records(df), metric)
    if per_seed:
        return rows
    return summary_rows(rows, draws, metric, by=list(by) if by is not None else GROUP_COLUMNS)


def ground_truth(df: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """Each model's own scores (ground truth or zero-shot), mean over seeds: the figures' ceilings
    and supervisors."""
    from w2s.report.tables import ground_truth_rows

    return ground_truth_rows(_records(df))
