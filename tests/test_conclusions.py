"""Conclusions across pairs and datasets (w2s/report/conclusions.py): the median PGR over valid pairs
beside the pooled PGR and its interval, and paired comparisons of losses, on hand-built summaries
whose answers are known by hand, and through `build_report`."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.test_report import write_experiment
from w2s import report
from w2s.report.conclusions import (
    COMPARISON_COLUMNS,
    comparisons_markdown,
    conclusions_markdown,
    pair_conclusions,
    paired_comparisons,
)
from w2s.scoring.metrics import N_RESAMPLES, aggregate_seeds
from w2s.scoring.pgr import pgr, pgr_interval


def summary_row(
    chain, loss, weak=None, ceiling=None, student=None, value=None, dataset="toy", kind="transfer", **groups
):
    """A summary row (seed means) of one pair: its PGR is `value`, or that of the scores given."""
    weak_model, model = chain.split("->")[0], chain.split("->")[-1]
    named = dict(experiment="e", dataset=dataset, kind=kind, chain=chain, weak_model=weak_model, model=model, loss=loss)
    if value is None and None not in (weak, ceiling, student):
        value = pgr(student, weak, ceiling)
    scores = {"weak_accuracy": weak, "ceiling_accuracy": ceiling, "test_accuracy": student}
    return {**named, **groups, "n_seeds": 1, **scores, "pgr": value}


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# pair_conclusions


def test_median_is_over_valid_pairs_and_pooled_pgr_is_of_the_mean_scores():
    """PGRs 0.2, 0.5 and 0.9, the last with its weak model above its ceiling: the median is that of
    0.2 and 0.5; the pooled PGR is (0.67 - 0.55) / (0.85 - 0.55) = 0.4 of the two valid pairs' means."""
    summary = frame(
        [
            summary_row("a->b", "xent", 0.6, 0.8, 0.64),  # PGR 0.2
            summary_row("c->d", "xent", 0.5, 0.9, 0.7),  # PGR 0.5
            summary_row("d->e", "xent", 0.8, 0.7, 0.71),  # PGR (-0.09) / (-0.1) = 0.9: weak above ceiling
            summary_row("b->b", "xent", 0.8, 0.8, 0.8),  # weak and strong the same model
            summary_row("a->b->e", "xent", 0.1, 0.9, 0.9, kind="bootstrap"),  # not a direct transfer
        ]
    )
    (row,) = pair_conclusions(summary).to_dict("records")
    assert (row["n_pairs"], row["n_valid_pairs"]) == (4, 2)
    assert row["median_pgr"] == pytest.approx(0.35)
    assert row["pooled_pgr"] == pytest.approx(0.4)
    assert row["pooled_pgr_low"] is None and row["pooled_pgr_high"] is None
    assert row["note"] == "no resamples for 2 of 2 valid pairs: no interval"
    assert (row["experiment"], row["dataset"], row["loss"], row["metric"]) == ("e", "toy", "xent", "accuracy")


def test_median_keeps_the_reference_ratio_of_a_tiny_gap():
    """The notebook's median takes every valid pair's ratio, even where w2s's PGR is undefined (gap
    below 0.01): 0.3, 2.0 (gap 0.005) and 0.6 have median 0.6."""
    summary = frame(
        [
            summary_row("a->b", "xent", 0.6, 0.7, 0.63),
            summary_row("b->c", "xent", 0.700, 0.705, 0.710),
            summary_row("a->c", "xent", 0.5, 0.7, 0.62),
        ]
    )
    assert pd.isna(summary.loc[1, "pgr"])
    (row,) = pair_conclusions(summary).to_dict("records")
    assert row["n_valid_pairs"] == 3 and row["median_pgr"] == pytest.approx(0.6)


def test_no_valid_pair_leaves_median_and_pooled_empty_with_a_note():
    summary = frame([summary_row("a->a", "xent", 0.7, 0.7, 0.7), summary_row("b->a", "xent", 0.8, 0.7, 0.75)])
    (row,) = pair_conclusions(summary).to_dict("records")
    assert (row["n_pairs"], row["n_valid_pairs"]) == (2, 0)
    assert pd.isna(row["median_pgr"]) and pd.isna(row["pooled_pgr"]) and "no valid pair" in row["note"]


