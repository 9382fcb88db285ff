"""inspect-ai plugin: tasks, scorers and the provider's batching, run in-process with a scripted judge.

The scripted judge (an inspect-ai model API registered below) answers like a perfect or a
position-biased judge, so every expected figure can be worked out by hand from the data.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest

inspect_ai = pytest.importorskip("inspect_ai")

from inspect_ai import Task, eval as inspect_eval  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.model import GenerateConfig, ModelAPI, ModelOutput, modelapi  # noqa: E402
from inspect_ai.solver import generate  # noqa: E402

from st_eval.benchmarks.runner import official_order  # noqa: E402
from st_eval.engines.base import Engine, SamplingConfig  # noqa: E402
from st_eval.inspect_plugin.provider import EngineBatcher, sampling_from_config  # noqa: E402
from st_eval.inspect_plugin.scorer import pairwise_judge  # noqa: E402
from st_eval.inspect_plugin.tasks import mtbench_agreement, names, pair_from_metadata, rewardbench  # noqa: E402
from st_eval.records import Message, Pair  # noqa: E402

_BLOCK = re.compile(r"<(answer|conversation)_([ab])>(.*?)</\1_\2>", re.DOTALL)


@modelapi(name="scripted_judge")
class ScriptedJudge(ModelAPI):
    """``scripted_judge/oracle`` picks the side containing GOOD; ``scripted_judge/first`` always says A.

    Prompts that are not judge prompts get the answer ``GOOD answer``.
    """

    def __init__(self, model_name: str, base_url=None, api_key=None, config=GenerateConfig(), **_):
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)

    async def generate(self, input, tools, tool_choice, config):
        blocks = {side: text for _, side, text in _BLOCK.findall(input[-1].text)}
        if not blocks:
            return ModelOutput.from_content(self.model_name, "GOOD answer")
        if self.model_name == "first":
            return ModelOutput.from_content(self.model_name, "A looks fine.\nFinal verdict: [[A]]")
        good = [side for side, text in blocks.items() if "GOOD" in text]
        if len(good) != 1:
            return ModelOutput.from_content(self.model_name, "I cannot decide.")
        return ModelOutput.from_content(self.model_name, f"Reasoning.\nFinal verdict: [[{good[0].upper()}]]")


def _run(task, model: str, tmp_path: Path, **kwargs):
    [log] = inspect_eval(task, model=model, display="none", log_dir=str(tmp_path / "logs"), **kwargs)
    assert log.status == "success", log.error
    return log


def _metrics(log) -> dict[str, float]:
    [score] = log.results.scores
    return {name: m.value for name, m in score.metrics.items()}


SUBSETS = ["alpacaeval-easy", "mt-bench-hard", "llmbar-natural", "donotanswer"]


@pytest.fixture
def rewardbench_file(tmp_path: Path) -> Path:
    """Twelve pairs in the hub schema, three per subset, the chosen answer marked GOOD."""
    path = tmp_path / "rewardbench.jsonl"
    rows = [
        {"prompt": f"question {i}", "chosen": f"GOOD answer {i}", "rejected": f"weak answer {i}", "subset": SUBSETS[i % 4], "id": i}
        for i in range(12)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rewardbench_perfect_judge_scores_one_everywhere(rewardbench_file, tmp_path):
    log = _run(rewardbench(data_files=str(rewardbench_file)), "scripted_judge/oracle", tmp_path)
    metrics = _metrics(log)
    assert metrics["score"] == 1.0
    for name in ["Chat", "Chat Hard", "Safety", *SUBSETS]:
        assert metrics[name] == 1.0
    assert "Reasoning" not in metrics  # no Reasoning subset in the data
    assert metrics["invalid"] == 0.0
    for sample in log.samples:  # each pair shown in its recorded official order
        assert sample.metadata["orders"] == [official_order(str(sample.id), 0)]


def test_rewardbench_position_biased_judge_matches_hand_count(rewardbench_file, tmp_path):
    """A judge that always says A is right exactly on the pairs shown in the given order."""
    log = _run(rewardbench(data_files=str(rewardbench_file), seed=7), "scripted_judge/first", tmp_path)
    metrics = _metrics(log)
    right = {s: [official_order(str(i), 7) == "given" for i in range(12) if SUBSETS[i % 4] == s] for s in SUBSETS}
    expected = {s: sum(v) / len(v) for s, v in right.items()}
    for subset in SUBSETS:
        assert metrics[subset] == pytest.approx(expected[subset])
    # Chat Hard: mt-bench-hard (37) and llmbar-natural (100) weighted by their official counts
    chat_hard = (expected["mt-bench-hard"] * 37 + expected["llmbar-natural"] * 100) / 137
    assert metrics["Chat Hard"] == pytest.approx(chat_hard)
    sections = [expected["alpacaeval-easy"], chat_hard, expected["donotanswer"]]
    assert metrics["score"] == pytest.approx(sum(sections) / 3)


def test_rewardbench_both_orders_reports_position_figures(rewardbench_file, tmp_path):
    task = rewardbench(data_files=str(rewardbench_file), subsets="llmbar-natural,donotanswer", mode="both-orders")
    log = _run(task, "scripted_judge/first", tmp_path)
    metrics = _metrics(log)
    assert len(log.samples) == 6
    assert metrics["given"] == 1.0 and metrics["swapped"] == 0.0
    assert metrics["consistent"] == 0.0 and metrics["invalid"] == 0.0
    assert metrics["llmbar-natural"] == 0.5  # mean of the two orders' official scores


def test_rewardbench_rejects_unknown_mode(rewardbench_file):
    from st_eval.errors import InputError

    with pytest.raises(InputError, match="mode"):
        rewardbench(data_files=str(rewardbench_file), mode="fast")


def _mt_row(qid, model_a, model_b, winner, judge, turn, good_side):
    def conversation(side):
        marker = "GOOD" if side == good_side else "meh"
        return [
            {"role": "user", "content": f"q{qid} turn 1"},
            {"role": "assistant", "content": f"{marker} answer 1 by {side}"},
            {"role": "user", "content": f"q{qid} turn 2"},
            {"role": "assistant", "content": f"{marker} answer 2 by {side}"},
        ]

    return {
        "question_id": qid, "model_a": model_a, "model_b": model_b, "winner": winner, "judge": judge,
        "conversation_a": conversation("a"), "conversation_b": conversation("b"), "turn": turn,
    }


def test_mtbench_agreement_matches_hand_count(tmp_path):
    """The oracle judge prefers the GOOD conversation; expert votes are compared one by one."""
    rows = [
        # q81, turn 1: the judge picks alpaca (GOOD in conversation_a). Votes: alpaca, alpaca, tie.
        _mt_row(81, "alpaca-13b", "gpt-4", "model_a", "expert_1", 1, "a"),
        _mt_row(81, "gpt-4", "alpaca-13b", "model_b", "expert_2", 1, "b"),  # swapped models: same winner
        _mt_row(81, "alpaca-13b", "gpt-4", "tie", "expert_3", 1, "a"),
        _mt_row(81, "alpaca-13b", "gpt-4", "model_b", "author_0", 1, "a"),  # not an expert: ignored
        # q82, turn 1: the judge picks gpt-4. Votes: claude-v1 (disagree).
        _mt_row(82, "claude-v1", "gpt-4", "model_a", "expert_1", 1, "b"),
    ]
    path = tmp_path / "human.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = _run(mtbench_agreement(data_files=str(path)), "scripted_judge/oracle", tmp_path)
    metrics = _metrics(log)
    assert metrics["turn1_with_tie"] == pytest.approx(2 / 4)  # agree on 2 of the 4 expert votes
    assert metrics["turn1_without_tie"] == pytest.approx(2 / 3)  # the tie vote is dropped
    assert metrics["turn1_human_with_tie"] == pytest.approx(1 / 3)  # q81: 3 expert pairs, 1 agrees
    verdicts = {s.id: s.scores["mtbench_verdict"].answer for s in log.samples}
    assert verdicts == {"81-alpaca-13b-gpt-4-turn1": "A", "82-claude-v1-gpt-4-turn1": "B"}


def _qa_task():
    return Task(
        dataset=[
            Sample(id="beats-baseline", input="Say something good.", target="a weak baseline"),
            Sample(id="both-good", input="Say something good.", target="GOOD baseline"),
            Sample(id="from-metadata", input="Say something good.", target="", metadata={"base": "plain"}),
        ],
        solver=generate(),
    )


def test_pairwise_judge_uses_grader_role_and_both_orders(tmp_path):
    task = _qa_task()
    task.dataset = task.dataset[:2]
    task.scorer = [pairwise_judge()]
    log = _run(task, "scripted_judge/solver", tmp_path, model_roles={"grader": "scripted_judge/oracle"})
    scores = {s.id: s.scores["pairwise_judge"] for s in log.samples}
    assert scores["beats-baseline"].value == 1.0 and scores["beats-baseline"].answer == "win"
    assert scores["beats-baseline"].metadata["consistent"] is True
    assert scores["both-good"].answer == "invalid" and scores["both-good"].value == 0.5
    assert {(s.metadata["judge"], s.metadata["judge_role"]) for s in scores.values()} == {("scripted_judge/oracle", "grader")}
    assert _metrics(log)["win_rate"] == pytest.approx(0.75)


def test_pairwise_judge_position_bias_becomes_tie_in_both_orders(tmp_path):
    task = _qa_task()
    task.scorer = [pairwise_judge(baseline="base", order="both")]
    task.dataset = task.dataset[2:]
    log = _run(task, "scripted_judge/solver", tmp_path, model_roles={"grader": "scripted_judge/first"})
    [score] = [s.scores["pairwise_judge"] for s in log.samples]
    assert score.answer == "tie" and score.metadata["consistent"] is False
    task.scorer = [pairwise_judge(baseline="base", order="given")]
    log = _run(task, "scripted_judge/solver", tmp_path, model_roles={"grader": "scripted_judge/first"})
    assert log.samples[0].scores["pairwise_judge"].answer == "win"


def test_names_and_pair_roundtrip():
    assert names("a, b,,c") == ["a", "b", "c"]
    assert names(["x", 2]) == ["x", "2"]
    assert names(None) is None
    pair = Pair("p1", [Message("user", "hi")], "a", "b", label="A", turns_a=["a"], turns_b=["b"], metadata={"k": 1})
    assert pair_from_metadata(json.loads(json.dumps(pair.to_dict()))) == pair


def test_sampling_from_config():
    n, sampling = sampling_from_config(GenerateConfig())
    assert n == 1 and sampling.greedy and sampling.max_new_tokens == 512
    n, sampling = sampling_from_config(GenerateConfig(num_choices=3, temperature=0.7, top_p=0.9, max_tokens=64, stop_seqs=["\n\n"]))
    assert (n, sampling.temperature, sampling.top_p, sampling.max_new_tokens, sampling.stop) == (3, 0.7, 0.9, 64, ("\n\n",))


class _RecordingEngine(Engine):
    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        super().__init__("fake")
        self.calls: list[int] = []
        self.fail = fail

    def generate(self, prompts, n=1, sampling=None):
        time.sleep(0.05)
        self.calls.append(len(prompts))
        if self.fail:
            raise RuntimeError("engine broke")
        return [[f"{p[-1]['content']}#{i}" for i in range(n)] for p in prompts]


def test_batcher_groups_concurrent_requests_into_one_engine_call():
    engine = _RecordingEngine()
    batcher = EngineBatcher(engine, batch_size=8, wait=0.2)
    greedy, sampled = SamplingConfig(), SamplingConfig(temperature=0.7)
    futures = [batcher.submit([{"role": "user", "content": str(i)}], 1, greedy) for i in range(5)]
    futures.append(batcher.submit([{"role": "user", "content": "s"}], 2, sampled))
    results = [f.result(timeout=10) for f in futures]
    assert results[:5] == [[f"{i}#0"] for i in range(5)]
    assert results[5] == ["s#0", "s#1"]
    assert sorted(engine.calls) == [1, 5]  # one call per (n, sampling) group


def test_batcher_respects_batch_size_and_reports_failures():
    engine = _RecordingEngine()
    batcher = EngineBatcher(engine, batch_size=2, wait=0.2)
    futures = [batcher.submit([{"role": "user", "content": str(i)}], 1, SamplingConfig()) for i in range(5)]
    assert [f.result(timeout=10) for f in futures] == [[f"{i}#0"] for i in range(5)]
    assert max(engine.calls) <= 2 and sum(engine.calls) == 5
    broken = EngineBatcher(_RecordingEngine(fail=True), batch_size=4, wait=0.01)
    with pytest.raises(RuntimeError, match="engine broke"):
        broken.submit([{"role": "user", "content": "x"}], 1, SamplingConfig()).result(timeout=10)


@modelapi(name="scripted_rater")
class ScriptedRater(ModelAPI):
    """Answers one-token logprob requests like a rating judge: P(Yes) = 0.9 when the rated
    answer contains GOOD, else 0.2 (scripted, so every figure is known by hand)."""

    def __init__(self, model_name: str, base_url=None, api_key=None, config=GenerateConfig(), **_):
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)

    async def generate(self, input, tools, tool_choice, config):
        text = input[-1].text
        if "<answer>" not in text:
            return ModelOutput.from_content(self.model_name, "GOOD answer")
        assert config.logprobs and config.top_logprobs and config.max_tokens == 1
        return _one_token_output(self.model_name, "Yes", "No", 0.9 if "GOOD" in text.split("<answer>")[1] else 0.2)


def _one_token_output(model: str, first: str, second: str, p_first: float) -> ModelOutput:
    """A one-token answer whose top log-probabilities are ``first`` at ``p_first`` and ``second``
    at the rest, built as the ``st_judge`` provider builds its own."""
    from st_eval.inspect_plugin.provider import _logprobs_choice

    top = {first: math.log(p_first), second: math.log(1 - p_first)}
    return ModelOutput(model=model, choices=[_logprobs_choice(top, model)])


def test_rewardbench_with_a_rating_template(rewardbench_file, tmp_path):
    task = rewardbench(data_files=str(rewardbench_file), subsets="llmbar-natural,donotanswer", mode="both-orders", template="rating-yesno-v1")
    log = _run(task, "scripted_rater/r", tmp_path)
    metrics = _metrics(log)
    assert metrics["consistent"] == 1.0 and metrics["invalid"] == 0.0 and metrics["llmbar-natural"] == 1.0
    assert {s.metadata["judge_template"] for s in log.samples} == {"rating-yesno-v1"}


def test_pairwise_judge_scorer_with_a_rating_template(tmp_path):
    task = _qa_task()
    task.dataset = task.dataset[:1]
    task.scorer = [pairwise_judge(template="rating-yesno-v1")]
    log = _run(task, "scripted_judge/solver", tmp_path, model_roles={"grader": "scripted_rater/r"})
    [score] = [s.scores["pairwise_judge"] for s in log.samples]
    assert score.answer == "win" and score.metadata["consistent"] is True and score.metadata["template"] == "rating-yesno-v1"


@modelapi(name="scripted_chooser")
class ScriptedChooser(ModelAPI):
    """Answers one-token logprob requests like a choice judge biased to the first position:
    P(A) = 0.9 when the answer shown first contains GOOD, else 0.6. Read one order at a time it
    would say A in both; read as the core reads it (both orders' log-odds averaged) it is right."""

    def __init__(self, model_name: str, base_url=None, api_key=None, config=GenerateConfig(), **_):
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)

    async def generate(self, input, tools, tool_choice, config):
        text = input[-1].text
        assert config.logprobs and config.top_logprobs and config.max_tokens == 1
        return _one_token_output(self.model_name, "A", "B", 0.9 if "GOOD" in text.split("<answer_a>")[1].split("</answer_a>")[0] else 0.6)


def test_rewardbench_with_a_choice_template_cancels_the_position_preference(rewardbench_file, tmp_path):
    task = rewardbench(data_files=str(rewardbench_file), subsets="llmbar-natural,donotanswer", mode="both-orders", template="choice-ab-v1")
    log = _run(task, "scripted_chooser/c", tmp_path)
    metrics = _metrics(log)
    assert metrics["consistent"] == 1.0 and metrics["invalid"] == 0.0 and metrics["llmbar-natural"] == 1.0


def test_provider_answers_logprob_requests_from_the_engine():
    from st_eval.inspect_plugin.provider import _logprobs_choice

    choice = _logprobs_choice({"No": -1.5, "Yes": -0.3}, "m")
    assert choice.message.text == "Yes"
    assert [t.token for t in choice.logprobs.content[0].top_logprobs] == ["Yes", "No"]
