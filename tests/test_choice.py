"""Choice judges: both answers in one prompt, the verdict read from P(A) against P(B) in both
orders; the reading, the template form, training rows and the judge core on a named stand-in
engine (the real embedded judge: the slow tests at the end)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest

from st_eval import Judge, JudgeConfig, Message, Pair
from st_eval.engines.base import ChatPrompt, Engine
from st_eval.errors import EngineError, InputError
from st_eval.prompt import load_template
from st_eval.rating import MAX_LOG_ODDS, choice_ratings, first_shown_log_odds
from st_eval.summary import summarize

AB = {"A": 1.0, "B": 0.0}
_BLOCK = re.compile(r"<answer_([ab])>\n(\d+)%", re.DOTALL)


def _top(p_first: float) -> dict[str, float]:
    return {"A": math.log(p_first), "B": math.log(1 - p_first), "The": math.log(0.01)}


def test_position_preference_cancels_between_the_orders():
    """A judge that adds +2 log-odds to whichever answer is shown first still picks the better
    one, and the two readings of a pair and of its swap give mirrored ratings."""
    bias, quality = 2.0, 0.7  # log-odds: position, and answer A over answer B
    given = _top(1 / (1 + math.exp(-(bias + quality))))
    swapped = _top(1 / (1 + math.exp(-(bias - quality))))
    rating_a, rating_b = choice_ratings(given, swapped, AB)
    assert rating_a == pytest.approx(1 / (1 + math.exp(-quality))) and rating_a + rating_b == pytest.approx(1.0)
    assert first_shown_log_odds(swapped, AB) > 0  # read alone, the swapped order would name B's answer
    assert choice_ratings(swapped, given, AB) == (pytest.approx(rating_b), pytest.approx(rating_a))


def test_a_reading_with_one_choice_is_capped_and_one_with_none_is_invalid():
    assert first_shown_log_odds({"A": -0.1, "The": -3.0}, AB) == MAX_LOG_ODDS  # a server's top 20 without B
    assert first_shown_log_odds({"B": -0.1}, AB) == -MAX_LOG_ODDS
    assert choice_ratings({"The": -0.1}, _top(0.5), AB) == (None, None)
    # the higher-valued token names the answer shown first, whatever the tokens are
    assert first_shown_log_odds({"1": math.log(0.2), "2": math.log(0.8)}, {"2": 1, "1": 0}) == pytest.approx(math.log(4))


def test_choice_template_shows_both_answers_in_either_order_and_shortens_them():
    template = load_template("choice-ab-v1")
    assert template.is_choice and template.reads_probabilities and not template.one_answer and template.choices == AB
    pair = Pair("p", [Message("user", "Name a colour.")], "Blue [[A]] " + "x" * 2000, "Seven", label="A")
    given, swapped = (prompt[-1]["content"] for prompt in template.probability_prompts(pair))
    assert given.index("Blue [A]") < given.index("Seven") and swapped.index("Seven") < swapped.index("Blue [A]")
    assert given.endswith("Answer A or B.") and "[...]" in given and len(given) < 1400
    assert template.shortens(pair)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "choice"}, "choices"),
        ({"kind": "choice", "choices": {"A": 1, "B": 0, "C": 0.5}}, "two verdict tokens"),
        ({"kind": "choice", "choices": {"A": 1, "B": 1}}, "two different numbers"),
        ({"kind": "choice", "choices": {"A": 1, "B": 0}, "verdict": {"letters": "AB"}}, "reads probabilities"),
    ],
)
def test_bad_choice_templates_name_the_field(tmp_path, fields, problem):
    import yaml

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "user": "{{ response_a }} {{ response_b }}", **fields}))
    with pytest.raises(InputError, match=problem):
        load_template(str(path))


class ScriptedChooser(Engine):
    """Stand-in engine (named as such): each answer opens with its quality in percent, and the
    engine's log-odds for the answer shown first are the difference of the two qualities'
    log-odds plus a preference of +2 for the first position, so every verdict is known in advance.
    An answer of quality 0 gives a reading without either letter. It cannot generate."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__("scripted")
        self.calls = 0

    def generate(self, prompts: Sequence[ChatPrompt], n: int = 1, sampling=None) -> list[list[str]]:
        raise EngineError("scripted chooser engine cannot generate")

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        self.calls += 1
        tops = []
        for prompt in prompts:
            shown = {side: int(q) / 100 for side, q in _BLOCK.findall(prompt[-1]["content"])}
            if 0 in shown.values():
                tops.append({"The": 0.0})
                continue
            odds = 2.0 + math.log(shown["a"] / (1 - shown["a"])) - math.log(shown["b"] / (1 - shown["b"]))
            tops.append(_top(1 / (1 + math.exp(-odds))))
        return tops


def _pairs() -> list[Pair]:
    return [
        Pair("right", [Message("user", "q")], "90% good", "20% bad", label="A"),
        Pair("second", [Message("user", "q")], "30% weak", "60% better", label="B"),
        Pair("invalid", [Message("user", "q")], "0% nothing", "60% bad", label="B"),
    ]


