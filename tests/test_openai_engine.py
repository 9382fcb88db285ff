"""The openai engine against a real ``st-eval serve`` on 127.0.0.1 (and a pool with a dead port).

The server is the product command itself, started once per module in a subprocess on a free port
with the embedded judge, and stopped after. A small counting proxy in front of it can answer 503
for its first requests, so retries are exercised over real HTTP.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from st_eval.engines import SamplingConfig, make_engine
from st_eval.engines.openai import OpenAIEngine, parse_base_urls
from st_eval.errors import EngineError

KEY = "sk-test-7c1f0e9a-do-not-print"
PROMPT = [{"role": "user", "content": "Name three colors."}]
SHORT = SamplingConfig(max_new_tokens=12)


# -- fast: configuration ------------------------------------------------------------------------


def test_base_urls_from_list_comma_string_and_env(monkeypatch):
    assert parse_base_urls("http://a:1, http://b:2/v1/") == ["http://a:1/v1", "http://b:2/v1"]
    assert parse_base_urls(["http://a:1/custom"]) == ["http://a:1/custom"]
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-host:9000")
    assert parse_base_urls(None) == ["http://env-host:9000/v1"]
    with pytest.raises(EngineError, match="base_url"):
        parse_base_urls("localhost:8000")
    with pytest.raises(EngineError, match="no server"):
        parse_base_urls(" , ")


def test_bad_numbers_are_refused():
    with pytest.raises(EngineError, match="concurrency"):
        OpenAIEngine("m", base_url="http://127.0.0.1:9", concurrency=0)


def test_no_server_answers_gives_a_clear_error_without_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    dead = _dead_url()
    with pytest.raises(EngineError) as error:
        make_engine("openai", None, base_url=dead, timeout=5)
    assert dead in str(error.value) and KEY not in str(error.value)


# -- the real server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{_free_port()}/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedded_model):
    """``st-eval serve`` on a free port with the embedded judge, a bearer key and --max-n 2."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # One torch thread: the server shares the CPU with the test process, and spinning OpenMP
    # threads on an oversubscribed CPU make generation many times slower.
    env = {**os.environ, "ST_EVAL_SERVE_API_KEY": KEY, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "st_eval.cli", "serve", "--port", "0", "--model", embedded_model,
             "--served-model-name", "judge", "--max-n", "2", "--log-level", "debug",
             # float32 as the local hf_engine: the comparisons below are of transport, not of dtypes
             "--engine-arg", "dtype=float32"],
            stdout=output, stderr=subprocess.STDOUT, text=True, env=env,
        )
    try:
        deadline = time.monotonic() + 300
        while "st-eval serve:" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        line = next(x for x in log.read_text().splitlines() if x.startswith("st-eval serve:"))
        url = line.split(" on ")[-1].strip()
        yield {"url": url, "log": log, "process": process}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Proxy(http.server.ThreadingHTTPServer):
    """Forwards to the real server; answers 503 to its first ``fail_first`` POSTs; counts POSTs."""

    def __init__(self, target: str, fail_first: int) -> None:
        self.target = target
        self.fail_first = fail_first
        self.posts = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _Proxy

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _forward(self, body: bytes | None) -> None:
        path = self.path.removeprefix("/v1")
        request = urllib.request.Request(self.server.target + path, data=body, method=self.command)
        for name in ("Authorization", "Content-Type"):
            if self.headers.get(name):
                request.add_header(name, self.headers[name])
        try:
            with urllib.request.urlopen(request, timeout=120) as reply:
                status, payload = reply.status, reply.read()
        except urllib.error.HTTPError as reply:
            status, payload = reply.code, reply.read()
        self._send(status, payload)

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._forward(None)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.posts += 1
            failing = self.server.posts <= self.server.fail_first
        if failing:
            self._send(503, json.dumps({"error": {"message": "warming up"}}).encode())
        else:
            self._forward(body)


@pytest.fixture
def proxy(server):
    proxies: list[_Proxy] = []

    def start(fail_first: int = 0) -> _Proxy:
        made = _Proxy(server["url"], fail_first)
        threading.Thread(target=made.serve_forever, daemon=True).start()
        proxies.append(made)
        return made

    yield start
    for made in proxies:
        made.shutdown()
        made.server_close()


def _url(proxy_server: _Proxy) -> str:
    return f"http://127.0.0.1:{proxy_server.server_address[1]}/v1"


@pytest.fixture
def engine(server):
    return make_engine("openai", None, base_url=server["url"], api_key=KEY)


@pytest.mark.slow
def test_model_is_discovered_and_identity_names_what_the_server_reports(engine):
    assert engine.model == "judge"
    assert engine.context_window == 8192  # the server lists max_model_len, as vLLM's does
    # the server reports its engine and weights as the model's root: part of the cache identity
    assert engine.identity.startswith("openai:judge@judge(hf:")
    assert "smollm2-135m" in engine.identity


@pytest.mark.slow
def test_greedy_n_returns_n_identical_samples_in_prompt_order(engine):
    prompts = [PROMPT, [{"role": "user", "content": "Say one word."}]]
    outputs = engine.generate(prompts, n=3, sampling=SHORT)
    assert [len(o) for o in outputs] == [3, 3]
    assert all(len(set(o)) == 1 and o[0].strip() for o in outputs)
    # the same prompt alone gives the same greedy text: outputs are in prompt order
    assert engine.generate([prompts[1]], n=1, sampling=SHORT)[0][0] == outputs[1][0]


