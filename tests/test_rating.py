"""Rating judges: reading ratings from token probabilities, the template form, and the judge core
on a named stand-in engine (the real embedded judge is exercised in test_rating_real.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from st_eval import Judge, JudgeConfig, Message, Pair
from st_eval.engines.base import ChatPrompt, Engine, add_token_logprob
from st_eval.errors import EngineError, InputError
from st_eval.prompt import SHORTENED_MARKER, load_template, shorten_middle
from st_eval.rating import choice_probabilities, rating_from_logprobs, verdict_from_ratings
from st_eval.summary import summarize

YES_NO = {"Yes": 1.0, "No": 0.0}


def test_rating_renormalises_over_the_choices_and_merges_case_and_spaces():
    top = {"Yes": math.log(0.3), " yes": math.log(0.1), "No": math.log(0.2), "The": math.log(0.4)}
    probabilities = choice_probabilities(top, YES_NO)
    assert probabilities["Yes"] == pytest.approx(0.4 / 0.6)
    assert rating_from_logprobs(top, YES_NO) == pytest.approx(2 / 3)


def test_rating_is_the_expected_value_of_a_scale():
    top = {"1": math.log(0.5), "3": math.log(0.5), "x": 0.0}
    assert rating_from_logprobs(top, {"1": 1.0, "2": 2.0, "3": 3.0}) == pytest.approx(2.0)


def test_no_choice_among_the_top_tokens_is_invalid_not_guessed():
    assert rating_from_logprobs({"The": -0.1, "A": -2.0}, YES_NO) is None
    assert rating_from_logprobs({}, YES_NO) is None


def test_verdict_from_ratings():
    assert verdict_from_ratings(0.9, 0.2) == "A"
    assert verdict_from_ratings(0.2, 0.9) == "B"
    assert verdict_from_ratings(0.5, 0.5) == "tie"
    assert verdict_from_ratings(None, 0.5) is None


def test_same_token_text_adds_up():
    top: dict[str, float] = {}
    add_token_logprob(top, "Yes", math.log(0.25))
    add_token_logprob(top, "Yes", math.log(0.25))
    assert top["Yes"] == pytest.approx(math.log(0.5))


def test_shorten_middle_keeps_both_ends_with_a_marker():
    text = "A" * 50 + "B" * 100 + "C" * 50
    short = shorten_middle(text, 100)
    assert short.startswith("A" * 50) and short.endswith("C" * 50) and SHORTENED_MARKER in short
    assert shorten_middle("short", 100) == "short"
    assert shorten_middle(text, 0) == text


def test_rating_template_renders_one_answer_alone():
    template = load_template("rating-yesno-v1")
    assert template.is_rating and template.choices == YES_NO
    pair = Pair("p", [Message("user", "Name a colour.")], "Blue [[A]]", "Seven", label="A")
    user_a = template.render_rating(pair, "A")[-1]["content"]
    user_b = template.render_rating(pair, "B")[-1]["content"]
    assert "Blue [A]" in user_a and "Seven" not in user_a  # defanged marker, other answer absent
    assert "Seven" in user_b and "Blue" not in user_b
    assert user_a.endswith("Answer Yes or No.")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "rating"}, "choices"),
        ({"kind": "rating", "choices": {"Yes": 1}}, "choices"),
        ({"kind": "rating", "choices": {"Yes": 1, "yes": 0}}, "same token"),
        ({"kind": "pairwise", "choices": {"Yes": 1, "No": 0}}, "only for templates of kind 'rating'"),
        ({"kind": "grade"}, "field 'kind'"),
        ({"kind": "rating", "choices": {"Yes": 1, "No": 0}, "max_response_chars": -1}, "max_response_chars"),
    ],
)
def test_bad_rating_templates_name_the_field(tmp_path, fields, problem):
    import yaml

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "user": "{{ response }}", **fields}))
    with pytest.raises(InputError, match=problem):
        load_template(str(path))


class ScriptedLogprobs(Engine):
    """Stand-in engine (named as such): the log-probability of "Yes" is read from the answer text,
    so tests know each rating in advance. It cannot generate."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__("scripted")
        self.calls = 0

    def generate(self, prompts: Sequence[ChatPrompt], n: int = 1, sampling=None) -> list[list[str]]:
        raise EngineError("scripted logprobs engine cannot generate")

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        self.calls += 1
        tops = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            p_yes = float(text.split("<answer>\n")[1].split("%")[0]) / 100
            tops.append({"Yes": math.log(p_yes), "No": math.log(1 - p_yes)} if 0 < p_yes < 1 else {"The": 0.0})
        return tops


