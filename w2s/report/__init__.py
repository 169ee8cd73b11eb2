"""Reports: PGR with confidence intervals, tidy tables and paper-style figures.

The report is rebuilt from the finished stage folders (config.json, metrics.json,
predictions.jsonl), never from results.jsonl, so it is right even when that file is stale; or,
with `--wandb`, from the runs a project logged (points only: W&B holds no per-example
predictions, so its intervals come from seeds alone).

The modules, in the order the report uses them:
- `records`: finding experiment folders and reading their stages (or W&B runs) as result rows
  (w2s/scoring/rows.py);
- `tables`: the per-seed, summary and ground-truth tables, their markdown and provenance line, with
  intervals from resampled scores (w2s/scoring/metrics.py) and PGR from w2s/scoring/pgr.py;
- `figures`: the paper-style figures (the only module that imports matplotlib);
- here: `build_report`, `report` and `report_wandb`, which tie them together.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd

from w2s.errors import SpecError
from w2s.experiment.kinds import TRANSFER_KINDS
from w2s.experiment.selection import RULES
from w2s.report.conclusions import (
    comparisons_markdown,
    conclusions_markdown,
    diagnostics,
    diagnostics_markdown,
    pair_conclusions,
    paired_comparisons,
)
from w2s.report.costs import cost_markdown, cost_rows
from w2s.report.figures import X_AXES, write_cost_figure, write_figures
from w2s.report.misfit import choice_markdown, supervisor_choice
from w2s.report.records import load_records, record_from_wandb, records_of
from w2s.report.tables import (
    GROUP_DEFAULTS,
    SEED_COLUMNS,
    SUMMARY_COLUMNS,
    curve_rows,
    ground_truth_from_per_seed,
    ground_truth_rows,
    markdown,
    provenance,
    seed_rows,
    summary_columns,
    summary_rows,
)
from w2s.scoring.metrics import PGR_METRICS

# what callers use as w2s.report.<name> (the CLI, the tests); the rest stays in its module
__all__ = [
    "build_report",
    "report",
    "report_wandb",
    "redraw",
    "load_records",
    "record_from_wandb",
    "seed_rows",
    "summary_rows",
    "SEED_COLUMNS",
    "SUMMARY_COLUMNS",
    "summary_columns",
    "provenance",
    "ground_truth_from_per_seed",
]


def build_report(
    records: list[dict], out: Path, metric: str = "accuracy", x: str = "size", costs: list | None = None
) -> list[Path]:
    """Tables and figures for these stage records into `out`; returns the files written. `x`: the
    curves' x-axis, the strong model's size or its ceiling (`figures.X_AXES`); `costs`: (weak, gold)
    label prices, for the cost table and frontier (w2s/report/costs.py)."""
    if metric not in PGR_METRICS:
        raise SpecError(f"report: unknown metric {metric!r}; use one of {', '.join(PGR_METRICS)}")
    if x not in X_AXES:
        raise SpecError(f"report: unknown x-axis {x!r}; use one of {', '.join(X_AXES)}")
    if not any(r["kind"] in TRANSFER_KINDS and not r.get("superseded") for r in records):
        raise SpecError("report: no finished weak-to-strong stages to report on")
    if out.exists() and not out.is_dir():
        raise SpecError(f"report: --out {out} is a file; give a folder (it is created if missing)")
    per_seed, draws = seed_rows(records, metric)
    line = provenance(records)
    summary = summary_rows(per_seed, draws, metric)
    truth = ground_truth_rows(records)
    conclusions = pair_conclusions(summary, per_seed, draws, metric)
    # losses over the sweep's pairs (EleutherAI's comparison); selection rules and gold selections
    # over pairs x seeds, since the levels of one seed share their weak models and ceilings
    comparisons = pd.concat(
        [
            paired_comparisons(summary, "loss", metric, _levels(summary, "loss")),
            paired_comparisons(per_seed, "select", metric, _levels(summary, "select"), units="seeds"),
            *gold_select_comparisons(per_seed, metric, _levels(summary, "gold_select")),
        ],
        ignore_index=True,
    )
    checks = diagnostics(summary)
    choice = supervisor_choice(per_seed)
    priced = cost_rows(summary, costs or [], metric)
    curves = curve_rows(records)
    # whole or not at all: every file is made in a temporary folder beside `out`, then moved in
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.report-", dir=out.parent))
    try:
        for name, frame, seeds in (("per_seed", per_seed, True), ("summary", summary, False)):
            frame.to_csv(tmp / f"{name}.csv", index=False)
            (tmp / f"{name}.md").write_text(markdown(frame, metric, seeds, line))
        for name, frame, text in (
            ("conclusions", conclusions, conclusions_markdown(conclusions, line)),
            ("comparisons", comparisons, comparisons_markdown(comparisons, line)),
            ("diagnostics", checks, diagnostics_markdown(checks, line, choice_markdown(choice))),
        ):
            frame.to_csv(tmp / f"{name}.csv", index=False)
            (tmp / f"{name}.md").write_text(text)
        tables = ["per_seed", "summary", "conclusions", "comparisons", "diagnostics"]
        names = [f"{n}.{ext}" for n in tables for ext in ("csv", "md")]
        if len(choice):  # students trained on two or more supervisors' labels
            choice.to_csv(tmp / "supervisor_choice.csv", index=False)
            names.append("supervisor_choice.csv")
        if costs:
            priced.to_csv(tmp / "cost.csv", index=False)
            (tmp / "cost.md").write_text(cost_markdown(priced, metric, line))
            names += ["cost.csv", "cost.md"]
            if len(priced):
                names += [p.name for p in write_cost_figure(priced, metric, tmp)]
        if len(curves):  # the stages evaluated during training (train.eval_every)
            curves.to_csv(tmp / "curves.csv", index=False)
            names.append("curves.csv")
        figures = write_figures(summary, truth, metric, tmp, x, curves)
        names += [f.name for f in figures]
        for name in names:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / name for name in names]


def _levels(summary, column: str) -> list | None:
    """The order in which two levels of `column` are compared (b - a, a first): for losses xent (the
    paper's baseline) first, for selection rules w2s/experiment/selection.py's order (final first), for
    gold selections random first; else as the summary has them."""
    if column not in summary:
        return []
    present = list(dict.fromkeys(v for v in summary[column] if isinstance(v, str)))
    first = {"loss": ["xent"], "select": list(RULES), "gold_select": ["random"]}.get(column, [])
    return [v for v in first if v in present] + [v for v in present if v not in first]


def gold_select_comparisons(per_seed: pd.DataFrame, metric: str, levels: list) -> list[pd.DataFrame]:
    """Random against least-confident gold over pairs x seeds, for the mixed students and for those on
    gold alone apart: pooled, the two would answer different questions. `units` names which."""
    return [
        paired_comparisons(per_seed[per_seed["kind"] == kind], "gold_select", metric, levels, units="seeds").assign(
            units=f"gold amounts x seeds ({students})"
        )
        for kind, students in (("transfer", "mixed"), ("gold_only", "gold only"))
    ]


def report(
    run_dirs: list[str | Path],
    out: str | Path | None = None,
    metric: str = "accuracy",
    echo=print,
    x: str = "size",
    costs: list | None = None,
) -> list[Path]:
    """`w2s report RUN_DIR...`: default output folder RUN_DIR/report (of the first one)."""
    out = Path(out) if out else Path(run_dirs[0]) / "report"
    records = records_of(*run_dirs, echo=echo)
    if not records:
        raise SpecError(f"report: no finished stages in {', '.join(map(str, run_dirs))}")
    precisions = Counter(r["mixed_precision"] or "unrecorded" for r in records)
    echo("precision: " + ", ".join(f"{p} ({n} stage{'s' if n > 1 else ''})" for p, n in sorted(precisions.items())))
    return build_report(records, out, metric, x, costs)


def redraw(folder: str | Path, out: str | Path | None = None, x: str = "size") -> list[Path]:
    """`w2s report --redraw REPORT_DIR`: a report's figures drawn again from its own tables
    (summary.csv, per_seed.csv, curves.csv where written), for a report whose stage folders are not at
    hand: the figures of this version, from the numbers of the report. What the tables of an older
    version lack (its weak models' and ceilings' intervals, the agreement splits'), the figures leave
    out. Into `out` (default: the report folder itself)."""
    folder = Path(folder)
    if x not in X_AXES:
        raise SpecError(f"report: unknown x-axis {x!r}; use one of {', '.join(X_AXES)}")
    try:
        summary, per_seed = (pd.read_csv(folder / f"{name}.csv") for name in ("summary", "per_seed"))
        curves = pd.read_csv(folder / "curves.csv") if (folder / "curves.csv").is_file() else None
    except (OSError, ValueError) as err:
        raise SpecError(f"report: --redraw {folder}: cannot read its summary.csv and per_seed.csv ({err})") from None
    for table in (summary, per_seed):  # tables of versions before selection rules and gold mixing
        for column, default in GROUP_DEFAULTS.items():
            if column not in table:
                table[column] = default
    lacking = [c for c in ("metric", "n_seeds", "pgr", "chain", "kind") if c not in summary]
    if lacking or summary.empty:
        raise SpecError(f"report: --redraw {folder}: summary.csv is not a w2s report's (no {', '.join(lacking)})")
    out = Path(out) if out else folder
    out.mkdir(parents=True, exist_ok=True)
    metric = str(summary["metric"].iloc[0])  # the report's own: its PGR columns are on it
    return write_figures(summary, ground_truth_from_per_seed(per_seed), metric, out, x, curves)


def report_wandb(
    path: str, group: str | None = None, out=None, metric: str = "accuracy", x: str = "size", costs: list | None = None
) -> list[Path]:
    """`w2s report --wandb ENTITY/PROJECT [--group G]`: default output folder ./report."""
    if path.count("/") != 1:
        raise SpecError(f"report: --wandb expects ENTITY/PROJECT, got {path!r}")
    records = records_of(wandb=path, group=group)
    if not records:
        raise SpecError(f"report: no finished stage runs in W&B {path}" + (f" group {group}" if group else ""))
    return build_report(records, Path(out or "report"), metric, x, costs)
