"""The k-way judge and written ratings in the judge core: position draws, arrangement, voting,
rating means and spreads, and pairwise judging by written ratings (scripted stand-in engine)."""

from __future__ import annotations

from collections import Counter

import pytest

from st_eval.engines.base import Engine
from st_eval.judge import Judge, JudgeConfig
from st_eval.kway import all_positions, arrangement, drawn_position, judge_kway, kway_verdict
from st_eval.prompt import load_template
from st_eval.records import Message, Pair
from st_eval.scores import WrittenRating, rate, written_rating


class ScriptedJudge(Engine):
    """Stand-in for a model (no weights needed): answers each prompt with the scripted outputs of
    the first key found in its text, cycling through them sample by sample."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]]) -> None:
        super().__init__("scripted-judge")
        self.script = script
        self.calls: list[tuple[int, int]] = []

    def generate(self, prompts, n=1, sampling=None):
        self.calls.append((len(prompts), n))
        out = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            key = next(k for k in self.script if k in text)
            out.append([self.script[key][i % len(self.script[key])] for i in range(n)])
        return out


def test_drawn_position_is_seeded_uniform_and_order_free():
    ids = [f"row-{i}" for i in range(800)]
    first = [drawn_position(i, 1, 4) for i in ids]
    assert first == [drawn_position(i, 1, 4) for i in ids]
    assert [drawn_position(i, 1, 4) for i in reversed(ids)] == first[::-1]
    assert first != [drawn_position(i, 2, 4) for i in ids]
    counts = Counter(first)
    assert set(counts) == {0, 1, 2, 3} and all(150 <= c <= 250 for c in counts.values())
    assert all_positions(4) == [0, 1, 2, 3]


def test_arrangement_swaps_the_correct_answer_into_place():
    others = ["r0", "r1", "r2"]
    assert [arrangement("good", others, p) for p in range(4)] == [
        ["good", "r0", "r1", "r2"], ["r0", "good", "r1", "r2"], ["r1", "r0", "good", "r2"], ["r2", "r0", "r1", "good"],
    ]
    with pytest.raises(ValueError, match="position 4"):
        arrangement("good", others, 4)


def test_kway_votes_samples_and_a_split_names_no_answer():
    template = load_template("rewardbench2-4way")
    voted = kway_verdict(["... [[C]]", "[[C]]", "[[B]]", "no idea"], template)
    assert (voted.verdict, voted.votes, voted.confidence, voted.invalid) == ("C", {"B": 1, "C": 2, "invalid": 1}, 0.25, 1)
    split = kway_verdict(["[[A]]", "[[D]]"], template)
    assert (split.verdict, split.split) == (None, True)
    engine = ScriptedJudge({"Q1": ["[[D]]"], "Q2": ["[[A]]", "[[B]]", "[[A]]"]})
    prompts = [template.render_kway([Message("user", q)], ["a", "b", "c", "d"]) for q in ("Q1", "Q2")]
    results = judge_kway(engine, prompts, template, 3, sampling=None)  # type: ignore[arg-type]
    assert [r.verdict for r in results] == ["D", "A"] and engine.calls == [(2, 3)]


def test_written_ratings_mean_spread_and_failures():
    template = load_template("rewardbench2-ratings")
    rating = written_rating(["Good. 8", "Fine.\n6", "no number here", "10"], template)
    assert rating.ratings == (8, 6, None, 10)
    assert rating.mean == pytest.approx(8.0) and rating.spread == pytest.approx((8 / 3) ** 0.5)
    assert rating.invalid == 1
    assert rating.to_dict() == {"rating": 8.0, "spread": pytest.approx(1.633, abs=1e-3), "samples": [8, 6, None, 10], "invalid": 1}
    none = written_rating(["?", ""], template)
    assert (none.mean, none.spread, none.invalid) == (None, None, 2)
    with pytest.raises(ValueError, match="not a written-rating"):
        rate(ScriptedJudge({}), [], load_template("pairwise-v1"), 1, sampling=None)  # type: ignore[arg-type]


def test_pairwise_judging_by_written_ratings():
    """Rate both answers alone, compare the means; equal means tie; orders share the ratings."""
    engine = ScriptedJudge({"[Response]\nSeven": ["7", "9"], "[Response]\nEight": ["Poor. 3", "4"], "[Response]\nSame": ["5"]})
    judge = Judge(engine, JudgeConfig(template="rewardbench2-ratings", samples=2, order="both"))
    pairs = [
        Pair("p1", [Message("user", "Name a prime.")], "Seven", "Eight", label="A"),
        Pair("p2", [Message("user", "Name a prime.")], "Eight", "Seven", label="B"),
        Pair("p3", [Message("user", "Name a prime.")], "Same", "Same"),
    ]
    first, second, third = judge.judge(pairs)
    assert (first.verdict, first.ratings, first.consistent, first.correct) == ("A", {"A": 8.0, "B": 3.5}, True, True)
    assert (second.verdict, second.correct) == ("B", True)
    assert third.verdict == "tie"
    assert first.template == "rewardbench2-ratings" and first.order("swapped").raw[:2] == ["Poor. 3", "4"]  # B shown first
    assert engine.calls == [(6, 2)]  # every answer of the chunk in one call, 2 samples each


def test_written_rating_with_no_valid_sample_gives_no_verdict():
    engine = ScriptedJudge({"[Response]\nA1": ["I refuse to rate."], "[Response]\nB1": ["6"]})
    [judgment] = Judge(engine, JudgeConfig(template="rewardbench2-ratings")).judge([Pair("p", [Message("user", "q")], "A1", "B1")])
    assert judgment.verdict is None and judgment.ratings == {"A": None, "B": 6.0}
    assert judgment.orders[0].invalid == 1


def test_written_rating_record_is_plain_data():
    assert WrittenRating((7,), ("7",)).to_dict() == {"rating": 7.0, "spread": 0.0, "samples": [7], "invalid": 0}
