"""The report's figures draw what the tables say, without traps: an unbounded interval is an arrow to
both edges with its legend entry (never a zero-height bar), an interval past the axis is marked at
the edge, every legend says what the error bars are, a loss has one colour in every figure."""

import math

import matplotlib
import numpy as np
import pandas as pd

from w2s.report import figures
from w2s.report.tables import summary_columns


def summary(rows: list[dict]) -> pd.DataFrame:
    """A summary of direct transfers small -> large, one row per loss, with the columns the report writes."""
    base = dict(experiment="e", dataset="toy", kind="transfer", weak_model="small", model="large", chain="small->large")
    base |= dict(select="final", gold_frac=0.0, n_seeds=3, weak_non_embedding_parameters=1000)
    base |= dict(non_embedding_parameters=100_000, weak_accuracy=0.6, ceiling_accuracy=0.8, test_accuracy=0.7)
    frame = pd.DataFrame([base | row for row in rows])
    return frame.reindex(columns=summary_columns())


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def arrows(ax) -> list:
    return [child for child in ax.texts if getattr(child, "arrow_patch", None) is not None]


def test_an_unbounded_interval_is_an_arrow_to_each_edge_with_a_legend_entry():
    frame = summary(
        [
            dict(loss="xent", pgr=0.5, pgr_low=-math.inf, pgr_high=math.inf),
            dict(loss="logconf", pgr=0.8, pgr_low=0.6, pgr_high=1.0),
        ]
    )
    with matplotlib.rc_context(figures.STYLE):
        bars = figures.plot_losses(frame, "accuracy")
        lines = figures.plot_pgr(frame, "accuracy", {"small": "C0"})
    for fig in (bars, lines):
        ax = fig.axes[0]
        assert len(arrows(ax)) == 2  # up and down from the one unbounded point
        ends = sorted(a.xy[1] for a in arrows(ax))
        assert ends == [0.0, 1.0]  # in axes fractions: the edges, wherever the limits go
        assert figures.UNBOUNDED in legend_texts(fig)
        assert any(
            "95% intervals over test-set resamples and 3 seeds" in " ".join(lg.get_title().get_text().split())
            for lg in fig.legends
        )
    # the bounded interval is an error bar whose ends are its bounds; none has zero height
    (container,) = [c for c in bars.axes[0].containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    segments = container.lines[2][0].get_segments()
    assert [tuple(np.round(seg[:, 1], 6)) for seg in segments] == [(0.6, 1.0)]


def test_an_interval_past_the_axis_is_marked_at_the_edge():
    frame = summary([dict(loss="xent", pgr=0.5, pgr_low=-3.0, pgr_high=0.9)])  # the points set the scale
    with matplotlib.rc_context(figures.STYLE):
        fig = figures.plot_pgr(frame, "accuracy", {"small": "C0"})
    ax = fig.axes[0]
    low, _ = ax.get_ylim()
    assert low > -3.0
    marks = [line for line in ax.get_lines() if line.get_marker() == "v" and len(line.get_xdata())]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == low and not marks[0].get_clip_on()
    assert figures.BEYOND in legend_texts(fig)
    fig_inside = figures.plot_pgr(
        summary([dict(loss="xent", pgr=0.5, pgr_low=0.2, pgr_high=0.9)]), "accuracy", {"small": "C0"}
    )
    assert figures.BEYOND not in legend_texts(fig_inside)


def test_a_loss_has_one_colour_in_every_figure():
    frame = summary(
        [
            dict(loss=loss, pgr=0.5, pgr_low=0.2, pgr_high=0.8, misfit=m, student_minus_weak=g)
            | dict(agreement_supervisor_right=0.9, agreement_supervisor_wrong=0.5)
            for loss, m, g in (("xent", 0.1, 0.05), ("logconf", 0.2, 0.1))
        ]
    )
    frame = pd.concat([frame, frame.assign(chain="mid->large", weak_model="mid", misfit=[0.15, 0.3])])
    colors = figures._loss_colors(frame)
    assert colors == {"logconf": figures.PALETTE[0], "xent": figures.PALETTE[1]}
    with matplotlib.rc_context(figures.STYLE):
        drawn = [
            figures.plot_losses(frame, "accuracy"),
            figures.plot_agreement(frame),
            figures.plot_misfit(frame, "accuracy"),
        ]
    for fig in drawn:
        (legend,) = fig.legends
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            face = handle.get_facecolor() if hasattr(handle, "get_facecolor") else handle.get_color()
            assert matplotlib.colors.to_hex(face) == colors[text.get_text()].lower(), (fig, text.get_text())


def test_the_gold_figure_names_lines_by_chain_only_when_two_chains_have_gold_and_its_legend_fits():
    """Two supervisors of one student, only one of them with gold among its labels (random and least
    confident, and gold alone): the lines are that chain's, so no label repeats its name; the legend
    is laid out in as many columns as the figure's width holds for its longest label."""
    rows = [dict(chain="other->large", weak_model="other", gold_n=0, gold_select="random", loss="xent", pgr=0.4)]
    for n in (0, 50):
        for select in ("random", "least_confident"):
            rows.append(dict(gold_n=n, gold_select=select, loss="xent", pgr=0.5 + n / 1000))
            if n:
                rows.append(dict(kind="gold_only", gold_n=n, gold_select=select, loss="gold only", pgr=0.4))
    frame = summary(rows).assign(pgr_low=np.nan, pgr_high=np.nan)
    with matplotlib.rc_context(figures.STYLE):
        fig = figures.plot_gold(frame, "accuracy")
        fig.canvas.draw()
    labels = legend_texts(fig)
    assert sorted(labels) == [
        "gold only, least confident",
        "gold only, random",
        "xent, least confident",
        "xent, random",
    ]
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width  # inside the figure: no label cut at the sides
    wide = [f"a supervisor with a very long name->large, gold only, {i}" for i in range(4)]
    assert figures._legend_columns(fig, wide) < figures._legend_columns(fig, labels) <= 4


def test_every_supervisor_has_its_own_colour_in_the_order_of_size():
    """Sizes 1e6, 7.0e6 and 7.1e6 (a 1-layer model and an ensemble of about its size): three hues far
    apart, the smallest first on the map."""
    frame = pd.DataFrame(
        dict(weak_model=["small", "one-layer", "ensemble"], weak_non_embedding_parameters=[1e6, 7.0e6, 7.1e6])
    )
    colors = figures._weak_colors(frame)
    plasma = matplotlib.colormaps["plasma"]
    # evenly spaced: by log size the two near-equal ones would be a hair apart (0.844 and 0.85)
    assert [colors[w] for w in ("small", "one-layer", "ensemble")] == [plasma(0.05), plasma(0.45), plasma(0.85)]


def test_the_progress_figure_counts_its_seeds_in_words():
    def curves(seeds):
        points = [
            dict(dataset="toy", chain="small->large", loss="xent", select=rule, gold_frac=0.0, seed=seed)
            | dict(progress=progress, pgr=progress / 2, chosen=progress == 1.0)
            for rule in ("final", "oracle")
            for seed in seeds
            for progress in (0.5, 1.0)
        ]
        return pd.DataFrame(points)

    one, two = figures.plot_progress(curves([0])), figures.plot_progress(curves([0, 1]))
    assert "stopped (1 seed)" in legend_texts(one) and "means over 1 seed at each point (no intervals)" in [
        legend.get_title().get_text() for legend in one.legends
    ]
    assert "stopped (2 seeds)" in legend_texts(two)
