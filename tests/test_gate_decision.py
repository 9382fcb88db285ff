"""Decision rules of the gate on hand-made judgments (no model)."""

from __future__ import annotations

import math

import pytest

from st_eval.errors import InputError
from st_eval.gate.decision import Policy, decide
from st_eval.significance import clopper_pearson
from st_eval.records import Judgment, OrderResult

_FLIP = {"A": "B", "B": "A"}


def judgment(verdict: str | None, category: str = "writing", consistent: bool = True, confidence: float = 1.0) -> Judgment:
    """A both-orders judgment; the candidate is A. ``consistent=False`` is a flip (a tie)."""
    if not consistent:
        orders = [OrderResult("given", "A", {"A": 1}, 1.0, "x", ["x"]), OrderResult("swapped", "B", {"B": 1}, 1.0, "y", ["y"])]
        verdict = "tie"
    else:
        orders = [OrderResult(o, verdict, {verdict or "invalid": 1}, confidence, "why", ["why"]) for o in ("given", "swapped")]  # type: ignore[arg-type]
    return Judgment(
        pair_id=str(id(orders)), verdict=verdict, confidence=confidence, rationale="why", orders=orders,  # type: ignore[arg-type]
        consistent=None if verdict is None else consistent, engine="stand-in", model="m", template="t",
        sampling={}, metadata={"category": category},
    )


def many(wins: int = 0, ties: int = 0, losses: int = 0, failed: int = 0, category: str = "writing") -> list[Judgment]:
    return (
        [judgment("A", category) for _ in range(wins)]
        + [judgment("tie", category) for _ in range(ties)]
        + [judgment("B", category) for _ in range(losses)]
        + [judgment(None, category) for _ in range(failed)]
    )


def test_counts_and_rates_follow_the_definitions():
    d = decide(many(wins=6, ties=2, losses=2), Policy(min_decided=1))
    s = d.overall
    assert (s.wins, s.ties, s.losses, s.n) == (6, 2, 2, 10)
    assert s.win_rate == pytest.approx(0.7)
    assert s.loss_rate == pytest.approx(0.2)
    assert s.net == pytest.approx(0.4)
    assert s.win_rate == pytest.approx(0.5 + s.net / 2)
    assert d.status == "pass" and d.exit_code == 0


def test_flipped_verdict_is_a_tie_and_lowers_position_consistency():
    d = decide([judgment("A"), judgment("A", consistent=False), judgment("B"), judgment("A", consistent=False)], Policy(min_decided=1))
    assert (d.overall.wins, d.overall.ties, d.overall.losses) == (1, 2, 1)
    assert d.overall.position_consistency == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["bootstrap", "exact"])
def test_intervals_contain_the_estimate_and_are_reproducible(method):
    js = many(wins=30, ties=10, losses=20)
    a = decide(js, Policy(min_decided=1, ci=method)).overall
    b = decide(js, Policy(min_decided=1, ci=method)).overall
    assert a.net_ci == b.net_ci
    assert a.net_ci.low < a.net < a.net_ci.high
    assert a.loss_rate_ci.low < a.loss_rate < a.loss_rate_ci.high
    assert a.win_rate_ci.low == pytest.approx(0.5 + a.net_ci.low / 2)


def test_clopper_pearson_matches_known_values():
    zero = clopper_pearson(0, 10, 0.95)
    assert zero.low == 0 and zero.high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-6)
    half = clopper_pearson(5, 10, 0.95)
    assert half.low == pytest.approx(0.187086, abs=1e-5) and half.high == pytest.approx(0.812914, abs=1e-5)


def test_clear_regression_fails_even_without_thresholds():
    d = decide(many(wins=2, ties=3, losses=25), Policy(min_decided=1))
    assert d.status == "fail" and d.exit_code == 1
    assert [c.name for c in d.checks if not c.passed] == ["not_significantly_worse"]
    assert decide(many(wins=2, ties=3, losses=25), Policy(min_decided=1, require_not_worse=False)).status == "pass"


@pytest.mark.parametrize(
    ("policy", "status"),
    [
        (Policy(min_decided=1, min_win_rate=0.55), "pass"),  # win rate 0.55 exactly
        (Policy(min_decided=1, min_win_rate=0.56), "fail"),
        (Policy(min_decided=1, max_loss_rate=0.3), "pass"),  # loss rate 0.3 exactly
        (Policy(min_decided=1, max_loss_rate=0.29), "fail"),
    ],
)
def test_thresholds_are_inclusive(policy, status):
    assert decide(many(wins=8, ties=6, losses=6), policy).status == status


