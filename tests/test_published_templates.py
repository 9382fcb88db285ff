"""Built-in templates that reproduce published prompts render them character for character, and
the one parser reads their outputs by the rule each template declares."""

from __future__ import annotations

import random
import re

import pytest
import upstream_prompts as up

from st_eval.errors import InputError
from st_eval.judge import Judge, JudgeConfig, build_prompt, order_result
from st_eval.prompt import load_template
from st_eval.records import Message, Pair

QUESTION = "What is 2+2?\nShow your work."
ANSWER_A = "  2+2 = 4, because two and two make four.\n"  # leading/trailing spaces kept, as upstream
ANSWER_B = "It is 5."


def single_turn() -> Pair:
    return Pair("p1", [Message("user", QUESTION)], ANSWER_A, ANSWER_B, label="A")


def test_rewardbench_pair_v2_is_the_released_self_taught_evaluator_prompt():
    system, user = load_template("rewardbench-pair-v2").render(single_turn())
    assert system == {"role": "system", "content": up.V1_PAIR_SYSTEM}
    assert user == {"role": "user", "content": up.V1_PAIR_USER.format(question=QUESTION, answer_a=ANSWER_A, answer_b=ANSWER_B)}
    # swapping the order swaps the answers and nothing else
    swapped = build_prompt(single_turn(), "swapped", "rewardbench-pair-v2")
    assert swapped[1]["content"] == up.V1_PAIR_USER.format(question=QUESTION, answer_a=ANSWER_B, answer_b=ANSWER_A)


def test_rewardbench_pair_v2_multi_turn_uses_upstreams_multi_turn_prompt():
    pair = Pair(
        "p2", [Message("user", "Name a fruit."), Message("assistant", "Apple."), Message("user", "And a vegetable?")],
        "Carrot.", "Car.", turns_a=["Apple.", "Carrot."], turns_b=["Apricot.", "Car."],
    )
    system, user = load_template("rewardbench-pair-v2").render(pair)
    assert system["content"] == up.V1_PAIR_MULTI_SYSTEM
    assert user["content"] == up.V1_PAIR_MULTI_USER.format(
        question_1="Name a fruit.", question_2="And a vegetable?", answer_a_1="Apple.", answer_a_2="Carrot.",
        answer_b_1="Apricot.", answer_b_2="Car.",
    )


def test_rewardbench2_4way_renders_upstreams_prompt_in_shown_order():
    answers = [ANSWER_A, "w1", "w2\n\nwith a blank line", "w3"]
    system, user = load_template("rewardbench2-4way").render_kway([Message("user", QUESTION)], answers)
    assert system["content"] == up.V2_FOUR_WAY_SYSTEM
    assert user["content"] == up.V2_FOUR_WAY_USER.format(question=QUESTION, answer_a=answers[0], answer_b=answers[1], answer_c=answers[2], answer_d=answers[3])
    with pytest.raises(InputError, match="shows 4 answers"):
        load_template("rewardbench2-4way").render_kway([Message("user", QUESTION)], answers[:3])


@pytest.mark.parametrize(("name", "reference"), [("rewardbench2-ratings", up.V2_RATINGS), ("rewardbench2-ratings-ties", up.V2_RATINGS_TIES)])
def test_rewardbench2_ratings_prompts_are_sent_verbatim_leading_newline_included(name, reference):
    messages = load_template(name).render_rating(single_turn(), "B")
    assert messages == [{"role": "user", "content": reference.format(prompt=QUESTION, completion=ANSWER_B)}]
    assert messages[0]["content"].startswith("\n### Task Description")


def test_templates_declare_their_verdict_forms():
    forms = {name: load_template(name).verdict for name in ("pairwise-v1", "rewardbench-pair-v2", "rewardbench2-4way", "rewardbench2-ratings")}
    assert (forms["pairwise-v1"].letters, forms["pairwise-v1"].rule) == ("AB", "last-line")
    assert (forms["rewardbench-pair-v2"].letters, forms["rewardbench-pair-v2"].rule) == ("AB", "first-listed")
    assert (forms["rewardbench2-4way"].letters, forms["rewardbench2-4way"].rule) == ("ABCD", "first-listed")
    assert forms["rewardbench2-ratings"].scale == (1, 10)


