"""Pairs and requests beyond the judge's context window: shortened (marked, counted) or skipped,
never a hang; ``st-eval serve`` answers 400 beyond the window and stops within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from st_eval.context_fit import _cut, fit_pairs
from st_eval.engines.base import Engine, SamplingConfig
from st_eval.errors import EngineError, InputError
from st_eval.judge import Judge, JudgeConfig
from st_eval.prompt import SHORTENED_MARKER
from st_eval.records import Message, Pair
from st_eval.summary import summarize


class WordCountingJudge(Engine):
    """Stand-in (not a model): a context window of ``window`` "tokens", one per word; answers
    [[A]] and records the longest prompt it was sent."""

    name = "words"

    def __init__(self, window: int) -> None:
        super().__init__("word-counter")
        self.window = window
        self.longest = 0

    @property
    def context_window(self) -> int:
        return self.window

    def prompt_tokens(self, prompts):
        return [sum(len(m["content"].split()) for m in p) for p in prompts]

    def generate(self, prompts, n=1, sampling=None):
        self.check_fits(self.prompt_tokens(prompts), (sampling or SamplingConfig()).max_new_tokens)
        self.longest = max([self.longest, *self.prompt_tokens(prompts)])
        return [["Final verdict: [[A]]"] * n for _ in prompts]


def pair(pair_id: str, response_a: str, instruction: str = "Summarise the text.") -> Pair:
    return Pair(pair_id, [Message("user", instruction)], response_a, "A short summary.", label="A")


LONG = " ".join(f"w{i}" for i in range(20_000))


def test_shorten_cuts_answers_from_the_middle_to_the_longest_length_that_fits(caplog):
    engine = WordCountingJudge(window=2_000)
    judge = Judge(engine, JudgeConfig(order="both", sampling=SamplingConfig(max_new_tokens=100)))
    [fitted] = fit_pairs([pair("p", LONG)], judge._all_prompts, engine, 100)
    assert fitted.shortened and fitted.skipped is None
    assert SHORTENED_MARKER in fitted.pair.response_a and fitted.pair.response_a.startswith("w0 w1") and fitted.pair.response_a.endswith("w19999")
    assert max(engine.prompt_tokens(judge._all_prompts(fitted.pair))) <= 1_900
    kept = len(fitted.pair.response_a) - len(SHORTENED_MARKER)
    longer = _cut(pair("p", LONG), kept + 8)  # the longest cut: a few more characters would not fit
    assert max(engine.prompt_tokens(judge._all_prompts(longer))) > 1_900
    judgments = judge.judge([pair("p", LONG), pair("q", "7")])
    assert [j.shortened for j in judgments] == [True, False]
    assert [j.verdict for j in judgments] == ["tie", "tie"]  # the stand-in always says A: a flip in both orders
    assert engine.longest <= 1_900 and summarize(judgments).shortened_rate == 0.5
    assert "1 of 2 pairs do not fit the judge's context window of 2000 tokens with 100 to generate: 1 shortened, 0 skipped" in caplog.text


def test_skip_policy_and_requests_too_long_to_shorten_give_invalid_judgments_that_say_why():
    engine = WordCountingJudge(window=2_000)
    skipping = Judge(engine, JudgeConfig(too_long="skip", sampling=SamplingConfig(max_new_tokens=100)))
    long, short = skipping.judge([pair("p", LONG), pair("q", "7")])
    assert long.verdict is None and "not judged: prompt of" in long.rationale and "--too-long skip" in long.rationale
    assert short.verdict == "A" and summarize([long, short]).invalid_rate == 0.5
    shortening = Judge(engine, JudgeConfig(sampling=SamplingConfig(max_new_tokens=100)))
    [huge_request] = shortening.judge([pair("r", "7", instruction=LONG)])
    assert huge_request.verdict is None and "even with answers cut to 64 characters" in huge_request.rationale
    with pytest.raises(InputError, match="--too-long must be one of shorten, skip"):
        JudgeConfig(too_long="truncate")


def test_an_engine_that_knows_its_window_but_cannot_count_is_fitted_by_byte_size():
    class ServedJudge(WordCountingJudge):
        def prompt_tokens(self, prompts):
            return None  # like a server without a local tokenizer

    engine = ServedJudge(window=4_000)
    judge = Judge(engine, JudgeConfig(sampling=SamplingConfig(max_new_tokens=100)))
    [fitted] = fit_pairs([pair("p", LONG)], judge._all_prompts, engine, 100)
    assert fitted.shortened
    assert all(sum(len(m["content"].encode()) for m in p) + 512 <= 3_900 for p in judge._all_prompts(fitted.pair))


def test_an_engine_refuses_a_prompt_beyond_its_window_instead_of_working_on_it():
    engine = WordCountingJudge(window=50)
    with pytest.raises(EngineError, match=r"prompt 1 has 60 tokens; with 10 to generate it exceeds the judge's context window of 50"):
        engine.generate([[{"role": "user", "content": "x " * 60}]], sampling=SamplingConfig(max_new_tokens=10))


@pytest.mark.slow
def test_the_embedded_judge_shortens_a_200_kb_answer_and_finishes(tmp_path, embedded_model):
    """The real hf engine (window capped at 1,024 tokens so the CPU reads it in seconds)."""
    from st_eval.engines import make_engine

    engine = make_engine("hf", embedded_model, max_context=1024)
    assert engine.context_window == 1024
    huge = "The quick brown fox jumps over the lazy dog. " * 4_500  # ~200 KB
    with pytest.raises(EngineError, match="exceeds the judge's context window of 1024"):
        engine.generate([[{"role": "user", "content": huge}]], sampling=SamplingConfig(max_new_tokens=8))
    started = time.monotonic()
    [judgment] = Judge(engine, JudgeConfig(sampling=SamplingConfig(max_new_tokens=16))).judge([pair("p", huge)])
    assert judgment.shortened and time.monotonic() - started < 120
    assert engine.prompt_tokens([[{"role": "user", "content": huge}]])[0] > 40_000


def _post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as reply:
        return reply.code, json.loads(reply.read())


@pytest.mark.slow
def test_serve_answers_400_beyond_the_window_keeps_serving_and_stops_on_sigterm(tmp_path, embedded_model):
    log = tmp_path / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "st_eval.cli", "serve", "--port", "0", "--model", embedded_model, "--engine-arg", "max_context=2048", "--log-level", "warning"],
            stdout=output, stderr=subprocess.STDOUT, text=True, env=env,
        )
    try:
        deadline = time.monotonic() + 300
        while "st-eval serve:" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = next(x for x in log.read_text().splitlines() if x.startswith("st-eval serve:")).rsplit(" on ", 1)[1].strip()
        normal = {"messages": [{"role": "user", "content": "Name a prime."}], "max_tokens": 4, "temperature": 0}
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(_post(url, normal)[0])) for _ in range(16)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        status, body = _post(url, {"messages": [{"role": "user", "content": "x" * 2_000_000}], "max_tokens": 16})
        assert status == 400 and "maximum context length is 2048 tokens" in body["error"]["message"]
        assert time.monotonic() - started < 60
        for thread in threads:
            thread.join(timeout=120)
        assert results == [200] * 16
        # a generation in progress does not keep the server from stopping
        busy = threading.Thread(target=_post, args=(url, {"messages": [{"role": "user", "content": "Tell a long story. " * 80}], "max_tokens": 2000}), daemon=True)
        busy.start()
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        process.wait(timeout=30)
        assert time.monotonic() - stopped < 15
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