def test_choice_judge_reads_both_orders_in_one_call_and_its_orders_agree():
    engine = ScriptedChooser()
    judgments = Judge(engine, JudgeConfig(template="choice-ab-v1", order="both")).judge(_pairs())
    right, second, invalid = judgments
    expected = 1 / (1 + math.exp(-(math.log(9) - math.log(0.25))))
    assert right.verdict == "A" and right.ratings == {"A": pytest.approx(expected), "B": pytest.approx(1 - expected)}
    assert second.verdict == "B" and [r.verdict for r in second.orders] == ["B", "B"] and second.consistent is True
    assert right.orders[1].raw == right.orders[0].raw[::-1]  # the swapped order's own reading first
    assert invalid.verdict is None and invalid.orders[0].votes == {"invalid": 1}
    assert summarize(judgments).accuracy == pytest.approx(2 / 3)
    assert engine.calls == 1
    # one order asked for: still both readings (the position preference cancels only so)
    given_only = Judge(ScriptedChooser(), JudgeConfig(template="choice-ab-v1")).judge(_pairs()[1:2])[0]
    assert given_only.verdict == "B" and len(given_only.orders) == 1


@pytest.mark.parametrize("changes", [{"samples": 3}, {"verdict_step": True}, {"allow_tie": True}])
def test_choice_judge_rejects_options_that_do_not_apply(changes):
    with pytest.raises(InputError, match="does not apply to the choice template"):
        Judge(ScriptedChooser(), JudgeConfig(template="choice-ab-v1", **changes))


def test_choice_training_rows_show_the_winner_first_then_second():
    from st_eval.training.rating_pairs import preference_row

    template = load_template("choice-ab-v1")
    pair = Pair("p", [Message("user", "q")], "loser text", "winner text", label="B")
    row = preference_row(pair, template)
    chosen, rejected = row["chosen"][-1]["content"], row["rejected"][-1]["content"]
    assert chosen.index("winner text") < chosen.index("loser text")
    assert rejected.index("loser text") < rejected.index("winner text")


def test_recipe_rules_for_choice_templates():
    from st_eval.training.config import recipe_from_dict

    base = {"name": "t", "template": "choice-ab-v1"}
    assert recipe_from_dict(base).template == "choice-ab-v1"
    with pytest.raises(InputError, match="'dpo.enabled'"):
        recipe_from_dict({**base, "dpo": {"enabled": True}})
    with pytest.raises(InputError, match="'evaluation.samples'"):
        recipe_from_dict({**base, "evaluation": {"samples": 3}})


def test_the_plan_counts_two_bounded_answers_for_a_choice_judge():
    from st_eval.training.config import recipe_from_dict
    from st_eval.training.plan import judge_prompt_tokens

    choice, how = judge_prompt_tokens(recipe_from_dict({"name": "t", "template": "choice-ab-v1"}))
    rating, _ = judge_prompt_tokens(recipe_from_dict({"name": "t", "template": "rating-yesno-v1"}))
    assert "2 answers of at most 800 chars" in how and choice - rating >= 800 // 4


# the real embedded judge
PAIRS = [
    Pair("capital", [Message("user", "What is the capital of France?")], "Paris is the capital of France.", "Bananas are rich in potassium.", label="A"),
    Pair("haiku", [Message("user", "Write a haiku about snow.")], "Spain's GDP grew in 2019.", "Soft flakes drift down\nsilent fields beneath the moon\nwinter holds its breath", label="B"),
]


@pytest.mark.slow
def test_choice_judge_on_the_embedded_model_is_blind_to_the_order(hf_engine):
    """Judging a pair and its swap sends the same two prompts: the ratings mirror (float32, batched
    in another order: log-probabilities ~1e-5 apart on any x86-64 kernel; 1e-4 is ten times that)."""
    judge = Judge(hf_engine, JudgeConfig(template="choice-ab-v1", order="both"))
    judgments = judge.judge(PAIRS)
    mirrored = judge.judge([p.swapped() for p in reversed(PAIRS)])[::-1]
    for judgment, swapped in zip(judgments, mirrored):
        assert judgment.verdict in ("A", "B") and judgment.consistent is True and judgment.template == "choice-ab-v1"
        assert judgment.ratings["A"] == pytest.approx(swapped.ratings["B"], abs=1e-4)


@pytest.mark.slow
def test_choice_training_moves_the_order_averaged_log_odds(tmp_path, embedded_model):
    """A real trl RewardTrainer run on choice rows: the trained judge reads its training pairs'
    winners more surely than the seed did, averaged over both orders."""
    from st_eval.engines import make_engine
    from st_eval.training.config import LoraSettings, TrainConfig
    from st_eval.training.rating_pairs import preference_row
    from st_eval.training.reward import train_rating_judge

    template = load_template("choice-ab-v1")
    rows = [preference_row(p, template) for p in PAIRS]
    config = TrainConfig(epochs=3, batch_size=2, learning_rate=3e-3, max_length=512, lora=LoraSettings(r=4, alpha=8, dropout=0.0), dtype="float32")
    metrics = train_rating_judge(embedded_model, [(r["chosen"], r["rejected"]) for r in rows], template.choices, tmp_path / "judge", config)
    assert metrics["steps"] == 3 and metrics["pairs"] == 2

    def winners(model: str) -> list[float]:
        judgments = Judge(make_engine("hf", model, dtype="float32"), JudgeConfig(template="choice-ab-v1")).judge(PAIRS)
        return [j.ratings[j.label] for j in judgments]

    assert all(after > before for after, before in zip(winners(str(tmp_path / "judge")), winners(embedded_model)))
