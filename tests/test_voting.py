"""Majority vote, margins and the merge of both presentation orders."""

from st_eval.records import OrderResult
from st_eval.voting import combine_orders, majority


def result(order, verdict, confidence=1.0):
    return OrderResult(order=order, verdict=verdict, votes={}, confidence=confidence, rationale="", raw=[])


def test_majority_margin_counts_invalid_in_denominator():
    assert majority({"A": 3, "B": 1, "invalid": 1}) == ("A", 0.4)


def test_split_vote_is_a_tie_and_no_valid_vote_is_invalid():
    assert majority({"A": 2, "B": 2}) == ("tie", 0.0)
    assert majority({"invalid": 3}) == (None, 0.0)


def test_orders_that_agree_keep_the_verdict():
    assert combine_orders([result("given", "A", 0.6), result("swapped", "A", 0.8)]) == ("A", 0.6, True)


def test_verdict_that_follows_position_becomes_a_tie():
    assert combine_orders([result("given", "A"), result("swapped", "B")]) == ("tie", 0.0, False)


def test_single_order_passes_through():
    assert combine_orders([result("swapped", "B", 0.5)]) == ("B", 0.5, None)