def test_the_same_output_reads_by_each_templates_rule():
    text = "B looks tempting ([[B]]) but on balance: [[A]]"
    # st-eval's rule: the last line decides, and a line naming two letters is ambiguous
    assert order_result("given", [text], template="pairwise-v1").verdict is None
    # RewardBench's rule: the first of [[A]], [[B]] found anywhere
    assert order_result("given", [text], template="rewardbench-pair-v2").verdict == "A"
    assert order_result("swapped", ["[[B]] is best"], template="rewardbench-pair-v2").verdict == "A"  # unswapped
    assert load_template("rewardbench2-4way").verdict.parse("not [[D]], I choose [[C]]").verdict == "C"
    assert load_template("rewardbench2-4way").verdict.parse("Best: D").valid is False


def test_rating_parse_equals_upstreams_rule_on_random_endings():
    rule = re.compile(up.V2_RATING_PATTERN)
    form = load_template("rewardbench2-ratings").verdict
    rng = random.Random(7)
    for _ in range(20000):
        text = "".join(rng.choice("0123456789 .\n-x/*") for _ in range(rng.randint(0, 7)))
        match = rule.search(text.strip())
        assert form.parse_rating(text).rating == (int(match.group(1)) if match else None), text


@pytest.mark.parametrize(
    ("text", "rating"),
    [("Clear and correct.\n\n9", 9), ("Rating: 10  \n", 10), ("Score: 8.", None), ("**8**", None), ("0", None), ("11", None), ("007", None), ("8/10", 10), ("", None), (None, None)],
)
def test_rating_parse_by_hand(text, rating):
    assert load_template("rewardbench2-ratings").verdict.parse_rating(text).rating == rating


def test_published_templates_are_refused_where_they_do_not_fit():
    with pytest.raises(InputError, match="k-way template"):
        Judge(engine=None, config=JudgeConfig(template="rewardbench2-4way"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="shows 4 answers at once"):
        build_prompt(single_turn(), "given", "rewardbench2-4way")
    with pytest.raises(InputError, match="rates one answer at a time"):
        build_prompt(single_turn(), "given", "rewardbench2-ratings")
    with pytest.raises(InputError, match="allow_tie does not apply"):
        Judge(engine=None, config=JudgeConfig(template="rewardbench2-ratings", allow_tie=True))  # type: ignore[arg-type]


def test_bench_rewardbench_with_the_released_judges_prompt(tmp_path, monkeypatch):
    """``st-eval bench rewardbench --template rewardbench-pair-v2``: upstream's prompt, and an
    output naming both letters reads as upstream reads it (first-listed), not as invalid."""
    import json

    from typer.testing import CliRunner

    from st_eval import cli_options
    from st_eval.cli import app
    from st_eval.engines.base import Engine

    class Undecided(Engine):
        """Stand-in judge (no model): names both letters on one line, B first, in every output."""

        name = "stand-in"
        prompts: list = []

        def generate(self, prompts, n=1, sampling=None):
            self.prompts.extend(prompts)
            return [["[[B]] looks good, but [[A]] is better."] * n for _ in prompts]

    engine = Undecided("stand-in")
    monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: engine)
    data = tmp_path / "rb.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "good", "rejected": "bad", "subset": "llmbar-natural", "id": i}) + "\n" for i in range(6)))
    for template, expected_invalid in (("rewardbench-pair-v2", 0.0), ("pairwise-v1", 1.0)):
        report = tmp_path / f"{template}.json"
        result = CliRunner().invoke(app, ["bench", "rewardbench", "--data-files", str(data), "--template", template, "--report-json", str(report)])
        assert result.exit_code == 0, result.output
        figures = json.loads(report.read_text())
        assert figures["template"] == template and figures["invalid_rate"] == expected_invalid
    assert engine.prompts[0][0]["content"] == up.V1_PAIR_SYSTEM