def test_groups_by_loss_dataset_and_the_select_and_gold_frac_columns_when_present():
    rows = [
        summary_row("a->b", "xent", 0.6, 0.8, 0.7, select="all", gold_frac=0.1),
        summary_row("a->b", "xent", 0.6, 0.8, 0.76, select="all", gold_frac=None),
        summary_row("a->b", "logconf", 0.6, 0.8, 0.64, select="all", gold_frac=0.1),
        summary_row("a->b", "xent", 0.6, 0.8, 0.62, dataset="other", select="all", gold_frac=0.1),
    ]
    conclusions = pair_conclusions(frame(rows))
    assert list(conclusions.columns[:5]) == ["experiment", "dataset", "loss", "select", "gold_frac"]
    assert conclusions["median_pgr"].round(6).tolist() == [0.5, 0.8, 0.2, 0.1]
    assert conclusions["gold_frac"].isna().tolist() == [False, True, False, False]
    pooled = pair_conclusions(frame(rows), by=["experiment", "loss"])  # the grouping is a parameter
    assert pooled["median_pgr"].round(6).tolist() == [0.5, 0.2] and pooled["n_valid_pairs"].tolist() == [3, 1]


def seed_draws(rng, point, sd=0.02) -> np.ndarray:
    """3 x N resamples of (weak, ceiling, student) around their point values."""
    return np.asarray(point, dtype=float)[:, None] + sd * rng.standard_normal((3, N_RESAMPLES))


def per_seed_frame(pairs: dict[str, list[tuple]]) -> pd.DataFrame:
    """Per-seed rows of direct transfers by chain: a (weak, ceiling, student) per seed, keyed chain/seed."""
    rows = []
    for chain, seeds in pairs.items():
        weak_model, model = chain.split("->")
        for seed, (w, c, s) in enumerate(seeds):
            named = dict(experiment="e", dataset="toy", kind="transfer", chain=chain, weak_model=weak_model)
            rows.append(
                named
                | dict(model=model, loss="xent", select="final", gold_frac=0.0, seed=seed, key=f"{chain}/s{seed}")
                | dict(weak_accuracy=w, ceiling_accuracy=c, test_accuracy=s)
            )
    return pd.DataFrame(rows)


def test_pooled_interval_of_pairs_that_differ_by_a_shift_is_the_one_pairs_interval():
    """The second pair is the first with every score 0.05 higher, in every resample: the pooled
    gap and gain, and their (co)variances, are the first pair's, so its interval is the summary's of
    the first pair. A third pair, weak above ceiling, with wild resamples, must be left out."""
    rng = np.random.default_rng(1)
    first = [(0.6, 0.9, 0.75), (0.62, 0.88, 0.77)]
    shifted = [tuple(v + 0.05 for v in seed) for seed in first]
    invalid = [(0.9, 0.8, 0.1), (0.9, 0.8, 0.1)]
    per_seed = per_seed_frame({"a->b": first, "c->d": shifted, "e->f": invalid})
    draws = {("e", f"a->b/s{i}"): seed_draws(rng, point) for i, point in enumerate(first)}
    draws |= {("e", f"c->d/s{i}"): draws[("e", f"a->b/s{i}")] + 0.05 for i in range(2)}
    draws |= {("e", f"e->f/s{i}"): seed_draws(rng, point, sd=0.5) for i, point in enumerate(invalid)}
    summary = report.summary_rows(per_seed, draws)
    (row,) = pair_conclusions(summary, per_seed, draws).to_dict("records")
    alone = summary.iloc[0]
    assert row["n_valid_pairs"] == 2 and row["pooled_pgr"] == pytest.approx(alone["pgr"])
    assert (row["pooled_pgr_low"], row["pooled_pgr_high"]) == pytest.approx((alone["pgr_low"], alone["pgr_high"]))
    assert pd.isna(row["note"])


def test_pooled_interval_of_independent_pairs_is_narrower_than_each_pairs():
    """Two pairs with the same PGR and independent noise: their mean has about half the variance, so
    the pooled interval is about 1/sqrt(2) as wide as a pair's (resamples stacked, not averaged,
    would keep a pair's width)."""
    rng = np.random.default_rng(2)
    seeds = [(0.6, 0.9, 0.75), (0.6, 0.9, 0.75)]
    per_seed = per_seed_frame({"a->b": seeds, "c->d": seeds})
    draws = {("e", f"{chain}/s{i}"): seed_draws(rng, seeds[i]) for chain in ("a->b", "c->d") for i in range(2)}
    summary = report.summary_rows(per_seed, draws)
    (row,) = pair_conclusions(summary, per_seed, draws).to_dict("records")
    widths = summary["pgr_high"] - summary["pgr_low"]
    pooled = row["pooled_pgr_high"] - row["pooled_pgr_low"]
    assert row["pooled_pgr_low"] < 0.5 < row["pooled_pgr_high"]
    assert 0.6 * widths.min() < pooled < 0.8 * widths.min()