@pytest.mark.slow
def test_sampled_n_beyond_server_max_n_is_completed_by_more_requests(server, proxy):
    counting = proxy()
    engine = make_engine("openai", "judge", base_url=_url(counting), api_key=KEY)
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=5)
    outputs = engine.generate([PROMPT], n=3, sampling=sampling)
    assert len(outputs[0]) == 3 and all(isinstance(t, str) for t in outputs[0])
    assert counting.posts == 2  # the server returned 2 of 3 (--max-n 2); one more request for the rest
    assert engine.generate([PROMPT], n=3, sampling=sampling) == outputs  # seeded: reproducible


@pytest.mark.slow
def test_stop_cuts_before_the_stop_text(engine):
    full = engine.generate([PROMPT], sampling=SamplingConfig(max_new_tokens=16))[0][0]
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    cut = engine.generate([PROMPT], sampling=SamplingConfig(max_new_tokens=16, stop=(stop,)))[0][0]
    assert cut == full[: full.index(stop)]
    assert stop not in cut


@pytest.mark.slow
def test_pool_with_a_dead_server_and_a_failing_one_still_answers(server, proxy):
    flaky = proxy(fail_first=2)
    engine = make_engine(
        "openai", "judge", base_url=f"{_dead_url()},{_url(flaky)}", api_key=KEY, max_retries=6, backoff=0.05
    )
    outputs = engine.generate([PROMPT, PROMPT], n=1, sampling=SHORT)
    assert [len(o) for o in outputs] == [1, 1] and outputs[0] == outputs[1]
    assert flaky.posts >= 4  # two 503s, then the two answered requests


@pytest.mark.slow
def test_retries_give_up_with_the_last_error(server, proxy):
    always = proxy(fail_first=10_000)
    engine = make_engine("openai", "judge", base_url=_url(always), api_key=KEY, max_retries=2, backoff=0.01)
    with pytest.raises(EngineError, match="after 3 attempts.*503"):
        engine.generate([PROMPT], sampling=SHORT)
    assert always.posts == 3


@pytest.mark.slow
def test_key_is_sent_but_never_logged_or_shown(server, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    engine = make_engine("openai", None, base_url=server["url"])  # key from the environment
    assert engine.generate([PROMPT], sampling=SHORT)[0][0]
    shown = [repr(engine), str(engine), engine.identity, caplog.text, Path(server["log"]).read_text()]
    assert all(KEY not in text for text in shown)
    assert "POST /v1/chat/completions" in Path(server["log"]).read_text()  # the log is live

    wrong = "sk-wrong-key-also-secret"
    with pytest.raises(EngineError) as error:
        make_engine("openai", "judge", base_url=server["url"], api_key=wrong).generate([PROMPT], sampling=SHORT)
    assert "401" in str(error.value) and wrong not in str(error.value)


@pytest.mark.slow
def test_server_rejects_bad_requests_with_openai_style_errors(server):
    def post(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            server["url"] + "/chat/completions", data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as reply:
            return reply.code, json.loads(reply.read())

    status, body = post({"model": "judge", "messages": []})
    assert status == 400 and "messages" in body["error"]["message"]
    status, body = post({"model": "other", "messages": PROMPT})
    assert status == 404 and "judge" in body["error"]["message"]
    status, body = post({"model": "judge", "messages": PROMPT, "n": 0})
    assert status == 400 and "'n'" in body["error"]["message"]


@pytest.mark.slow
def test_judge_command_through_the_openai_engine(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from st_eval.cli import app

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"id": "p1", "instruction": "What is 2+2?", "response_a": "4", "response_b": "5", "label": "A"}) + "\n"
    )
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    output = tmp_path / "out.jsonl"
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["judge", str(pairs), "--engine", "openai", "--base-url", server["url"], "--order", "both",
              "--max-new-tokens", "24", "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(output.read_text())
    assert row["engine"] == "openai" and row["model"] == "judge"
    assert [o["order"] for o in row["orders"]] == ["given", "swapped"]
    assert time.monotonic() - started < 300


@pytest.mark.slow
def test_a_final_assistant_message_is_continued_through_the_server(engine, hf_engine):
    """The verdict step's prefill reaches the server's engine as a continuation, not a new turn."""
    prefill = [*PROMPT, {"role": "assistant", "content": "Red, green and"}]
    continued = engine.generate([prefill], sampling=SamplingConfig(max_new_tokens=4))[0][0]
    assert continued == hf_engine.generate([prefill], sampling=SamplingConfig(max_new_tokens=4))[0][0]


@pytest.mark.slow
def test_rating_judge_through_the_server_equals_the_local_engine(engine, hf_engine):
    """One-token logprob requests reach the server's engine: the openai engine's top tokens and a
    rating judge's verdicts equal the local hf engine's."""
    from st_eval import Judge, JudgeConfig, Message, Pair

    pair = Pair("1", [Message("user", "What is the capital of France?")], "Paris.", "Bananas are yellow.", label="A")
    remote = Judge(engine, JudgeConfig(template="rating-yesno-v1", order="both")).judge([pair])[0]
    local = Judge(hf_engine, JudgeConfig(template="rating-yesno-v1", order="both")).judge([pair])[0]
    assert remote.verdict == local.verdict
    # the server returns the top 20 tokens alone (the OpenAI API's cap), where the local judge adds
    # each choice's spellings outside them: the same ratings from the local engine's top 20
    from st_eval.prompt import load_template
    from st_eval.rating import rating_from_logprobs

    template = load_template("rating-yesno-v1")
    tops = hf_engine.next_token_logprobs([template.render_rating(pair, side) for side in ("A", "B")], 20)
    for side, top in zip(("A", "B"), tops):
        # the same weights behind the server, batched differently: float32 drift ~1e-6 in a probability
        assert remote.ratings[side] == pytest.approx(rating_from_logprobs(top, template.choices), abs=1e-4)
