"""Label costs and the frontier (w2s/report/costs.py): hand-made points with known answers, bad
prices refused, and `w2s report --cost` on a run with weak-only, mixed and gold-only students."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_spec
from w2s import report
from w2s.errors import SpecError
from w2s.pipeline.runner import run_experiment
from w2s.report.costs import cost_rows, frontier, parse_costs
from w2s.spec import validate_spec


def test_the_frontier_is_the_best_point_at_each_budget():
    cost = np.array([100, 50, 150, 50, 300, 200, 120])
    score = np.array([0.80, 0.70, 0.78, 0.72, 0.90, 0.90, 0.85])
    # by cost: 50 (0.72 beats its equal-cost 0.70), 100 (0.80), 120 (0.85), 150 (0.78: worse than
    # cheaper), 200 (0.90), 300 (0.90: no better than the cheaper 0.90)
    assert frontier(cost, score).tolist() == [True, False, False, True, False, True, True]
    assert frontier(np.array([5.0]), np.array([0.5])).tolist() == [True]
    assert frontier(np.array([1.0, 2.0]), np.array([0.9, 0.5])).tolist() == [True, False]


def test_prices_are_parsed_and_bad_ones_refused_in_one_line():
    assert parse_costs(["weak=1,gold=10", "gold=100,weak=0.5"]) == [(1.0, 10.0), (0.5, 100.0)]
    for bad in ("weak=1", "weak=1,gold=ten", "weak=-1,gold=3", "weak=1,gold=2,silver=3", "1,10", "weak=1,gold=inf"):
        with pytest.raises(SpecError, match="--cost") as err:
            parse_costs([bad])
        assert "\n" not in str(err.value) and "weak=PRICE,gold=PRICE" in str(err.value)


def _summary(points):
    base = dict(experiment="e", dataset="d", weak_model="w", model="s", select="final", gold_select="random")
    return pd.DataFrame([{**base, **p} for p in points])


def test_each_students_labels_are_priced_by_family_and_the_frontier_is_per_pair_and_price():
    summary = _summary(
        [
            dict(kind="transfer", loss="xent", n_train=100, n_gold=0, gold_n=0, test_accuracy=0.70, pgr=0.2),
            dict(kind="transfer", loss="xent", n_train=100, n_gold=10, gold_n=10, test_accuracy=0.78, pgr=0.6),
            dict(kind="gold_only", loss="xent", n_train=10, n_gold=10, gold_n=10, test_accuracy=0.74, pgr=0.4),
            dict(kind="transfer", loss="xent", n_train=100, n_gold=50, gold_n=50, test_accuracy=0.80, pgr=0.7),
            dict(kind="gold_only", loss="xent", n_train=50, n_gold=50, gold_n=50, test_accuracy=0.82, pgr=0.8),
            dict(kind="ground_truth", loss=None, n_train=500, test_accuracy=0.9, pgr=None),  # not a student
        ]
    )
    priced = cost_rows(summary, [(1, 2), (1, 20)])
    assert len(priced) == 10
    cheap = priced[priced["gold_cost"] == 2].set_index(["family", "n_gold"])
    assert cheap.loc[("weak only", 0), ["n_weak", "cost"]].tolist() == [100, 100]
    assert cheap.loc[("mixed", 10), ["n_weak", "cost"]].tolist() == [90, 110]
    assert cheap.loc[("gold only", 10), ["n_weak", "cost"]].tolist() == [0, 20]
    assert cheap.loc[("gold only", 50), "cost"] == 100 and cheap.loc[("mixed", 50), "cost"] == 150
    # gold at 2: gold-only 10 (20, 0.74), gold-only 50 (100, 0.82) dominate; the weak-only student at
    # 100 ties gold-only 50 in cost and loses
    assert sorted(cheap.index[cheap["on_frontier"]]) == [("gold only", 10), ("gold only", 50)]
    dear = priced[priced["gold_cost"] == 20].set_index(["family", "n_gold"])
    # gold at 20: weak only 100 (0.70), gold-only 10 at 200 (0.74), mixed 10 at 290 (0.78), gold-only
    # 50 at 1000 (0.82); mixed 50 (1050, 0.80) is dominated
    assert sorted(dear.index[dear["on_frontier"]]) == [
        ("gold only", 10),
        ("gold only", 50),
        ("mixed", 10),
        ("weak only", 0),
    ]


def test_report_cost_writes_the_table_and_the_frontier_of_a_run(tmp_path):
    spec = tiny_spec(tmp_path, pairs=[["tiny-16", "tiny-24"]])
    spec["train"].update(gold_n=[0, 4, 12], gold_only=True)
    run_experiment(validate_spec(spec), echo=lambda *a: None)
    written = report.report([tmp_path / "tiny"], tmp_path / "report", echo=lambda *a: None, costs=[(1, 5), (1, 50)])
    names = {p.name for p in written}
    assert {"cost.csv", "cost.md", "cost_frontier.png", "cost_frontier.pdf"} <= names
    priced = pd.read_csv(tmp_path / "report" / "cost.csv")
    assert len(priced) == 2 * 5  # 3 students (0, 4, 12 gold) and 2 gold-only stages, at 2 prices
    assert set(priced["family"]) == {"weak only", "mixed", "gold only"}
    for (w, g), frame in priced.groupby(["weak_cost", "gold_cost"]):
        assert frame["on_frontier"].any()
        assert (frame["cost"] == w * frame["n_weak"] + g * frame["n_gold"]).all()
        cheapest = frame.loc[frame["cost"].idxmin()]
        assert cheapest["on_frontier"]  # the cheapest point is always on it
    table = (tmp_path / "report" / "cost.md").read_text()
    assert "| tiny-16->tiny-24 | 1 : 50 | gold only | xent (gold) | 0 | 12 | 600 |" in table


def test_a_pair_whose_students_have_no_gold_labels_is_left_out():
    """Two pairs at one price: w->s with a weak-only and a mixed student, v->s with a weak-only one
    alone (one point: no budget to balance)."""
    summary = _summary(
        [
            dict(kind="transfer", loss="xent", n_train=100, n_gold=0, gold_n=0, test_accuracy=0.70, pgr=0.2),
            dict(kind="transfer", loss="xent", n_train=100, n_gold=10, gold_n=10, test_accuracy=0.78, pgr=0.6),
            dict(weak_model="v", kind="transfer", loss="xent", n_train=100, n_gold=0, gold_n=0, test_accuracy=0.8),
        ]
    )
    priced = cost_rows(summary, [(1, 3)])
    assert priced["weak_model"].tolist() == ["w", "w"] and priced["family"].tolist() == ["weak only", "mixed"]
    assert cost_rows(summary[summary["weak_model"] == "v"], [(1, 3)]).empty