def test_a_pair_without_resamples_leaves_the_pooled_interval_empty():
    """One seed with its point values only (a W&B run: no predictions) gives no interval."""
    rng = np.random.default_rng(3)
    per_seed = per_seed_frame({"a->b": [(0.6, 0.9, 0.75)] * 2, "c->d": [(0.6, 0.8, 0.65)]})
    draws = {("e", "a->b/s0"): seed_draws(rng, (0.6, 0.9, 0.75)), ("e", "a->b/s1"): seed_draws(rng, (0.6, 0.9, 0.75))}
    draws[("e", "c->d/s0")] = np.array([[0.6], [0.8], [0.65]])
    (row,) = pair_conclusions(report.summary_rows(per_seed, draws), per_seed, draws).to_dict("records")
    assert row["pooled_pgr"] == pytest.approx((0.7 - 0.6) / (0.85 - 0.6))  # mean student (0.75 + 0.65) / 2
    assert row["pooled_pgr_low"] is None and row["note"] == "no resamples for 1 of 2 valid pairs: no interval"


# ---------------------------------------------------------------------------------------------
# paired_comparisons


def exact_signed_rank_p(differences) -> float:
    """Two-sided exact p of Wilcoxon's signed-rank test, by enumerating every sign pattern (no ties)."""
    ranks = stats.rankdata(np.abs(differences))
    negative = ranks[np.asarray(differences) < 0].sum()
    observed = min(negative, ranks.sum() - negative)
    sums = [
        sum(r for r, picked in zip(ranks, signs) if picked) for signs in itertools.product([0, 1], repeat=len(ranks))
    ]
    return min(1.0, 2 * sum(s <= observed for s in sums) / len(sums))


def comparison_summary() -> pd.DataFrame:
    """xent and logconf on five chains of dataset toy (differences 0.1, 0.3, -0.05, 0.2, 0.15) and two
    of dataset other (0.4, 0.4), a chain where logconf has no PGR, and a same-model row."""
    xent = [0.5, 0.2, 0.6, 0.1, 0.3]
    differences = [0.1, 0.3, -0.05, 0.2, 0.15]
    rows = []
    for i, (a, d) in enumerate(zip(xent, differences)):
        rows += [summary_row(f"m{i}->s{i}", "xent", value=a), summary_row(f"m{i}->s{i}", "logconf", value=a + d)]
    for i in range(2):
        rows += [summary_row(f"o{i}->p", "xent", value=0.1, dataset="other")]
        rows += [summary_row(f"o{i}->p", "logconf", value=0.5, dataset="other")]
    rows += [summary_row("x->y", "xent", value=0.4), summary_row("x->y", "logconf", value=None)]
    rows += [summary_row("y->y", "xent"), summary_row("y->y", "logconf")]
    return frame(rows)


def test_paired_comparison_mean_difference_interval_and_signed_rank_test():
    comparisons = paired_comparisons(comparison_summary())
    assert list(comparisons.columns) == COMPARISON_COLUMNS
    toy, other, pooled = comparisons.to_dict("records")
    assert [r["dataset"] for r in (toy, other, pooled)] == ["toy", "other", "all"]
    assert (toy["compared"], toy["a"], toy["b"]) == ("loss", "xent", "logconf")  # the first level is the baseline
    differences = np.array([0.1, 0.3, -0.05, 0.2, 0.15])
    assert toy["n_units"] == 5 and toy["mean_difference"] == pytest.approx(0.14)
    # ranks of |d|: 2, 5, 1, 4, 3; the negative one has rank 1: W = 1, and 2 of 32 sign patterns sum to <= 1
    assert toy["wilcoxon_statistic"] == 1.0
    assert toy["wilcoxon_p"] == pytest.approx(0.125) == pytest.approx(exact_signed_rank_p(differences))
    picks = np.random.default_rng(0).integers(5, size=(10_000, 5))
    expected = np.quantile(differences[picks].mean(axis=1), [0.025, 0.975])
    assert (toy["mean_difference_low"], toy["mean_difference_high"]) == pytest.approx(tuple(expected))
    assert toy["mean_difference_low"] < 0.14 < toy["mean_difference_high"]
    assert other["n_units"] == 2 and other["mean_difference"] == pytest.approx(0.4)
    assert other["wilcoxon_p"] == pytest.approx(0.5) and "p cannot go below 0.5" in other["note"]
    everything = np.concatenate([differences, [0.4, 0.4]])
    assert pooled["n_units"] == 7 and pooled["mean_difference"] == pytest.approx(everything.mean())
    assert pooled["wilcoxon_p"] == pytest.approx(stats.wilcoxon(everything).pvalue)