def test_non_inferiority_uses_the_lower_confidence_bound():
    js = many(wins=40, ties=20, losses=40)  # net 0, CI about +-0.17
    assert decide(js, Policy(min_decided=1, non_inferiority_margin=0.05)).status == "fail"
    assert decide(js, Policy(min_decided=1, non_inferiority_margin=0.3)).status == "pass"
    assert decide(js, Policy(min_decided=1, non_inferiority_margin=0.3, ci="exact")).status == "pass"


def test_category_thresholds_apply_per_category_and_star_to_all():
    js = many(wins=9, losses=1, category="writing") + many(wins=2, losses=4, category="math")
    d = decide(js, Policy(min_decided=1, category_min_win_rate={"math": 0.5}, require_not_worse=False))
    assert d.status == "fail"
    assert [(c.scope, c.passed) for c in d.checks] == [("math", False)]
    star = decide(js, Policy(min_decided=1, category_max_loss_rate={"*": 0.5}, require_not_worse=False))
    assert {c.scope: c.passed for c in star.checks} == {"math": False, "writing": True}
    assert set(d.categories) == {"math", "writing"}


def test_unknown_category_in_a_threshold_is_an_input_error():
    with pytest.raises(InputError, match="unknown category codng"):
        decide(many(wins=3), Policy(min_decided=1, category_min_win_rate={"codng": 0.5}))


def test_judge_failures_above_the_limit_are_an_error_even_when_everything_else_wins():
    d = decide(many(wins=18, failed=2), Policy(min_decided=1, max_failure_rate=0.05))
    assert d.overall.n == 18 and d.overall.failure_rate == pytest.approx(0.1)
    assert d.status == "error" and d.exit_code == 2
    assert "failure rate" in d.errors[0]
    assert decide(many(wins=18, failed=2), Policy(min_decided=1, max_failure_rate=0.1)).status == "pass"


@pytest.mark.parametrize("js", [[], many(failed=3)], ids=["no prompts", "all failed"])
def test_nothing_decided_is_an_error(js):
    d = decide(js, Policy(min_decided=1, max_failure_rate=1.0))
    assert d.status == "error" and d.exit_code == 2


@pytest.mark.parametrize("bad", [dict(min_win_rate=1.5), dict(ci="normal"), dict(confidence=1.0), dict(category_max_loss_rate={"x": -0.1})])
def test_bad_policy_values_are_input_errors(bad):
    with pytest.raises(InputError):
        Policy(**bad)


def test_min_decided_prompts_follows_the_documented_power_formula():
    from statistics import NormalDist

    from st_eval.gate.decision import min_decided_prompts

    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    for margin in (1 / 3, 0.1, 0.05):
        assert min_decided_prompts(margin) == math.ceil((z / margin) ** 2)
    assert (min_decided_prompts(1 / 3), min_decided_prompts(0.1), min_decided_prompts(0.05)) == (71, 785, 3140)  # as docs/gate.md says
    assert min_decided_prompts(0.1, confidence=0.9) < min_decided_prompts(0.1)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (dict(wins=3), "inconclusive"),  # 3 of 3 won: net +1.000 [+1.000, +1.000], still far too few prompts
        (dict(wins=1, losses=2), "inconclusive"),  # losing 2 of 3 is not significantly worse, and not a pass
        (dict(wins=70), "inconclusive"),
        (dict(wins=71), "pass"),
        (dict(losses=10), "fail"),  # significantly worse: a fail needs no minimum
    ],
)
def test_a_gate_with_too_few_decided_prompts_is_inconclusive_never_a_pass(outcomes, expected):
    d = decide(many(**outcomes), Policy())
    assert d.status == expected
    if expected == "inconclusive":
        assert d.exit_code == 2
        assert f"{d.overall.n} decided prompts, fewer than the 71 a pass needs" in d.errors[0]


def test_the_minimum_follows_the_margin_and_min_decided_overrides_it():
    js = many(wins=700)
    assert decide(js, Policy(non_inferiority_margin=0.1)).status == "inconclusive"  # needs 785
    assert "785" in decide(js, Policy(non_inferiority_margin=0.1)).errors[0]
    assert decide(js, Policy(non_inferiority_margin=0.1, min_decided=700)).status == "pass"
    with pytest.raises(InputError, match="--min-decided"):
        Policy(min_decided=0)
