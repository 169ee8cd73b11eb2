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

from w2s.errors import SpecError, StagesFailed
from w2s.scoring.metrics import PGR_METRICS
from w2s.spec import ExperimentSpec

__all__ = ["load_spec", "run", "results", "pgr", "ground_truth", "SpecError", "StagesFailed"]

# what every row of `results` has, and the tables need: a frame without them is not one `results` returned
RESULT_COLUMNS = ("kind", "experiment", "key", "dataset", "model", "seed", "test_accuracy")


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentSpec:
    """A validated experiment spec from its YAML, with `key=value` overrides as `--set` takes them
    (SpecError, naming the key, for anything invalid)."""
    from w2s.spec import load_spec as load

    _check_path("load_spec", "path", path)
    return load(str(path), _strings("load_spec", "overrides", overrides, "['seeds=[0,1]']"))


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
        _check_path("run", "spec", spec, "an ExperimentSpec (w2s.load_spec) or the path of its YAML")
        spec = load_spec(spec)
    only, force = (_strings("run", name, v, "['transfer']") for name, v in (("only", only), ("force", force)))
    return pd.DataFrame(run_experiment(spec, only=only, force=force, dry_run=dry_run, echo=echo))


def results(*run_dirs: str | Path, wandb: str | None = None, group: str | None = None, echo=print) -> pd.DataFrame:
    """One row per finished stage that predicts, in results.jsonl's vocabulary (docs/outputs.md), from
    several run folders at once (a list of them too) or from W&B: transfers with their weak model's and
    ceiling's scores and PGR, as results.jsonl has them. `superseded` marks stages that a newer one of
    the same slot replaces (the tables leave them out); `folder` is where its predictions are (None
    from W&B)."""
    from w2s.report.records import records_of

    folders = [p for given in run_dirs for p in (given if isinstance(given, (list, tuple)) else [given])]
    for folder in folders:
        _check_path("results", "run_dirs", folder, "run folders (str or Path), one argument each or a list")
    records = records_of(*folders, wandb=wandb, group=group, echo=echo, who="results")
    return pd.DataFrame(records, columns=_columns(records))


def _columns(records: list[dict]) -> list[str]:
    """results.jsonl's columns in its order (w2s.scoring.rows), then what the report adds."""
    from w2s.report.records import REPORT_COLUMNS

    own = dict.fromkeys(k for r in records for k in r if k not in REPORT_COLUMNS)
    return [*own, *REPORT_COLUMNS]


def _records(df, who: str) -> list[dict]:
    """The rows `results` returned (a filtered copy too) as the records the tables read (missing values
    as None); TypeError or ValueError, naming `df`, for anything else."""
    if isinstance(df, (str, Path)) or (isinstance(df, (list, tuple)) and df and isinstance(df[0], (str, Path))):
        raise TypeError(
            f"{who}: df is the DataFrame w2s.results returned, not run folders; "
            f"use w2s.{who}(w2s.results({_shown(df)}))"
        )
    records = isinstance(df, list) and all(isinstance(r, dict) for r in df)  # already records: kept as they are
    if not records and not isinstance(df, pd.DataFrame):
        raise TypeError(f"{who}: df is the DataFrame w2s.results returned, got {type(df).__name__}")
    columns = {k for r in df for k in r} if records else set(df.columns)
    missing = [c for c in RESULT_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{who}: df lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)}: give the DataFrame "
            "w2s.results returned (filter its rows, keep its columns)"
        )
    return df if records else df.astype(object).where(df.notna(), None).to_dict("records")


def _shown(paths) -> str:
    return ", ".join(repr(str(p)) for p in (paths if isinstance(paths, (list, tuple)) else [paths]))


def _check_path(who: str, name: str, value, accepted: str = "a path (str or Path)") -> None:
    if not isinstance(value, (str, Path)):
        raise TypeError(f"{who}: {name} takes {accepted}, got {type(value).__name__}")


def _strings(who: str, name: str, value, example: str) -> list[str]:
    """A list of strings (`overrides`, `only`, `force`): a lone string would be read letter by letter."""
    if isinstance(value, str):
        raise TypeError(f"{who}: {name} is a list of strings, such as {example}; got the string {value!r}")
    values = list(value)
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"{who}: {name} is a list of strings, such as {example}; got {values!r}")
    return values


def check_metric(who: str, metric) -> None:
    if metric not in PGR_METRICS:
        raise ValueError(f"{who}: unknown metric {metric!r}; use one of {', '.join(PGR_METRICS)}")


def pgr(
    df: pd.DataFrame | list[dict], by: list[str] | None = None, metric: str = "accuracy", per_seed: bool = False
) -> pd.DataFrame:
    """PGR with `w2s report`'s 95% intervals and "undefined" notes: per transfer stage (`per_seed`,
    per_seed.csv), or per group (summary.csv): by default each experiment's dataset x chain x loss, or
    the columns `by`. A group's `pgr` is the PGR of its seed-mean scores, `mean_seed_pgr` the mean of
    its stages' PGRs (docs/outputs.md). `df` is what `results` returned (a filtered copy too)."""
    from w2s.report.tables import GROUP_COLUMNS, SEED_COLUMNS, seed_rows, summary_rows

    check_metric("pgr", metric)
    if by is not None:
        by = _strings("pgr", "by", by, "['loss']")
        unknown = [c for c in by if c not in SEED_COLUMNS]
        if unknown:
            groups = ", ".join(c for c in SEED_COLUMNS if c in GROUP_COLUMNS or c == "seed")
            raise ValueError(f"pgr: by names no column of the per-seed table: {', '.join(unknown)}; use {groups}")
    rows, draws = seed_rows(_records(df, "pgr"), metric)
    if per_seed:
        return rows
    return summary_rows(rows, draws, metric, by=by if by is not None else GROUP_COLUMNS)


def ground_truth(df: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """Each model's own scores (ground truth or zero-shot), mean over seeds: the figures' ceilings and
    supervisors (their intervals are the summary's weak_<metric>_low, ceiling_<metric>_low, ...)."""
    from w2s.report.tables import ground_truth_rows

    return ground_truth_rows(_records(df, "ground_truth"))
