"""Bad input ends ``st-eval judge`` with exit code 2 and a message naming file, line and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PAIR = {"instruction": "Say hi.", "response_a": "Hi!", "response_b": "Go away."}


def st_eval(*args: str, cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    """Run the console entry point in this process; returns (exit code, stderr)."""
    from st_eval import cli

    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["st-eval", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return exited.value.code, capsys.readouterr().err


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([json.dumps(PAIR), json.dumps({k: v for k, v in PAIR.items() if k != "response_b"})], ["line 2", "'response_b'"]),
        ([json.dumps(PAIR), "{not json"], ["line 2", "not valid JSON"]),
        ([json.dumps({"response_a": "x", "response_b": "y"})], ["line 1", "'instruction'"]),
        ([json.dumps({**PAIR, "label": "Z"})], ["line 1", "'label'"]),
        ([], ["file is empty"]),
    ],
    ids=["missing-field", "bad-json-line", "missing-instruction", "bad-label", "empty-file"],
)
def test_bad_pair_files_exit_2_naming_file_line_field(tmp_path, capsys, monkeypatch, lines, expected):
    pairs = write_lines(tmp_path / "pairs.jsonl", lines)
    code, err = st_eval("judge", str(pairs), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2, err
    message = " ".join(err.split())
    assert "error:" in message and "pairs.jsonl" in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--engine", "nope"], ["unknown engine 'nope'", "hf", "vllm", "openai"]),
        # hf imports torch before it resolves the model: slow to reach the error, so marked slow
        pytest.param(["--model", "./no-such-model"], ["model folder not found", "no-such-model"], marks=pytest.mark.slow),
        (["--engine", "vllm", "--model", "./no-such-model"], ["model folder not found", "no-such-model"]),
        (["--template", "no-such-template"], ["unknown judge template 'no-such-template'"]),
        (["--engine", "openai", "--base-url", "ftp://x"], ["base_url", "ftp://x"]),
        (["--engine-arg", "novalue"], ["--engine-arg", "KEY=VALUE"]),
    ],
    ids=["unknown-engine", "model-not-found", "model-not-found-vllm", "unknown-template", "bad-base-url", "bad-engine-arg"],
)
def test_bad_options_exit_2_with_a_clear_message(tmp_path, capsys, monkeypatch, args, expected):
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(PAIR)])
    code, err = st_eval("judge", str(pairs), *args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2, err
    message = " ".join(err.split())
    for part in expected:
        assert part in message


def test_console_script_exits_2_without_traceback(tmp_path):
    """The real entry point, in a fresh process: one clear line, exit code 2, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "st_eval.cli", "judge", "absent.jsonl"],
        cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "absent.jsonl: file not found" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
