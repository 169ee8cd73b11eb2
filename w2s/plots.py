"""The report's figures as functions of a results DataFrame (`w2s.results`), each returning a
matplotlib Figure: the same figures `w2s report` saves, drawn from the same tables.

    fig = w2s.plots.accuracy_vs_size(w2s.results("runs/sst2-two-families"))
    fig.savefig("figure3.pdf")

The figures are made without pyplot (no global state); in a notebook the returned Figure displays
itself, 8 in wide at 150 dpi (`w2s report` saves the paper's column size at 300 dpi). `metric`:
accuracy or auroc, as `w2s report --metric`. A frame that cannot give the figure (no transfers, no
gold sweep, no learning curves) is a ValueError that says what is missing.
"""

from __future__ import annotations

import pandas as pd

from w2s import api

NOTEBOOK_WIDTH, NOTEBOOK_DPI = 8.0, 150  # inches and dots per inch of a figure shown in a notebook


def _figure(df: pd.DataFrame, name: str, metric: str, x: str):
    from w2s.report.figures import figures, missing_for
    from w2s.report.tables import curve_rows

    api.check_metric(name, metric)
    records = api._records(df, name)
    curves = curve_rows(records) if name == "pgr_vs_progress" else None
    summary = api.pgr(records, metric=metric)
    missing = missing_for(name, summary, curves)
    if missing:
        raise ValueError(f"{name}: {missing}")
    made = figures(summary, api.ground_truth(records), metric, x, only=name, curves=curves)
    return _displayable(made[name])


def _displayable(fig):
    """The figure at a notebook's size, shown as a PNG where a notebook displays it (the figures are
    made without pyplot, so IPython's matplotlib hook does not know them)."""
    import io

    width, height = fig.get_size_inches()
    if width < NOTEBOOK_WIDTH:  # wider, and taller by less: the paper's 8-pt text, more room for the data
        fig.set_size_inches(NOTEBOOK_WIDTH, height * (NOTEBOOK_WIDTH / width) ** 0.5)

    def png() -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=NOTEBOOK_DPI)
        return buffer.getvalue()

    fig._repr_png_ = png
    return fig


def accuracy_vs_size(df: pd.DataFrame, metric: str = "accuracy"):
    """The paper's Figure 3: the student's test metric against the strong model's size, a line per
    weak supervisor, the ceilings in black, each supervisor alone as a star; 95% error bars."""
    return _figure(df, "accuracy_vs_size", metric, "size")


def accuracy_vs_ceiling(df: pd.DataFrame, metric: str = "accuracy"):
    """As `accuracy_vs_size`, against the strong model's ceiling (the reference code's plot)."""
    return _figure(df, "accuracy_vs_ceiling", metric, "ceiling")


def pgr_vs_size(df: pd.DataFrame, metric: str = "accuracy"):
    """PGR against the strong model's size, a line per weak supervisor, with 95% intervals."""
    return _figure(df, "pgr_vs_size", metric, "size")


def pgr_vs_ceiling(df: pd.DataFrame, metric: str = "accuracy"):
    """PGR against the strong model's ceiling."""
    return _figure(df, "pgr_vs_ceiling", metric, "ceiling")


def pgr_by_loss(df: pd.DataFrame, metric: str = "accuracy"):
    """PGR per loss for each weak -> strong pair, with 95% intervals."""
    return _figure(df, "pgr_by_loss", metric, "size")


def agreement(df: pd.DataFrame):
    """Student-supervisor agreement where the supervisor was right and where it was wrong."""
    return _figure(df, "agreement", "accuracy", "size")


def gold_frac(df: pd.DataFrame, metric: str = "accuracy"):
    """The student's test metric and PGR against the share of ground truth in its labels
    (`train.gold_frac`, docs/supervision.md)."""
    return _figure(df, "gold_frac", metric, "size")


def pgr_vs_progress(df: pd.DataFrame):
    """PGR had training stopped at each evaluation point, a line per selection rule
    (`train.eval_every`, docs/selection.md)."""
    return _figure(df, "pgr_vs_progress", "accuracy", "size")


def misfit(df: pd.DataFrame, metric: str = "accuracy"):
    """Each transfer's gain over its weak model against its misfit on its weak labels
    (docs/diagnostics.md)."""
    return _figure(df, "misfit", metric, "size")