def test_comparisons_match_on_gold_frac_and_compare_every_two_levels_in_order():
    rows = [summary_row("a->b", loss, value=v, gold_frac=g) for g in (0.1, 0.5) for loss, v in (("x", 0.2), ("y", 0.6))]
    rows += [summary_row("a->b", "z", value=0.3, gold_frac=0.1)]
    comparisons = paired_comparisons(frame(rows))
    toy = comparisons[comparisons["dataset"] == "toy"]
    assert list(zip(toy["a"], toy["b"])) == [("x", "y"), ("x", "z"), ("y", "z")]
    assert toy["n_units"].tolist() == [2, 1, 1]  # x and y at both gold fractions, z at one
    assert toy["mean_difference"].round(6).tolist() == [0.4, 0.1, -0.3]
    later = paired_comparisons(frame(rows), levels=["y", "x"])
    assert list(zip(later["a"], later["b"])) == [("y", "x")] * 2  # toy, all
    assert later["mean_difference"].round(6).tolist() == [-0.4, -0.4]


def test_too_few_units_or_no_difference_leaves_the_test_out_with_a_note():
    one = paired_comparisons(frame([summary_row("a->b", "x", value=0.2), summary_row("a->b", "y", value=0.5)]))
    row = one.iloc[0]
    assert row["n_units"] == 1 and row["mean_difference"] == pytest.approx(0.3)
    assert pd.isna(row["wilcoxon_p"]) and pd.isna(row["mean_difference_low"]) and "1 unit" in row["note"]
    rows = [summary_row(f"a{i}->b", loss, value=0.1 * i + 0.3) for i in range(3) for loss in ("x", "y")]
    row = paired_comparisons(frame(rows)).iloc[0]
    assert row["n_units"] == 3 and row["mean_difference"] == 0.0
    assert pd.isna(row["wilcoxon_p"]) and row["note"] == "all differences are zero: no test"
    none = paired_comparisons(frame([summary_row("a->b", "x", value=0.2), summary_row("a->b", "y", value=None)]))
    assert none["n_units"].tolist() == [0, 0] and none["note"].str.startswith("no pair has a PGR").all()


def test_a_single_level_gives_the_columns_without_rows():
    comparisons = paired_comparisons(frame([summary_row("a->b", "xent", value=0.2)]))
    assert list(comparisons.columns) == COMPARISON_COLUMNS and comparisons.empty
    text = comparisons_markdown(comparisons, "KEY_VERSION 5")
    assert text.startswith("| experiment | dataset | b − a |") and "no comparisons" in text
    assert text.rstrip().endswith("KEY_VERSION 5")


def test_markdown_shows_three_decimals_and_intervals_in_brackets():
    named = dict(experiment="e", dataset="toy", loss="xent", metric="accuracy", n_pairs=6, n_valid_pairs=3)
    scores = dict(median_pgr=0.51234, pooled_pgr=0.5, pooled_pgr_low=0.4321, pooled_pgr_high=np.inf, note=None)
    conclusions = pd.DataFrame([named | scores])
    text = conclusions_markdown(conclusions, "provenance here")
    assert "| e | toy | xent | 3 of 6 | 0.512 | 0.500 [0.432, ∞] |  |" in text and "provenance here" in text


# ---------------------------------------------------------------------------------------------
# through build_report


