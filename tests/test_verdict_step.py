"""The verdict step: samples without a verdict are finished from "Final verdict: [[" by the judge."""

from __future__ import annotations

import pytest

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig, continues
from st_eval.judge import Judge, JudgeConfig, build_prompt
from st_eval.pair_files import load_pairs
from st_eval.records import Judgment, Message, Pair
from st_eval.summary import summarize
from st_eval.verdict import parse_verdict
from st_eval.verdict_step import VERDICT_CUE, complete_verdicts, continuation_prompt

PAIR = Pair(id="p", conversation=[Message("user", "2+2?")], response_a="4", response_b="5", label="A")
SAMPLING = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=32, seed=3)


class ScriptedJudge(Engine):
    """Stands in for a judge model so the step's bookkeeping can be checked exactly: fresh
    prompts get the scripted reasoning texts; continued prompts get ``letter``."""

    name = "scripted"

    def __init__(self, texts: list[str], letter: str = "B") -> None:
        super().__init__("scripted")
        self.texts, self.letter = texts, letter
        self.calls: list[tuple[list[ChatPrompt], int, SamplingConfig]] = []

    def generate(self, prompts, n=1, sampling=None):
        self.calls.append((list(prompts), n, sampling))
        return [[self.letter] * n if continues(p) else list(self.texts[:n]) for p in prompts]


def test_continuation_replaces_a_malformed_verdict_line_with_the_cue():
    prompt = build_prompt(PAIR, "given", "pairwise-short-v1")
    continued = continuation_prompt(prompt, "A is right, B is wrong.\nFinal verdict: [A]")
    assert continued[:-1] == prompt
    assert continued[-1] == {"role": "assistant", "content": f"A is right, B is wrong.\n\n{VERDICT_CUE}"}
    assert continuation_prompt(prompt, "")[-1]["content"] == VERDICT_CUE


def test_only_samples_without_a_verdict_are_continued_with_a_two_token_letter_budget():
    engine = ScriptedJudge([], letter="B")
    prompt = build_prompt(PAIR, "given")
    outputs = [["Sound reasoning. Final verdict: [[A]]", "B looks wrong", "Final verdict: [A]"]]
    texts, forced = complete_verdicts(engine, [prompt], outputs, SAMPLING)
    assert forced == [[False, True, True]]
    assert texts[0][0] == outputs[0][0]
    assert texts[0][1] == f"B looks wrong\n\n{VERDICT_CUE}B]]"
    assert [parse_verdict(t).verdict for t in texts[0]] == ["A", "B", "B"]
    (continued, n, letter_sampling), = engine.calls
    assert len(continued) == 2 and n == 1
    assert letter_sampling.max_new_tokens == 2 and letter_sampling.stop == ("]]",)
    assert (letter_sampling.temperature, letter_sampling.top_p) == (SAMPLING.temperature, SAMPLING.top_p)


def test_a_letter_that_is_not_a_verdict_stays_invalid():
    texts, forced = complete_verdicts(ScriptedJudge([], letter="maybe"), [build_prompt(PAIR)], [["hmm"]], SAMPLING)
    assert forced == [[True]] and parse_verdict(texts[0][0]).verdict is None


def test_judge_records_forced_samples_and_the_summary_reports_their_rate():
    engine = ScriptedJudge(["Four is correct.", "Final verdict: [[B]]"], letter="A")
    config = JudgeConfig(samples=2, order="both", sampling=SAMPLING, verdict_step=True)
    judgment = Judge(engine, config).judge([PAIR])[0]
    assert [r.forced for r in judgment.orders] == [1, 1]
    assert judgment.sampling["verdict_step"] is True
    summary = summarize([judgment])
    assert summary.invalid_rate == 0.0 and summary.forced_rate == 0.5
    # records written before the step existed still load
    data = judgment.to_dict()
    for order in data["orders"]:
        del order["forced"]
    assert [r.forced for r in Judgment.from_dict(data).orders] == [0, 0]


def test_off_by_default_nothing_is_continued():
    engine = ScriptedJudge(["no verdict here"])
    judgment = Judge(engine, JudgeConfig()).judge([PAIR])[0]
    assert judgment.verdict is None and len(engine.calls) == 1
    assert summarize([judgment]).forced_rate == 0.0


@pytest.mark.slow
def test_embedded_judge_continues_its_own_text_and_concludes(hf_engine, tmp_path):
    continued = continuation_prompt(build_prompt(PAIR, "given", "pairwise-short-v1"), "Answer A is right.")
    rendered = hf_engine.render(continued)
    assert rendered.endswith(f"Answer A is right.\n\n{VERDICT_CUE}")  # no new assistant turn opened

    pairs = load_pairs("examples/pairs.jsonl")[:3]
    short = SamplingConfig(max_new_tokens=24)
    plain = Judge(hf_engine, JudgeConfig(template="pairwise-short-v1", order="both", sampling=short)).judge(pairs)
    stepped = Judge(
        hf_engine, JudgeConfig(template="pairwise-short-v1", order="both", sampling=short, verdict_step=True)
    ).judge(pairs)
    before, after = summarize(plain), summarize(stepped)
    assert after.invalid_rate < before.invalid_rate
    assert after.forced_rate == pytest.approx(before.invalid_rate)  # exactly the invalid samples were finished
    for p, s in zip(plain, stepped):
        for rp, rs in zip(p.orders, s.orders):
            if rs.forced:  # the judge's own reasoning is kept, then the cue and the letter it wrote
                assert rs.raw[0].startswith(rp.raw[0].split("\n")[0].rstrip()[:10])
                assert VERDICT_CUE in rs.raw[0]
            else:
                assert rs.raw == rp.raw


def test_a_forced_verdict_says_it_was_forced_instead_of_a_confidence(monkeypatch, capsys):
    """The verdict step wrote the letter: the one-pair output must not call that ``confidence 1.00``."""
    from stub_judges import NO_VERDICT, ScriptedEngine, install, run_main

    install(monkeypatch, ScriptedEngine(NO_VERDICT, continuation="A"))
    args = ["judge", "--instruction", "2+2?", "--response-a", "4", "--response-b", "5", "--template", "pairwise-v1"]
    code, out, err = run_main(monkeypatch, capsys, *args, "--verdict-step")
    assert code == 0
    assert "verdict: A" in out and "forced: the verdict step wrote the letter" in out and "no confidence" in out
    assert "confidence 1.00" not in out
    assert "forced by the verdict step (share of samples) │ 1.000" in err
    install(monkeypatch, ScriptedEngine("Final verdict: [[A]]"))
    code, out, _ = run_main(monkeypatch, capsys, *args)
    assert code == 0 and "(confidence 1.00)" in out and "forced" not in out  # the judge's own verdict keeps its margin
