"""Figures (paper column: ~3.4 in per panel, 8 pt text), drawn on Agg without pyplot.

How every figure draws what it shows:
- colours: weak supervisors on a sequential scale by their size (a ladder reads dark to light);
  everything else that is only a name (losses, selection rules, a gold sweep's lines) in one
  colour-blind-safe palette (Okabe and Ito's), a loss the same colour in every figure;
- intervals: error bars with caps, the same 95% intervals as the tables, and the legend says over what
  (test-set resamples and how many seeds); an unbounded one is an arrow to the axis edge, an interval
  that runs past the axis a triangle at the edge, each with its legend entry.

matplotlib is imported here only, inside the functions, so reading records does not load it.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from w2s.experiment.selection import RULES
from w2s.report.tables import with_group_defaults

STYLE = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 300,
    "pdf.fonttype": 42,
}
PANEL = (3.4, 2.5)
# Okabe & Ito (2008), without its yellow (unreadable on white): what is only a name
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
UNBOUNDED = "95% interval unbounded (ceiling − weak within noise)"
BEYOND = "95% interval continues past the axis"


X_AXES = ("size", "ceiling")  # the curves' x: the strong model's size (the paper's), or its ceiling (the reference's)


def figures(
    summary: pd.DataFrame,
    truth: pd.DataFrame,
    metric: str,
    x: str = "size",
    only: str | None = None,
    curves: pd.DataFrame | None = None,
) -> dict:
    """The report's figures of a summary and its ground truth, by file name (none without direct
    transfers; `only`: that one alone). `x`: the curves' x-axis, the strong model's size
    (accuracy_vs_size, pgr_vs_size: the paper's Figure 3) or its ceiling's test metric
    (accuracy_vs_ceiling, pgr_vs_ceiling: the reference's notebook). Several experiments: a panel
    per experiment and dataset. These draw the sweep's first selection rule and its smallest gold share;
    with several, `gold_frac` draws the student against the share, and `pgr_vs_progress` (from
    `curves`, tables.curve_rows) PGR against training progress, a line per selection rule;
    `misfit` draws each transfer's gain against its misfit on its weak labels."""
    import matplotlib

    if missing_for(None, summary, curves):
        return {}
    if summary["experiment"].nunique() > 1:
        summary = summary.assign(dataset=summary["experiment"] + "/" + summary["dataset"])
        truth = truth.assign(dataset=truth["experiment"] + "/" + truth["dataset"])
        if curves is not None:
            curves = curves.assign(dataset=curves["experiment"] + "/" + curves["dataset"])
    everything, summary = summary, _first_rule_least_gold(summary)
    colors = _weak_colors(summary)
    makers = {
        f"accuracy_vs_{x}": lambda: plot_accuracy(summary, truth, metric, colors, x),
        f"pgr_vs_{x}": lambda: plot_pgr(summary, metric, colors, x),
        "pgr_by_loss": lambda: plot_losses(summary, metric),
        "agreement": lambda: plot_agreement(summary),
        "gold_frac": lambda: plot_gold(everything, metric),
        "pgr_vs_progress": lambda: plot_progress(curves),
        "misfit": lambda: plot_misfit(everything, metric),
    }
    wanted = [name for name in makers if only in (None, name) and not missing_for(name, everything, curves)]
    with matplotlib.rc_context(STYLE):
        return {name: makers[name]() for name in wanted}


def missing_for(name: str | None, summary: pd.DataFrame, curves: pd.DataFrame | None = None) -> str | None:
    """What a summary lacks for figure `name` (None: every figure's common need, direct transfers),
    in words for the user; None when it can be drawn."""
    direct = summary[summary["kind"] == "transfer"]
    if direct.empty:
        return "no direct weak-to-strong transfers among these results (kind 'transfer'): nothing to draw"
    counts = direct["gold_n"].nunique() if "gold_n" in direct else 1
    if name == "gold_frac" and direct["gold_frac"].nunique() < 2 and counts < 2:
        shares = ", ".join(f"{v:g}" for v in direct["gold_frac"].drop_duplicates())
        return (
            f"these results have one gold share (train.gold_frac {shares}) and one gold count; the figure "
            "needs transfers at several (docs/supervision.md)"
        )
    if name == "pgr_vs_progress" and (curves is None or curves.empty):
        return (
            "no learning curves among these results: no transfer evaluated during training "
            "(train.eval_every, docs/selection.md)"
        )
    if name == "misfit" and direct.get("misfit", pd.Series(dtype=float)).notna().sum() < 2:
        return "fewer than 2 transfers with a misfit (it needs each supervisor's predictions on half B)"
    return None


def write_figures(
    summary: pd.DataFrame,
    truth: pd.DataFrame,
    metric: str,
    out: Path,
    x: str = "size",
    curves: pd.DataFrame | None = None,
) -> list[Path]:
    """`figures` saved into `out` as PNG and PDF; returns the files written."""
    import matplotlib

    written = []
    for name, fig in figures(summary, truth, metric, x, curves=curves).items():
        with matplotlib.rc_context(STYLE):
            written += _save(fig, out, name)
    return written


def write_cost_figure(costs: pd.DataFrame, metric: str, out: Path) -> list[Path]:
    """cost_frontier.png and .pdf (`plot_cost_frontier`) into `out`."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        return _save(plot_cost_frontier(costs, metric), out, "cost_frontier")


def _figure(n_rows: int, n_cols: int, width: float | None = None, sharey: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = (width or PANEL[0] * n_cols, PANEL[1] * n_rows + 0.5)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False, sharey=sharey))
    return fig, axes


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path)
    return paths


def _weak_colors(summary: pd.DataFrame) -> dict[str, tuple]:
    """Hue in the order of weak-model size on a sequential map (light yellow cut off: unreadable on
    white), evenly spaced, so that supervisors of about the same size (a 1-layer model and an ensemble
    of small ones) never share a colour."""
    from matplotlib import colormaps

    weak = summary.drop_duplicates("weak_model").sort_values("weak_non_embedding_parameters", kind="stable")
    position = np.linspace(0, 1, len(weak)) if len(weak) > 1 else np.full(len(weak), 0.5)
    return {w: colormaps["plasma"](0.05 + 0.8 * p) for w, p in zip(weak["weak_model"], position)}


def _size_axis(ax, has_sizes: bool, x: np.ndarray, order: list[str], sizes: dict[str, float] | None = None) -> None:
    """Log size axis with limits set from the sizes, so a panel whose values are all missing still
    draws; a tick per model, labelled with its name and parameter count (`sizes`: model -> count).
    Without sizes (W&B runs that did not log them), models in ladder order."""
    if has_sizes:
        from matplotlib.ticker import NullFormatter, NullLocator

        ax.set_xscale("log")
        ax.set_xlim(np.min(x) / 1.6, np.max(x) * 1.6)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        if sizes:
            ticks = sorted(sizes.items(), key=lambda item: item[1])
            crowded = len(ticks) > 3  # long names at nearby sizes would overlap: slant them
            ax.set_xticks(
                [v for _, v in ticks],
                [f"{name}\n{_count(v)}" for name, v in ticks],
                rotation=30 if crowded else 0,
                ha="right" if crowded else "center",
            )
        ax.set_xlabel("strong student (non-embedding parameters)")
    else:
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        ax.set_xlabel("strong student")


def _intervals(ax, x, y, low, high, color) -> None:
    """95% intervals as error bars with caps; an unbounded one (Fieller's, when the gap is within
    noise) as an arrow from the point to each axis edge, which follows the axis limits however they
    are set later."""
    x, y, low, high = (np.asarray(v, dtype=float) for v in (x, y, low, high))
    finite = np.isfinite(low) & np.isfinite(high) & np.isfinite(y)
    if finite.any():
        yerr = [y[finite] - low[finite], high[finite] - y[finite]]
        ax.errorbar(x[finite], y[finite], yerr=yerr, fmt="none", ecolor=color, elinewidth=0.8, capsize=2)
    unbounded = (np.isinf(low) | np.isinf(high)) & np.isfinite(y)
    for xi, yi in zip(x[unbounded], y[unbounded]):
        for edge in (0.0, 1.0):
            ax.annotate(
                "",
                xy=(xi, edge),
                xycoords=ax.get_xaxis_transform(),  # x in data, y in axes fractions: the edge
                xytext=(xi, yi),
                textcoords="data",
                arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 0.8, "shrinkA": 0, "shrinkB": 0},
            )
    if unbounded.any():
        ax.plot([], [], linestyle="", marker=r"$\updownarrow$", color="grey", markersize=8, label=UNBOUNDED)


def _mark_beyond_axes(ax) -> None:
    """A triangle at the edge where an error bar runs past the axis limits (call once they are set)."""
    from matplotlib.container import ErrorbarContainer

    low_edge, high_edge = ax.get_ylim()
    marked = False
    for container in ax.containers:
        if not isinstance(container, ErrorbarContainer) or not container.lines[2]:
            continue
        bars = container.lines[2][0]
        color = bars.get_colors()[0] if len(bars.get_colors()) else "grey"
        for (x, a), (_, b) in bars.get_segments():
            for beyond, edge, marker in (
                (max(a, b) > high_edge, high_edge, "^"),
                (min(a, b) < low_edge, low_edge, "v"),
            ):
                if beyond:
                    ax.plot([x], [edge], marker, color=color, markersize=4, clip_on=False, zorder=5)
                    marked = True
    if marked:
        ax.plot([], [], "^", color="grey", markersize=4, label=BEYOND)


def _interval_words(frame: pd.DataFrame) -> str:
    """What the error bars are, for a legend's title: 95%, over what, and how many seeds."""
    seeds = [int(n) for n in frame["n_seeds"].dropna()] if "n_seeds" in frame else []
    if not seeds:
        n = "seeds"
    elif min(seeds) == max(seeds):
        n = f"{seeds[0]} seed" + ("s" if seeds[0] > 1 else "")
    else:
        n = f"{min(seeds)}–{max(seeds)} seeds"
    return f"error bars: 95% intervals over test-set resamples and {n}"


def _loss_colors(summary: pd.DataFrame) -> dict[str, str]:
    """A colour per loss, the same in every figure of a report: the palette in the losses' sorted order."""
    losses = sorted(summary["loss"].dropna().unique())
    return {loss: PALETTE[i % len(PALETTE)] for i, loss in enumerate(losses)}


def _count(n: float) -> str:
    """1923842 -> '1.9M'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _grid(summary: pd.DataFrame, n_panels: int) -> tuple[int, int]:
    """(rows, columns): one dataset puts its losses side by side (up to 3 a row), as the paper's
    figures do; several datasets go across and losses down."""
    n_datasets = summary["dataset"].nunique()
    n_cols = min(n_panels, 3) if n_datasets == 1 else n_datasets
    return math.ceil(n_panels / n_cols), n_cols


def _panels(summary: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """One panel per dataset and loss (datasets across, losses down), direct transfers only."""
    direct = summary[summary["kind"] == "transfer"]
    direct = direct.sort_values("weak_non_embedding_parameters", kind="stable")  # lines and legend by weak size
    return [
        (dataset, loss, direct[(direct["dataset"] == dataset) & (direct["loss"] == loss)])
        for loss in direct["loss"].drop_duplicates()
        for dataset in direct["dataset"].drop_duplicates()
    ]


def _x(frame: pd.DataFrame, column: str, order: list[str], has_sizes: bool, name_column: str) -> np.ndarray:
    if has_sizes:
        return frame[column].astype(float).to_numpy()
    return np.array([order.index(m) for m in frame[name_column]], dtype=float)


def _students_x(lines: pd.DataFrame, x_by: str, metric: str, order: list[str], has_sizes: bool):
    """One weak model's students in x order, and their x: the strong model's size or its ceiling."""
    column = f"ceiling_{metric}" if x_by == "ceiling" else "non_embedding_parameters"
    lines = lines.sort_values(column, kind="stable")
    if x_by == "ceiling":
        return lines, lines[column].astype(float).to_numpy()
    return lines, _x(lines, column, order, has_sizes, "model")


def plot_accuracy(summary: pd.DataFrame, truth: pd.DataFrame, metric: str, colors: dict, x_by: str = "size"):
    """Figure 3 of the paper: student metric against strong size, a line per weak supervisor,
    the ground-truth ceiling in black, each supervisor's own score as a star, every point with its 95%
    interval. `x_by="ceiling"`: against the strong model's ceiling instead (the reference's plot),
    so the ceiling is the diagonal."""
    panels = _panels(summary)
    fig, axes = _figure(*_grid(summary, len(panels)), sharey=summary["dataset"].nunique() == 1)  # one scale per dataset
    # a log axis needs every size, and above 0 (a zero-shot model may have none: a rule, a lookup table)
    sizes = summary["non_embedding_parameters"], truth["non_embedding_parameters"]
    has_sizes = all((s.fillna(0) > 0).all() for s in sizes)
    order = list(truth.sort_values("non_embedding_parameters", kind="stable")["model"].drop_duplicates())
    order += [m for m in summary["model"].drop_duplicates() if m not in order]
    for ax, (dataset, loss, frame) in zip(axes.flat, panels):
        here = truth[truth["dataset"] == dataset].sort_values("non_embedding_parameters", kind="stable")
        gt, supervisors = here[here["ceiling"]], here[here["train_split"] != "train_b"]
        ceilings = dict(zip(gt["model"], gt[f"test_{metric}"].astype(float)))
        if x_by == "ceiling":
            gt = gt.sort_values(f"test_{metric}", kind="stable")
            x = gt[f"test_{metric}"].astype(float).to_numpy()
        else:
            x = _x(gt, "non_embedding_parameters", order, has_sizes, "model")
        y = gt[f"test_{metric}"].astype(float).to_numpy()
        ax.plot(x, y, "o-", color="black", label="ceiling (ground truth)", zorder=3)
        own = _reference_intervals(summary[summary["dataset"] == dataset], metric)  # every loss's rows
        _intervals(ax, x, y, *_bounds(own, gt["model"], gt["train_split"] == "train_b"), "black")
        weak_lines = list(frame.groupby("weak_model", sort=False))
        for k, (weak, lines) in enumerate(weak_lines):
            lines, x_strong = _students_x(lines, x_by, metric, order, has_sizes)
            x_strong = _dodge(x_strong, k, len(weak_lines), x_by, has_sizes, beside_ceiling=True)
            y, low, high = (lines[f"test_{metric}{end}"].astype(float).to_numpy() for end in ("", "_low", "_high"))
            ax.plot(x_strong, y, "o-", color=colors[weak], label=f"weak: {weak}")
            _intervals(ax, x_strong, y, low, high, colors[weak])
            alone = supervisors[supervisors["model"] == weak]
            if x_by == "ceiling":  # the supervisor at its own ceiling, where it has one
                alone = alone[alone["model"].isin(ceilings)]
                x_alone = alone["model"].map(ceilings).to_numpy()
            else:
                x_alone = _x(alone, "non_embedding_parameters", order, has_sizes, "model")
            y_alone = alone[f"test_{metric}"].astype(float).to_numpy()
            ax.plot(
                x_alone,
                y_alone,
                "*",
                color=colors[weak],
                markersize=10,
                markeredgecolor="black",
                markeredgewidth=0.5,
                zorder=4,
            )
            _intervals(ax, x_alone, y_alone, *_bounds(own, alone["model"], False, "weak"), colors[weak])
        ax.set_title(f"{dataset} ({loss})")
        ax.set_ylabel(f"test {metric}")
        if x_by == "ceiling":
            _ceiling_axis(ax, ceilings, metric)
        else:
            # every model of the panel: a ceiling whose stages are damaged still has students to place
            sizes = dict(zip(frame["model"], frame["non_embedding_parameters"].astype(float)))
            sizes |= dict(zip(gt["model"], gt["non_embedding_parameters"].astype(float)))
            _size_axis(ax, has_sizes, np.array(list(sizes.values())), order, sizes)
        _mark_beyond_axes(ax)
    _hide_unused(axes, len(panels))
    handles, labels = _legend_entries(axes)
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], marker="*", linestyle="", color="grey", markeredgecolor="black", markersize=8))
    labels.append("weak supervisor alone")
    _figure_legend(fig, handles, labels, _interval_words(summary))
    return fig


def _dodge(x: np.ndarray, k: int, n: int, x_by: str, has_sizes: bool, beside_ceiling: bool = False) -> np.ndarray:
    """The students of weak model k of n, moved a little sideways so that the error bars of several
    supervisors' students of one strong model do not cover each other, nor the ceiling's at the tick
    (`beside_ceiling`: all to its right); on the ceiling axis x is itself a measurement, so it stays."""
    step = k + 1 if beside_ceiling else k - (n - 1) / 2
    if x_by == "ceiling":
        return x
    return x * 1.04**step if has_sizes else x + 0.06 * step  # a log axis of sizes, or ladder positions


def _reference_intervals(frame: pd.DataFrame, metric: str) -> dict[tuple[str, str], tuple[float, float]]:
    """The 95% intervals of the weak models' and the ceilings' own scores, by (role, model), from the
    summary rows they appear in (the same stages and resamples in each of them)."""
    out = {}
    for role, model_column in (("weak", "weak_model"), ("ceiling", "model")):
        low, high = f"{role}_{metric}_low", f"{role}_{metric}_high"
        if low not in frame:
            continue
        for model, rows in frame.groupby(model_column, sort=False):
            known = rows.dropna(subset=[low, high])
            if len(known):
                out[(role, model)] = (float(known[low].iloc[0]), float(known[high].iloc[0]))
    return out


def _bounds(intervals: dict, models, on_half_b, role: str = "ceiling") -> tuple[np.ndarray, np.ndarray]:
    """Low and high bounds of each model's own score: its ceiling's interval, or for a model whose
    ceiling is its half-A stage and that is no student here, its weak interval (the same stage)."""
    on_half_b = np.broadcast_to(np.asarray(on_half_b), (len(models),))
    bounds = []
    for model, half_b in zip(models, on_half_b):
        found = intervals.get((role, model))
        if found is None and role == "ceiling" and not half_b:
            found = intervals.get(("weak", model))
        bounds.append(found or (np.nan, np.nan))
    return tuple(np.array(b, dtype=float).reshape(len(models)) for b in zip(*bounds)) if bounds else (np.array([]),) * 2


def _ceiling_axis(ax, ceilings: dict[str, float], metric: str) -> None:
    """The reference's x-axis: the strong model's ceiling, a tick per model at its ceiling."""
    values = [v for v in ceilings.values() if not math.isnan(v)]
    if values:
        span = max(max(values) - min(values), 0.01)
        ax.set_xlim(min(values) - 0.08 * span, max(values) + 0.08 * span)
        ticks = sorted(((v, m) for m, v in ceilings.items() if not math.isnan(v)))
        crowded = len(ticks) > 3
        ax.set_xticks(
            [v for v, _ in ticks],
            [f"{m}\n{v:.3f}" for v, m in ticks],
            rotation=30 if crowded else 0,
            ha="right" if crowded else "center",
        )
    ax.set_xlabel(f"strong student's ceiling (ground-truth test {metric})")


def plot_pgr(summary: pd.DataFrame, metric: str, colors: dict, x_by: str = "size"):
    """PGR against strong size (or its ceiling: `x_by="ceiling"`), a line per weak supervisor, with 95%
    error bars."""
    has_sizes = (summary["non_embedding_parameters"].fillna(0) > 0).all()
    order = list(summary.sort_values("non_embedding_parameters", kind="stable")["model"].drop_duplicates())
    every_size = _x(
        summary, "non_embedding_parameters", order, has_sizes, "model"
    )  # same x range as the accuracy figure
    sizes = {
        **dict(zip(summary["weak_model"], summary["weak_non_embedding_parameters"].astype(float))),
        **dict(zip(summary["model"], summary["non_embedding_parameters"].astype(float))),
    }
    summary = _pgr_pairs(summary)
    panels = _panels(summary)
    fig, axes = _figure(*_grid(summary, len(panels)), sharey=summary["dataset"].nunique() == 1)
    for ax, (dataset, loss, frame) in zip(axes.flat, panels):
        for y in (0, 1):
            ax.axhline(y, color="grey", linewidth=0.6, linestyle="--", zorder=0)
        weak_lines = list(frame.groupby("weak_model", sort=False))
        for k, (weak, lines) in enumerate(weak_lines):
            lines, x = _students_x(lines, x_by, metric, order, has_sizes)
            x = _dodge(x, k, len(weak_lines), x_by, has_sizes)
            y, low, high = (lines[c].astype(float).to_numpy() for c in ("pgr", "pgr_low", "pgr_high"))
            ax.plot(x, y, "o-", color=colors[weak], label=f"weak: {weak}")
            _intervals(ax, x, y, low, high, colors[weak])
        if frame["pgr"].isna().all():
            ax.text(
                0.5,
                0.5,
                "PGR undefined for every pair\n(see pgr_note in the table)",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="grey",
            )
        ax.set_title(f"{dataset} ({loss})")
        ax.set_ylabel(f"PGR ({metric})")
        if x_by == "ceiling":
            _ceiling_axis(ax, dict(zip(frame["model"], frame[f"ceiling_{metric}"].astype(float))), metric)
        else:
            _size_axis(ax, has_sizes, every_size, order, {m: v for m, v in sizes.items() if m in set(order)})
    for ax in axes.flat:
        _pgr_limits(ax, summary)
        _mark_beyond_axes(ax)
    _hide_unused(axes, len(panels))
    handles, labels = _legend_entries(axes)
    if handles:
        _figure_legend(fig, handles, labels, _interval_words(summary))
    _note_missing(fig, summary)
    return fig


def _pgr_limits(ax, frame: pd.DataFrame) -> None:
    """PGR's axis from 0 and 1 to the points, with a margin: the points decide the scale, so one wide
    interval cannot squash the rest (`_mark_beyond_axes` marks where it runs past)."""
    points = frame["pgr"].astype(float).dropna()
    if len(points):
        ax.set_ylim(min(-0.25, points.min() - 0.25), max(1.25, points.max() + 0.25))


def _pair_label(r, several_datasets: bool) -> str:
    pair = r["chain"].replace("->", "→")
    return f"{r['dataset']}\n{pair}" if several_datasets else pair


def _grouped_bars(ax, frame: pd.DataFrame, value: str, low: str | None, high: str | None, several: bool, colors):
    """Bars grouped by pair, a colour per loss (`colors`), their 95% intervals as error bars (an
    unbounded one an arrow to each edge); a missing value is marked 'n/a' at zero."""
    pairs, bars, width = _bar_layout(frame, several)
    for loss, (part, x) in bars.items():
        y = part[value].astype(float).to_numpy()
        ax.bar(x, np.nan_to_num(y), width, color=colors[loss], label=loss)
        if low:
            _intervals(ax, x, y, part[low].astype(float), part[high].astype(float), "black")
        for xi in x[np.isnan(y)]:
            ax.annotate(
                "n/a",
                (xi, 0),
                xytext=(0, 2),
                textcoords="offset points",
                rotation=90,
                ha="center",
                va="bottom",
                fontsize=6,
                color="grey",
            )
    labels = [_pair_label({"dataset": p.split("|")[0], "chain": p.split("|")[-1]}, several) for p in pairs]
    longest = max(len(line) for label in labels for line in label.splitlines())
    crowded = len(pairs) * longest * 0.06 > ax.figure.get_figwidth()  # ~0.06 in per 7-pt character
    ax.set_xticks(range(len(pairs)), labels, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_xlim(-0.6, len(pairs) - 0.4)


def _bar_width(summary: pd.DataFrame) -> float:
    n_bars = len(summary)
    return float(np.clip(1.2 + 0.25 * n_bars, PANEL[0], 7.0))


def plot_losses(summary: pd.DataFrame, metric: str):
    """PGR per loss for each weak -> strong pair, with 95% intervals."""
    direct = _pgr_pairs(summary)
    fig, axes = _figure(1, 1, width=_bar_width(direct))
    ax = axes[0, 0]
    _grouped_bars(ax, direct, "pgr", "pgr_low", "pgr_high", direct["dataset"].nunique() > 1, _loss_colors(summary))
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axhline(1, color="grey", linewidth=0.6, linestyle="--")
    ax.set_ylabel(f"PGR ({metric})")
    missing = direct["pgr"].isna().any()
    ax.set_xlabel("weak → strong" + ("\n(n/a: PGR undefined, see pgr_note in the table)" if missing else ""))
    _pgr_limits(ax, direct)
    _mark_beyond_axes(ax)
    _loss_legend(fig, ax, _interval_words(direct))
    return fig


def plot_agreement(summary: pd.DataFrame):
    """Student-supervisor agreement where the supervisor was right vs wrong, with Wilson's 95%
    intervals and, on each bar, how many test examples (over all seeds) it counts: high agreement on
    its mistakes means the student imitates them rather than generalizing past them."""
    direct = summary[summary["kind"] == "transfer"]
    fig, axes = _figure(2, 1, width=_bar_width(direct))
    several = direct["dataset"].nunique() > 1
    colors = _loss_colors(summary)
    for ax, split, title in (
        (axes[0, 0], "right", "where the supervisor is right"),
        (axes[1, 0], "wrong", "where the supervisor is wrong"),
    ):
        column = f"agreement_supervisor_{split}"
        bounds = (f"{column}_low", f"{column}_high") if f"{column}_low" in direct else (None, None)
        _grouped_bars(ax, direct, column, *bounds, several, colors)
        if f"n_supervisor_{split}" in direct:
            _bar_counts(ax, direct, f"n_supervisor_{split}", several)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("student-supervisor\nagreement")
        ax.set_title(f"test examples {title}")
    axes[0, 0].tick_params(labelbottom=False)
    axes[1, 0].set_xlabel("weak → strong")
    seeds = _interval_words(direct).rsplit(" and ", 1)[-1]
    drawn = "n_supervisor_wrong" in direct and direct["n_supervisor_wrong"].notna().any()  # not in older tables
    words = f"error bars: Wilson's 95% intervals; above each bar: its test examples over {seeds}"
    _loss_legend(fig, axes[0, 0], words if drawn else None)
    return fig


def _bar_counts(ax, frame: pd.DataFrame, column: str, several: bool) -> None:
    """Each bar's count written above the bars, small."""
    for part, x in _bar_layout(frame, several)[1].values():
        for xi, n in zip(x, part[column]):
            if pd.notna(n):
                ax.text(xi, 1.01, f"{int(n):,}", ha="center", va="bottom", fontsize=5, color="dimgrey")


def _bar_layout(frame: pd.DataFrame, several: bool) -> tuple[list[str], dict, float]:
    """Where grouped bars go: the pairs (dataset|chain with several datasets) at 0, 1, ...; per loss,
    in sorted order, its rows and their bars' x; the bars' width."""
    ids = frame["chain"] if not several else frame["dataset"] + "|" + frame["chain"]
    pairs = list(ids.drop_duplicates())
    losses = sorted(frame["loss"].dropna().unique())
    width = 0.8 / len(losses)
    bars = {}
    for j, loss in enumerate(losses):
        mine = frame["loss"] == loss
        bars[loss] = (frame[mine], np.array([pairs.index(p) for p in ids[mine]]) - 0.4 + width * (j + 0.5))
    return pairs, bars, width


def _loss_legend(fig, ax, title_note: str | None = None) -> None:
    """Above the bars, so it never covers them, in as many columns as fit (`_legend_columns`); its
    title says what the error bars are."""
    handles, labels = _legend_entries(np.array([ax]))
    ncol = _legend_columns(fig, labels)
    title = "loss" + (f" ({title_note})" if title_note else "")
    title = textwrap.fill(title, width=int(fig.get_figwidth() / 0.055))  # ~0.055 in per 7-pt character
    fig.legend(handles, labels, loc="outside upper center", ncol=ncol, frameon=False, title=title)


def _hide_unused(axes, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _legend_columns(fig, labels: list[str]) -> int:
    """As many columns as the figure's width holds for the longest label (about 0.045 in per 7-pt
    character plus the marker), at most one per entry."""
    entry_width = 0.4 + 0.045 * max(map(len, labels), default=1)
    return max(1, min(len(labels), int(fig.get_figwidth() / entry_width)))


def _figure_legend(fig, handles, labels, title: str | None = None) -> None:
    """Below the panels, in as many columns as fit (`_legend_columns`); `title`: what the error bars
    are."""
    ncol = _legend_columns(fig, labels)
    if title:
        title = textwrap.fill(title, width=int(fig.get_figwidth() / 0.055))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False, title=title)


def _legend_entries(axes):
    """Every panel's legend entries once, what the interval marks mean last."""
    seen = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    labels = sorted(seen, key=lambda label: label in (UNBOUNDED, BEYOND))  # stable: the rest keep their order
    return [seen[label] for label in labels], labels


def _note_missing(fig, frame: pd.DataFrame) -> None:
    n = int(frame["pgr"].isna().sum())
    if n:
        text = f"PGR undefined for {n} of {len(frame)} (pair, loss) rows: see pgr_note in the table"
        fig.suptitle(text, fontsize=6, color="grey")


def _pgr_pairs(summary: pd.DataFrame) -> pd.DataFrame:
    """Direct transfers between different models: a model supervising itself has no gap to recover
    (its ceiling is the weak model), so those pairs are left out unless they are all there is."""
    direct = summary[summary["kind"] == "transfer"]
    different = direct[direct["weak_model"] != direct["model"]]
    return different if len(different) else direct


# how the selection rules (w2s/experiment/selection.py) are drawn; another rule: dash-dot, its name
RULE_STYLES = {"final": "-", "weak_validation": "--", "oracle": ":"}
RULE_LABELS = {"final": "final", "weak_validation": "weak validation", "oracle": "oracle (upper bound)"}


def _rules_in(frame: pd.DataFrame) -> list[str]:
    """The selection rules the rows hold, in w2s/experiment/selection.py's order."""
    return [r for r in RULES if (frame["select"] == r).any()]


def _first_rule(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of one selection rule, the first of w2s/experiment/selection.py's order the sweep has."""
    present = _rules_in(frame) if "select" in frame else []
    return frame[frame["select"] == present[0]] if present else frame


def _first_rule_least_gold(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of one selection rule and of its smallest gold share: what the size curves draw, so
    that no line mixes settings."""
    frame = _first_rule(summary)
    for column in ("gold_frac", "gold_n"):
        if column in frame and frame[column].notna().any():
            frame = frame[frame[column] == frame[column].min()]
    return frame


def plot_gold(summary: pd.DataFrame, metric: str):
    """The student's metric and PGR against the ground truth mixed into its labels (a share,
    `gold_frac`, or a count, `gold_n`), a line per transfer and way of choosing the gold rows (with
    its 95% interval; the student without gold starts each), the gold-only stages as dashed lines,
    the weak model's and the ceiling's scores as references."""
    frame = _first_rule(summary[summary["kind"].isin(["transfer", "gold_only"])])
    frame = with_group_defaults(frame, ["gold_n", "gold_select"])  # a report of an older version lacks them
    x_column = "gold_n" if frame["gold_n"].fillna(0).astype(float).any() else "gold_frac"
    fig, axes = _figure(1, 2)
    score, ratio = axes[0, 0], axes[0, 1]
    several = frame["dataset"].nunique() > 1
    with_gold = frame[frame[x_column].astype(float) > 0]
    rules = with_gold["gold_select"].nunique() > 1
    chains = with_gold["chain"].nunique()  # the lines drawn: a chain without gold labels has none
    lines_drawn = 0
    for (dataset, chain, loss), group in frame[frame["kind"] == "transfer"].groupby(
        ["dataset", "chain", "loss"], sort=False
    ):
        plain = group[group[x_column].astype(float) == 0]
        only = frame[(frame["kind"] == "gold_only") & (frame["dataset"] == dataset) & (frame["chain"] == chain)]
        for select, mixed in group[group[x_column].astype(float) > 0].groupby("gold_select", sort=True):
            color = PALETTE[lines_drawn % len(PALETTE)]
            lines_drawn += 1
            pair = (f"{dataset}: " if several else "") + (f"{chain}, " if chains > 1 else "")
            rule = f", {select.replace('_', ' ')}" if rules else ""
            drawn = [(pd.concat([plain, mixed]), "o-", f"{pair}{loss}{rule}")]
            gold_only = only[only["gold_select"] == select]
            if len(gold_only):
                drawn.append((gold_only, "^--", f"{pair}gold only{rule}"))
            for lines, style, label in drawn:
                lines = lines.sort_values(x_column)
                x = lines[x_column].astype(float).to_numpy()
                for ax, column in ((score, f"test_{metric}"), (ratio, "pgr")):
                    y = lines[column].astype(float).to_numpy()
                    ax.plot(x, y, style, color=color, label=label)
                    low, high = f"{column}_low", f"{column}_high"
                    if low in lines:
                        _intervals(ax, x, y, lines[low].astype(float), lines[high].astype(float), color)
            score.axhline(group[f"weak_{metric}"].mean(), color=color, linewidth=0.6, linestyle=":")
            score.axhline(group[f"ceiling_{metric}"].mean(), color=color, linewidth=0.6, linestyle="--")
    score.set_ylabel(f"student test {metric}\n(dotted: weak, dashed: ceiling)")
    ratio.axhline(0, color="black", linewidth=0.6)
    ratio.axhline(1, color="grey", linewidth=0.6, linestyle="--")
    ratio.set_ylabel("PGR")
    for ax in (score, ratio):
        ax.set_xlabel(
            "gold_n: weak labels replaced by ground truth"
            if x_column == "gold_n"
            else "gold_frac: share of the weak labels\nreplaced by ground truth"
        )
        _mark_beyond_axes(ax)
    handles, labels = _legend_entries(axes)
    _figure_legend(fig, handles, labels, _interval_words(frame))
    return fig


def plot_progress(curves: pd.DataFrame):
    """PGR had training stopped at each evaluation point (mean over seeds), a line per selection
    rule (each rule's students, against its weak model's and ceiling's chosen checkpoints), a marker
    where the rule stopped them (mean over seeds); a panel per dataset, chain and loss."""
    panels = list(curves.groupby(["dataset", "chain", "loss"], sort=False))
    n_cols = min(3, len(panels))
    fig, axes = _figure(math.ceil(len(panels) / n_cols), n_cols)
    for ax, ((dataset, chain, loss), frame) in zip(axes.flat, panels):
        for i, rule in enumerate(_rules_in(frame)):
            lines = frame[frame["select"] == rule]
            color = PALETTE[i % len(PALETTE)]
            for gold, line in lines.groupby("gold_frac", sort=True):
                mean = line.groupby("progress", sort=True)["pgr"].mean()
                suffix = f", gold {gold:g}" if lines["gold_frac"].nunique() > 1 else ""
                style, name = RULE_STYLES.get(rule, "-."), RULE_LABELS.get(rule, rule.replace("_", " "))
                ax.plot(mean.index, mean.to_numpy(), style, color=color, label=name + suffix)
                chosen = line[line["chosen"]]
                n = chosen["seed"].nunique()
                ax.plot(
                    chosen["progress"].mean(),
                    chosen["pgr"].mean(),
                    "o",
                    color=color,
                    label=f"stopped ({n} seed{'s' if n > 1 else ''})" if not i else None,
                )
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axhline(1, color="grey", linewidth=0.6, linestyle="--")
        low, high = ax.get_ylim()
        if low < -1.1:  # the first steps, far below the weak model, would squash the rest
            ax.set_ylim(-1.1, max(high, 1.1))
            ax.text(0.98, 0.02, "PGR below −1.1 not shown", transform=ax.transAxes, ha="right", va="bottom", fontsize=6)
        ax.set_xlabel("share of the student's training done")
        ax.set_ylabel("PGR if stopped here")
        ax.set_title(f"{dataset}: {chain} ({loss})")
    _hide_unused(axes, len(panels))
    handles, labels = _legend_entries(axes)
    n = curves["seed"].nunique()
    _figure_legend(fig, handles, labels, f"means over {n} seed{'s' if n > 1 else ''} at each point (no intervals)")
    return fig


def plot_misfit(summary: pd.DataFrame, metric: str):
    """Each transfer's gain over its weak model against its misfit on its weak labels, a point per
    transfer (its seed means), with the correlation across transfers, its 95% interval and p-values
    (Charikar et al. 2024)."""
    from w2s.report.conclusions import misfit_correlation

    direct = summary[summary["kind"] == "transfer"].dropna(subset=["misfit", "student_minus_weak"])
    fig, axes = _figure(1, 1)
    ax = axes[0, 0]
    colors = _loss_colors(summary)
    for loss, points in direct.groupby("loss", sort=True):
        ax.plot(points["misfit"], points["student_minus_weak"], "o", color=colors[loss], label=loss)
    ax.axhline(0, color="black", linewidth=0.6)
    c = misfit_correlation(direct)
    title = f"{c['n']} transfers, each a mean over its seeds"
    if c["pearson"] is not None:
        interval = "" if c["pearson_low"] is None else f" [{c['pearson_low']:.2f}, {c['pearson_high']:.2f}]"
        title += f"\nPearson r = {c['pearson']:.2f}{interval}, p = {c['pearson_p']:.2g}"
        title += f"\nSpearman ρ = {c['spearman']:.2f}, p = {c['spearman_p']:.2g}"
    else:
        title += "\n(no correlation: fewer than 3 transfers, or one does not vary)"
    ax.set_title(title)
    ax.set_xlabel("misfit on the weak labels of half B\n(mean squared distance of the probabilities)")
    ax.set_ylabel(f"student − weak (test {metric})")
    _loss_legend(fig, ax, "r's interval: 95%, Fisher's z" if c["pearson_low"] is not None else None)
    return fig


FAMILY_STYLE = {"weak only": ("o", "C0"), "mixed": ("s", "C1"), "gold only": ("^", "C2")}  # marker, color


def plot_cost_frontier(costs: pd.DataFrame, metric: str):
    """Each student's test `metric` (95% interval) against what its labels cost (w2s/report/costs.py),
    a panel per pair and price, a marker per family (weak only, mixed, gold only), and the frontier
    as a step line: the best student at each budget."""
    panels = list(costs.groupby(["dataset", "weak_model", "model", "weak_cost", "gold_cost"], sort=False))
    n_cols = min(len(panels), 3)
    fig, axes = _figure(-(-len(panels) // n_cols), n_cols)
    for ax, ((dataset, weak, strong, w, g), frame) in zip(axes.flat, panels):
        for family, points in frame.groupby("family", sort=False):
            marker, color = FAMILY_STYLE[family]
            ax.plot(points["cost"], points["score"], marker, color=color, label=family, alpha=0.85)
            _intervals(ax, points["cost"], points["score"], points["score_low"], points["score_high"], color)
        line = frame[frame["on_frontier"]].sort_values("cost")
        xs = [*line["cost"], frame["cost"].max()]  # the best budget's student holds on to the dearest point
        ax.step(
            xs, [*line["score"], line["score"].iloc[-1]], where="post", color="black", linewidth=0.9, label="frontier"
        )
        ax.set_title(f"{dataset}: {weak} -> {strong}\nweak label {w:g}, gold label {g:g}")
        ax.set_xlabel("cost of the student's labels")
        ax.set_ylabel(f"student test {metric}")
    _hide_unused(axes, len(panels))
    handles, labels = _legend_entries(axes)
    _figure_legend(fig, handles, labels, "error bars: 95% intervals over seeds and test examples")
    return fig
