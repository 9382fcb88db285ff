"""RewardBench official scoring and MT-Bench agreement on hand-computed cases."""

from __future__ import annotations

import pytest

from st_eval.benchmarks.mtbench import mtbench_agreement
from st_eval.benchmarks.rewardbench import EXAMPLE_COUNTS, SECTIONS, pair_score, score_both_orders, score_rewardbench


def test_sections_cover_the_official_subsets_and_weights():
    assert sorted(s for members in SECTIONS.values() for s in members) == sorted(EXAMPLE_COUNTS)
    assert EXAMPLE_COUNTS["math-prm"] == 984
    code = sum(EXAMPLE_COUNTS[s] for s in SECTIONS["Reasoning"] if s.startswith("hep-"))
    assert code == EXAMPLE_COUNTS["math-prm"]  # Reasoning is half math, half code


def test_pair_score_counts_unparseable_and_tie_as_half():
    assert pair_score("A") == 1.0
    assert pair_score("B") == 0.0
    assert pair_score(None) == 0.5
    assert pair_score("tie") == 0.5


def test_official_score_by_hand():
    rows = [
        *[("llmbar-natural", s) for s in (1, 0, 0.5, 1)],  # 0.625
        *[("llmbar-adver-manual", s) for s in (0, 1)],  # 0.5
        ("mt-bench-hard", 1),  # 1.0
        *[("alpacaeval-easy", s) for s in (1, 1)],  # 1.0
        *[("math-prm", s) for s in (1, 0)],  # 0.5
        ("hep-python", 1),  # 1.0
        ("anthropic_helpful", 0),  # outside the four sections
    ]
    report = score_rewardbench(rows)
    assert report["subsets"]["llmbar-natural"] == {"accuracy": 0.625, "n": 4}
    chat_hard = (0.625 * 100 + 0.5 * 46 + 1.0 * 37) / (100 + 46 + 37)
    reasoning = (0.5 * 984 + 1.0 * 164) / (984 + 164)
    assert report["sections"]["Chat"] == pytest.approx(1.0)
    assert report["sections"]["Chat Hard"] == pytest.approx(chat_hard)
    assert report["sections"]["Reasoning"] == pytest.approx(reasoning)
    assert report["headline"] == pytest.approx((1.0 + chat_hard + reasoning) / 3)
    assert report["missing_sections"] == ["Safety"]
    assert report["partial_sections"]["Chat Hard"] == [
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
    ]
    assert report["other_subsets"] == ["anthropic_helpful"]


def test_official_score_of_nothing_has_no_headline():
    report = score_rewardbench([])
    assert report["headline"] is None
    assert report["missing_sections"] == list(SECTIONS)


def test_both_orders_figures_by_hand():
    judged = [
        ("llmbar-natural", "A", [("given", "A"), ("swapped", "A")]),  # right twice
        ("llmbar-natural", "A", [("given", "A"), ("swapped", "B")]),  # position-following
        ("llmbar-natural", "A", [("given", None), ("swapped", "A")]),  # one unparseable
        ("donotanswer", "A", [("given", "B"), ("swapped", "B")]),  # wrong twice
    ]
    report = score_both_orders(judged)
    assert report["accuracy_per_order"] == {"given": 0.5, "swapped": 0.5}
    assert report["consistent_accuracy"] == 0.25
    assert report["invalid_rate"] == 1 / 8
    assert report["subsets"]["llmbar-natural"]["consistent"] == pytest.approx(1 / 3)
    assert "not the official" in report["note"]
    # order-averaged: natural pairs score 1, 0.5, 0.75 -> 0.75; donotanswer 0
    assert report["order_averaged"]["subsets"]["llmbar-natural"]["accuracy"] == pytest.approx(0.75)
    assert report["order_averaged"]["sections"] == {"Chat Hard": pytest.approx(0.75), "Safety": 0.0}


def _meta(qid, a, b, turn, votes):
    return {"question_id": qid, "model_a": a, "model_b": b, "turn": turn, "votes": votes}


def test_mtbench_agreement_by_hand():
    judged = [
        # key (81, gpt-4, vicuna), turn 1: judge says B (vicuna); humans b, b, tie; author ignored
        (
            _meta(81, "gpt-4", "vicuna", 1, [
                {"judge": "expert_0", "winner": "model_b"},
                {"judge": "expert_1", "winner": "model_b"},
                {"judge": "expert_2", "winner": "tie (bothbad)"},
                {"judge": "author_0", "winner": "model_a"},
            ]),
            "B",
        ),
        # judge tie: counts with ties (tie == tie), dropped without ties
        (_meta(82, "alpaca", "llama", 1, [{"judge": "expert_0", "winner": "tie"}, {"judge": "expert_3", "winner": "model_a"}]), "tie"),
        # unparseable verdict: "error", disagrees in both modes
        (_meta(81, "gpt-4", "vicuna", 2, [{"judge": "expert_0", "winner": "model_a"}]), None),
        # only author votes: not counted at all
        (_meta(83, "claude-v1", "gpt-3.5-turbo", 2, [{"judge": "author_1", "winner": "model_a"}]), "A"),
    ]
    report = mtbench_agreement(judged)
    assert report["turn1"]["with_tie"] == {"agree": 3, "total": 5, "agreement": 0.6}
    assert report["turn1"]["without_tie"] == {"agree": 2, "total": 2, "agreement": 1.0}
    assert report["turn1"]["human_human"]["with_tie"] == {"agree": 1, "total": 4, "agreement": 0.25}
    assert report["turn1"]["human_human"]["without_tie"] == {"agree": 1, "total": 1, "agreement": 1.0}
    assert report["turn2"]["with_tie"] == {"agree": 0, "total": 1, "agreement": 0.0}
    assert report["turn2"]["without_tie"] == {"agree": 0, "total": 1, "agreement": 0.0}
