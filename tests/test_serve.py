"""``st-eval serve`` request parsing and batching (fast; the real server is in test_openai_engine)."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from st_eval.engines.base import Engine, SamplingConfig
from st_eval.errors import InputError
from st_eval.serve import Batcher, ServeConfig, bind, parse_chat_request

CONFIG = ServeConfig(served_name="judge", max_tokens=64)
USER = [{"role": "user", "content": "hi"}]


def test_request_fields_map_to_sampling():
    prompt, n, sampling = parse_chat_request(
        {"messages": USER, "n": 3, "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "seed": 4, "stop": "\n"}, CONFIG
    )
    assert prompt == USER and n == 3
    assert sampling == SamplingConfig(temperature=0.5, top_p=0.9, max_new_tokens=7, seed=4, stop=("\n",))


def test_openai_defaults_and_newer_field_names():
    messages = [{"role": "developer", "content": "be fair"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    prompt, n, sampling = parse_chat_request({"messages": messages, "max_completion_tokens": 5}, CONFIG)
    assert prompt == [{"role": "system", "content": "be fair"}, {"role": "user", "content": "hi"}]
    assert n == 1 and sampling.temperature == 1.0 and sampling.max_new_tokens == 5
    assert parse_chat_request({"messages": USER}, CONFIG)[2].max_new_tokens == 64


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "'messages'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "'messages[0]'"),
        ({"messages": USER, "n": 0}, "'n'"),
        ({"messages": USER, "stop": [1]}, "'stop'"),
        ({"messages": USER, "stream": True}, "'stream'"),
        ({"messages": USER, "temperature": -1}, "temperature"),
        ({"messages": USER, "max_tokens": 0}, "'max_tokens'"),
        ([], "JSON object"),
    ],
)
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        parse_chat_request(body, CONFIG)


class Recorder(Engine):
    """Returns each prompt's text n times and records the batches it was called with."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__("recorder")
        self.calls: list[tuple[int, int, SamplingConfig]] = []
        self.release = threading.Event()

    def generate(self, prompts, n=1, sampling=None):
        self.release.wait(5)
        self.calls.append((len(prompts), n, sampling))
        return [[p[-1]["content"]] * n for p in prompts]


def test_concurrent_requests_are_batched_by_settings_and_answered_in_order():
    engine = Recorder()
    greedy, sampled = SamplingConfig(max_new_tokens=4), SamplingConfig(temperature=1.0, max_new_tokens=4)

    async def main():
        batcher = Batcher(engine, max_batch=3, batch_wait=0.05)
        batcher.start()
        jobs = [
            batcher.submit([{"role": "user", "content": f"q{i}"}], 2 if i % 2 else 1, sampled if i % 2 else greedy)
            for i in range(8)
        ]
        engine.release.set()
        results = await asyncio.gather(*jobs)
        await batcher.stop()
        return results, batcher.batches

    results, batches = asyncio.run(main())
    assert results == [[f"q{i}"] * (2 if i % 2 else 1) for i in range(8)]
    assert sum(batches) == 8 and max(batches) == 3 and len(batches) < 8
    for size, n, sampling in engine.calls:  # each call held requests with one n and one sampling
        assert (n, sampling) in ((1, greedy), (2, sampled))


def test_an_engine_failure_reaches_every_request_of_its_batch():
    class Broken(Recorder):
        def generate(self, prompts, n=1, sampling=None):
            raise RuntimeError("out of memory")

    async def main():
        batcher = Batcher(Broken(), max_batch=8, batch_wait=0.01)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(USER, 1, SamplingConfig()) for _ in range(3)), return_exceptions=True)
        await batcher.stop()
        return results

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


def test_a_busy_port_is_a_clear_error():
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}"):
            bind("127.0.0.1", taken.getsockname()[1]).close()
    finally:
        taken.close()


def test_logprob_requests_are_one_token_requests():
    from st_eval.serve import logprobs_choice, parse_logprobs_request

    _, _, one = parse_chat_request({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}, ServeConfig("m"))
    assert parse_logprobs_request({"logprobs": True, "top_logprobs": 5}, one) == 5
    assert parse_logprobs_request({}, one) is None
    _, _, long = parse_chat_request({"messages": [{"role": "user", "content": "x"}], "max_tokens": 8}, ServeConfig("m"))
    with pytest.raises(ValueError, match="one-token requests only"):
        parse_logprobs_request({"logprobs": True, "top_logprobs": 5}, long)
    with pytest.raises(ValueError, match="'top_logprobs'"):
        parse_logprobs_request({"logprobs": True, "top_logprobs": 50}, one)
    choice = logprobs_choice({"No": -2.0, "Yes": -0.5, "The": -1.0}, 2)
    entry = choice["logprobs"]["content"][0]
    assert choice["message"]["content"] == "Yes" and [t["token"] for t in entry["top_logprobs"]] == ["Yes", "The"]