def test_build_report_writes_conclusions_and_comparisons(tmp_path):
    """The sweep of tests/test_report.py: three upward pairs per loss recover exactly 0.5 (xent) and
    0.8 (logconf) of the gap, so both the median and the pooled PGR are those, and logconf - xent is
    0.3 on each of the three pairs (W = 0; 2 of the 8 sign patterns are as extreme: p = 0.25); xent,
    the paper's loss, is the baseline a."""
    root = write_experiment(tmp_path / "runs" / "sweep")
    written = {p.name for p in report.report([root])}
    assert {"conclusions.csv", "conclusions.md", "comparisons.csv", "comparisons.md"} <= written
    out = root / "report"
    conclusions = pd.read_csv(out / "conclusions.csv").set_index("loss")
    assert conclusions["n_pairs"].to_dict() == {"logconf": 6, "xent": 6}
    assert conclusions["n_valid_pairs"].to_dict() == {"logconf": 3, "xent": 3}
    for loss, share in (("xent", 0.5), ("logconf", 0.8)):
        assert conclusions.loc[loss, "median_pgr"] == pytest.approx(share)
        assert conclusions.loc[loss, "pooled_pgr"] == pytest.approx(share)
    # the pooled interval averages the three valid pairs' seed-aggregated resamples of seed_rows
    per_seed, draws = report.seed_rows(report.load_records(root))
    valid = per_seed[(per_seed["loss"] == "xent") & (per_seed["weak_model"] != per_seed["model"])]
    pooled = np.mean(
        [aggregate_seeds([draws[k] for k in zip(f["experiment"], f["key"])]) for _, f in valid.groupby("chain")], axis=0
    )
    expected = pgr_interval(pooled, 0.65, 0.85, 0.75)
    assert tuple(conclusions.loc["xent", ["pooled_pgr_low", "pooled_pgr_high"]]) == pytest.approx(expected)
    assert expected[0] < 0.5 < expected[1]
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert comparisons["dataset"].tolist() == ["toy", "all"]
    for row in comparisons.to_dict("records"):
        assert (row["a"], row["b"], row["n_units"]) == ("xent", "logconf", 3)
        assert row["mean_difference"] == pytest.approx(0.3)
        assert (row["wilcoxon_statistic"], row["wilcoxon_p"]) == (0.0, pytest.approx(0.25))
    assert "KEY_VERSION" in (out / "conclusions.md").read_text()
    assert (
        "| sweep | toy | loss: logconf − xent | 3 pairs | 0.300 [0.300, 0.300] |"
        in (out / "comparisons.md").read_text()
    )


def test_selection_rules_are_compared_seed_by_seed_within_a_pair():
    """units="seeds": one pair, three seeds, each rule's PGR per seed; the units are the seeds, so the
    differences are 0.1, 0.2, -0.05 (mean 0.0833), and Wilcoxon's W is the smaller rank sum, 1."""
    rows = []
    for seed, (final, chosen) in enumerate([(0.3, 0.4), (0.1, 0.3), (0.5, 0.45)]):
        for rule, value in (("final", final), ("weak_validation", chosen)):
            rows.append(
                dict(experiment="e", dataset="toy", kind="transfer", chain="a->b", weak_model="a", model="b")
                | dict(loss="xent", select=rule, gold_frac=0.0, seed=seed, pgr=value)
            )
    (row, _) = paired_comparisons(pd.DataFrame(rows), "select", units="seeds").to_dict("records")
    assert (row["a"], row["b"], row["units"], row["n_units"]) == ("final", "weak_validation", "seeds", 3)
    assert row["mean_difference"] == pytest.approx((0.1 + 0.2 - 0.05) / 3)
    assert row["wilcoxon_statistic"] == 1.0


def test_gold_selections_are_compared_seed_by_seed_for_mixed_and_gold_only_students_apart():
    """least_confident - random per seed: +0.1, +0.2, +0.3 for the mixed students (kind transfer) and
    -0.2, -0.1, -0.3 for those trained on the gold rows alone; pooled, they would nearly cancel. The
    gold-free student (gold_n 0) has one level and gives no unit. Random is the baseline a even when
    least_confident comes first."""
    rows = []
    for seed in range(3):
        for kind, n, random, step in (("transfer", 50, 0.5, 0.1), ("gold_only", 50, 0.4, -0.1)):
            for select, value in (("least_confident", random + step * (seed + 1)), ("random", random)):
                rows.append(
                    dict(experiment="e", dataset="toy", kind=kind, chain="a->b", weak_model="a", model="b")
                    | dict(loss="xent", select="final", gold_n=n, gold_select=select, seed=seed, pgr=value)
                )
        rows.append(rows[-1] | dict(kind="transfer", gold_n=0, gold_select="random", pgr=0.3))
    per_seed = pd.DataFrame(rows)
    comparisons = pd.concat(report.gold_select_comparisons(per_seed, "accuracy", ["random", "least_confident"]))
    toy = comparisons[comparisons["dataset"] == "toy"].set_index("units")
    assert list(toy.index) == ["gold amounts x seeds (mixed)", "gold amounts x seeds (gold only)"]
    assert set(zip(toy["compared"], toy["a"], toy["b"])) == {("gold_select", "random", "least_confident")}
    assert toy["n_units"].tolist() == [3, 3]
    assert toy.loc["gold amounts x seeds (mixed)", "mean_difference"] == pytest.approx(0.2)
    assert toy.loc["gold amounts x seeds (gold only)", "mean_difference"] == pytest.approx(-0.2)
    assert (
        "| e | toy | gold_select: least_confident − random | 3 gold amounts x seeds (gold only) | -0.200"
        in comparisons_markdown(comparisons)
    )
