"""Faulty servers never cost a traceback or a judgment: the openai engine against st-eval's own
fault-injecting server (tests/fault_server.py), judged by a labelled stand-in (not a model), so
figures with faults must equal the undisturbed figures exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import FAULTS, FaultServer
from gate_standin import LabelledStandInEngine
from typer.testing import CliRunner

from st_eval.cli import app
from st_eval.engines import make_engine
from st_eval.errors import EngineError

SUBSETS = ["alpacaeval-easy", "llmbar-natural", "donotanswer", "math-prm"]
#: openai engine settings for the tests: many quick retries, a timeout shorter than a stall
RETRY_ARGS = ["--engine-arg", "max_retries=12", "--engine-arg", "backoff=0.01", "--engine-arg", "timeout=1", "--engine-arg", "api_key=test-key"]


def stand_in(n: int) -> LabelledStandInEngine:
    """Prefers the chosen answer, except every third pair (prefers the rejected one) and every
    fifth (no verdict): figures that a lost or duplicated judgment would change."""
    scores = {}
    for i in range(n):
        scores[f"good answer {i}."] = 0.0 if i % 3 == 0 else 1.0
        scores[f"bad answer {i}."] = 0.5
    return LabelledStandInEngine(scores, unparseable=[f"good answer {i}." for i in range(0, n, 5)])


def rewardbench_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "rb.jsonl"
    rows = [{"id": i, "prompt": f"Question {i}?", "chosen": f"good answer {i}.", "rejected": f"bad answer {i}.", "subset": SUBSETS[i % 4]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bench(tmp_path: Path, name: str, url: str, data: Path, monkeypatch, *extra: str) -> dict:
    """``st-eval bench rewardbench`` through the openai engine, with a cache of its own."""
    monkeypatch.setenv("ST_EVAL_HOME", str(tmp_path / f"home-{name}"))
    report = tmp_path / f"{name}.json"
    result = CliRunner().invoke(
        app, ["bench", "rewardbench", "--engine", "openai", "--base-url", url, "--data-files", str(data), "--report-json", str(report), *RETRY_ARGS, *extra],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(report.read_text())


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_retried_then_named_in_one_error(fault):
    prompt = [{"role": "user", "content": "<answer_a>good answer 1.</answer_a><answer_b>bad answer 1.</answer_b>"}]
    with FaultServer(stand_in(2), rate=1.0, faults=(fault,), stall_seconds=1.5) as server:
        engine = make_engine("openai", None, base_url=server.url, api_key="k", max_retries=2, backoff=0.01, timeout=1)
        with pytest.raises(EngineError) as error:
            engine.generate([prompt])
        assert server.counts[fault] == 3  # the first try and two retries
    message = str(error.value)
    assert message.startswith("openai engine: request failed after 3 attempts") and server.url in message
    expected = {"500": "500", "429": "429", "drop": "Connection error", "truncate": "malformed response", "reset": "Connection error", "stall": "timed out"}[fault]
    assert expected in message and "\n" not in message


def test_bench_under_faults_gives_exactly_the_undisturbed_figures(tmp_path, monkeypatch):
    n = 24
    data = rewardbench_file(tmp_path, n)
    with FaultServer(stand_in(n)) as clean:
        undisturbed = bench(tmp_path, "clean", clean.url, data, monkeypatch, "--mode", "both-orders")
    with FaultServer(stand_in(n), rate=0.3, seed=4, stall_seconds=1.5) as faulty:
        disturbed = bench(tmp_path, "faulty", faulty.url, data, monkeypatch, "--mode", "both-orders")
    assert sum(v for k, v in faulty.counts.items() if k != "ok") >= 10 and set(faulty.counts) > {"ok", "truncate"}
    for key in ("both_orders", "figures", "rows"):
        assert disturbed[key] == undisturbed[key]
    assert undisturbed["both_orders"]["invalid_rate"] > 0  # the figures do depend on every judgment


def test_gate_under_faults_gives_the_undisturbed_decision(tmp_path, monkeypatch):
    ids = range(1, 13)
    def write(path: Path, rows: list[dict]) -> Path:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    prompts = write(tmp_path / "q.jsonl", [{"question_id": i, "category": "math", "turns": [f"Question {i}?"]} for i in ids])
    outputs = {m: write(tmp_path / f"{m}.jsonl", [{"question_id": i, "model_id": m, "choices": [{"index": 0, "turns": [f"{m} answer #{i}."]}]} for i in ids]) for m in ("cand", "base")}
    scores = {**{f"cand answer #{i}.": (0.0 if i == 3 else 1.0) for i in ids}, **{f"base answer #{i}.": 0.5 for i in ids}}

    def gate(name: str, url: str) -> tuple[int, dict]:
        monkeypatch.setenv("ST_EVAL_HOME", str(tmp_path / f"home-{name}"))
        report = tmp_path / f"{name}.json"
        args = ["gate", "--candidate", str(outputs["cand"]), "--baseline", str(outputs["base"]), "--prompts", str(prompts), "--engine", "openai",
                "--base-url", url, "--report-json", str(report), "--outputs-dir", str(tmp_path / f"out-{name}"),
                "--min-decided", "1", *RETRY_ARGS]  # 12 prompts test fault tolerance, not the gate's power
        result = CliRunner().invoke(app, args)
        assert result.exit_code in (0, 1) and (result.exception is None or isinstance(result.exception, SystemExit)), result.output + repr(result.exception)
        return result.exit_code, json.loads(report.read_text())

    with FaultServer(LabelledStandInEngine(scores)) as clean:
        code, undisturbed = gate("clean", clean.url)
    with FaultServer(LabelledStandInEngine(scores), rate=0.3, seed=2, stall_seconds=1.5) as faulty:
        disturbed_code, disturbed = gate("faulty", faulty.url)
    assert sum(v for k, v in faulty.counts.items() if k != "ok") >= 5, (clean.counts, faulty.counts, undisturbed)
    assert (disturbed_code, disturbed["status"], disturbed["overall"]) == (code, undisturbed["status"], undisturbed["overall"])
    assert undisturbed["overall"]["wins"] == 11 and undisturbed["overall"]["losses"] == 1


def test_kill_9_mid_run_then_the_same_command_loses_and_duplicates_nothing(tmp_path):
    n = 48
    data = rewardbench_file(tmp_path, n)
    output = tmp_path / "judgments.jsonl"
    env = {**os.environ, "ST_EVAL_HOME": str(tmp_path / "home")}
    with FaultServer(stand_in(n), rate=0.2, seed=9, stall_seconds=1.5, delay=0.1) as server:
        command = [sys.executable, "-m", "st_eval.cli", "bench", "rewardbench", "--engine", "openai", "--base-url", server.url,
                   "--data-files", str(data), "--output", str(output), *RETRY_ARGS, "--engine-arg", "concurrency=2"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not output.exists() or len(output.read_text().splitlines()) < 16):
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        written = len(output.read_text().splitlines())
        assert 16 <= written < n  # killed mid-run, after some judgments were written
        report = tmp_path / "report.json"
        subprocess.run([*command, "--report-json", str(report)], env=env, check=True, capture_output=True, timeout=300)
    ids = [json.loads(line)["pair_id"] for line in output.read_text().splitlines()]
    assert sorted(ids, key=int) == [str(i) for i in range(n)]  # every pair once
    with FaultServer(stand_in(n)) as clean:
        undisturbed = subprocess.run(
            [sys.executable, "-m", "st_eval.cli", "bench", "rewardbench", "--engine", "openai", "--base-url", clean.url, "--data-files", str(data),
             "--report-json", str(tmp_path / "clean.json"), *RETRY_ARGS], env={**env, "ST_EVAL_HOME": str(tmp_path / "home-clean")}, check=True, capture_output=True, timeout=300,
        )
    assert undisturbed.returncode == 0
    assert json.loads(report.read_text())["official"] == json.loads((tmp_path / "clean.json").read_text())["official"]
