"""Intervals and tests behind every claimed gain, checked against hand computations."""

from __future__ import annotations

import json

import pytest

from st_eval.benchmarks.judge_figures import compare, figures, load_baseline
from st_eval.errors import InputError
from st_eval.significance import bootstrap_mean, mcnemar_exact, paired_comparison


def test_mcnemar_exact_by_hand():
    # b = 1 (baseline only right), c = 5 (candidate only right): p = 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * 7/64
    baseline = [True, False, False, False, False, False, True, True]
    candidate = [False, True, True, True, True, True, True, True]
    assert mcnemar_exact(baseline, candidate) == pytest.approx(14 / 64)
    assert mcnemar_exact([True, False], [True, False]) == 1.0  # no discordant pair
    assert mcnemar_exact([False] * 10, [True] * 10) == pytest.approx(2 / 1024)


def test_paired_comparison_gain_interval_and_mcnemar():
    baseline = [0, 1, 0, 0, 1, 0, 0, 1] * 10
    candidate = [1, 1, 1, 0, 1, 1, 0, 1] * 10
    result = paired_comparison(baseline, candidate, resamples=2000)
    assert result.n == 80 and result.gain == pytest.approx(0.375)
    assert result.gain_ci.low > 0 and result.gain_ci.low < result.gain < result.gain_ci.high
    assert result.mcnemar_p is not None and result.mcnemar_p < 0.001
    same = paired_comparison(baseline, baseline, resamples=200)
    assert same.gain == 0 and same.gain_ci.low == same.gain_ci.high == 0
    averaged = paired_comparison([0.5, 1.0], [1.0, 1.0], resamples=200)
    assert averaged.mcnemar_p is None  # not right/wrong outcomes


def test_paired_comparison_is_reproducible_and_needs_the_same_pairs():
    a, b = [0, 1, 1, 0, 1], [1, 1, 0, 1, 1]
    assert paired_comparison(a, b, seed=7).gain_ci == paired_comparison(a, b, seed=7).gain_ci
    with pytest.raises(ValueError, match="same pairs"):
        paired_comparison([0, 1], [1])


def test_bootstrap_mean_covers_the_mean():
    ci = bootstrap_mean([0.0, 1.0] * 50, resamples=2000)
    assert ci.low < 0.5 < ci.high and ci.high - ci.low < 0.25


def _rows(scores, consistent, subset="s1"):
    return [
        {"id": f"{subset}-{i}", "subset": subset, "orders": {"given": "A", "swapped": "A"}, "score": s, "consistent": c,
         "invalid_orders": 0, "forced": 0, "samples": 2, "shortened": False}
        for i, (s, c) in enumerate(zip(scores, consistent))
    ]


def test_figures_per_subset_and_overall_with_chance_levels():
    rows = _rows([1, 0.5, 0], [1, 0, 0]) + _rows([1, 1], [1, 1], subset="s2")
    result = figures(rows)
    assert list(result) == ["s1", "s2", "all"]
    assert result["s1"]["order_averaged"] == pytest.approx(0.5) and result["s1"]["consistent"] == pytest.approx(1 / 3)
    assert result["all"]["n"] == 5 and result["all"]["order_averaged"] == pytest.approx(3.5 / 5)
    assert result["all"]["order_averaged_chance"] == 0.5 and result["all"]["consistent_chance"] == 0.25
    ci = result["all"]["consistent_ci"]
    assert ci["low"] <= result["all"]["consistent"] <= ci["high"]


def test_compare_with_a_baseline_report(tmp_path):
    before = _rows([0, 0.5, 1, 0], [0, 0, 1, 0])
    after = _rows([1, 1, 1, 0.5], [1, 1, 1, 0])
    path = tmp_path / "base.json"
    path.write_text(json.dumps({"model": "seed", "rows": before}))
    gains = compare(load_baseline(path)["rows"], after, where=str(path))
    assert gains["s1"]["order_averaged"]["gain"] == pytest.approx((3.5 - 1.5) / 4)
    assert gains["s1"]["consistent"]["mcnemar_p"] == pytest.approx(0.5)  # b = 0, c = 2
    with pytest.raises(InputError, match="no row for 1 of these pairs"):
        compare(before[:3], after, where="base.json")


def test_bad_baseline_reports_name_the_problem(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_baseline(path)
    path.write_text(json.dumps({"rows": [{"id": "x", "score": 1}]}))
    with pytest.raises(InputError, match=r"rows\[1\]: field 'consistent'"):
        load_baseline(path)


def test_length_figures_show_a_judge_that_only_likes_short_answers():
    rows = []
    for i, (label, longer) in enumerate([("A", "B"), ("A", "B"), ("B", "B"), ("A", "A")]):
        shorter = "A" if longer == "B" else "B"
        right = label == shorter  # this judge always picks the shorter answer
        rows.append({"id": str(i), "subset": "s", "orders": {"given": shorter, "swapped": shorter}, "score": float(right),
                     "consistent": int(right), "invalid_orders": 0, "samples": 2, "longer": longer, "label": label})
    result = figures(rows)["s"]
    assert result["prefers_longer"] == 0.0
    assert result["better_is_shorter"] == {"n": 2, "order_averaged": 1.0}
    assert result["better_is_longer"] == {"n": 2, "order_averaged": 0.0}