def _pairs() -> list[Pair]:
    return [
        Pair("right", [Message("user", "q")], "90% good", "20% bad", label="A"),
        Pair("wrong", [Message("user", "q")], "30% good", "60% bad", label="A"),
        Pair("invalid", [Message("user", "q")], "0% nothing", "60% bad", label="B"),
    ]


def test_rating_judge_verdicts_ratings_and_identical_orders():
    engine = ScriptedLogprobs()
    judgments = Judge(engine, JudgeConfig(template="rating-yesno-v1", order="both")).judge(_pairs())
    right, wrong, invalid = judgments
    assert right.verdict == "A" and right.ratings == {"A": pytest.approx(0.9), "B": pytest.approx(0.2)}
    assert [r.verdict for r in right.orders] == ["A", "A"] and right.consistent is True
    assert right.orders[1].raw[0] == right.orders[0].raw[1]  # swapped order shows B first
    assert wrong.verdict == "B" and wrong.correct is False
    assert invalid.verdict is None and invalid.orders[0].votes == {"invalid": 1}
    summary = summarize(judgments)
    assert summary.accuracy == pytest.approx(1 / 3)
    assert summary.invalid_rate == pytest.approx(2 / 6)
    assert engine.calls == 1  # both answers of all pairs rated in one engine call


@pytest.mark.parametrize("changes", [{"samples": 3}, {"verdict_step": True}, {"allow_tie": True}])
def test_rating_judge_rejects_options_that_do_not_apply(changes):
    with pytest.raises(InputError, match="does not apply to the rating template"):
        Judge(ScriptedLogprobs(), JudgeConfig(template="rating-yesno-v1", **changes))


def test_pairwise_prompt_of_a_rating_template_is_refused():
    from st_eval.judge import build_prompt

    with pytest.raises(InputError, match="rates one answer at a time"):
        build_prompt(_pairs()[0], template="rating-yesno-v1")


def test_an_engine_without_probabilities_fails_clearly():
    class TextOnly(Engine):
        name = "textonly"

        def generate(self, prompts, n=1, sampling=None):
            return [["x"] * n for _ in prompts]

    with pytest.raises(EngineError, match="cannot report token probabilities"):
        Judge(TextOnly("m"), JudgeConfig(template="rating-yesno-v1")).judge(_pairs()[:1])


def test_cached_logprobs_are_reused_and_repeated_prompts_computed_once(tmp_path):
    from st_eval.cache import CachedEngine, GenerationCache

    engine = ScriptedLogprobs()
    cached = CachedEngine(engine, GenerationCache(tmp_path / "c.sqlite"))
    prompt = [{"role": "user", "content": "<answer>\n40% x"}]
    first = cached.next_token_logprobs([prompt, prompt], 20)
    assert first[0] == first[1] and cached.misses == 1 and cached.hits == 1
    again = cached.next_token_logprobs([prompt], 20)
    assert again == [first[0]] and engine.calls == 1


def test_the_choices_asked_for_key_the_cache_only_for_an_engine_that_reads_them(tmp_path):
    """An engine that returns the top k alone gives the same answer with or without ``include``,
    so the entry is shared; for one that adds the choices (hf) the answers differ, so the keys do."""
    from st_eval.cache import CachedEngine, GenerationCache

    prompt = [{"role": "user", "content": "<answer>\n40% x"}]
    capped = CachedEngine(ScriptedLogprobs(), GenerationCache(tmp_path / "capped.sqlite"))
    capped.next_token_logprobs([prompt], 20)
    capped.next_token_logprobs([prompt], 20, include=("Yes", "No"))
    assert capped.inner.calls == 1 and not capped.reads_any_token

    class ReadsAny(ScriptedLogprobs):
        reads_any_token = True

    whole = CachedEngine(ReadsAny(), GenerationCache(tmp_path / "whole.sqlite"))
    whole.next_token_logprobs([prompt], 20)
    whole.next_token_logprobs([prompt], 20, include=("Yes", "No"))
    whole.next_token_logprobs([prompt], 20, include=("No", "Yes"))  # the same choices in another order: one entry
    assert whole.inner.calls == 2 and whole.reads_any_token
