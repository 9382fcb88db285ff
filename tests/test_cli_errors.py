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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["judge", "PAIRS", "--order", "bth"], "--order must be one of given, swapped, both (both-orders is both), got 'bth'"),
        (["judge", "PAIRS", "--model", "smollm2-135"], "unknown judge 'smollm2-135'; did you mean smollm2-135m?"),
        (["judge", "PAIRS", "--model", "smollm2-135m-sft"], "unknown judge 'smollm2-135m-sft'; did you mean smollm2-135m-st?"),
        (["bench", "rewardbench", "--data-files", "RB", "--template", "pairwise-v2"], "unknown judge template 'pairwise-v2'"),
        (["bench", "rewardbench", "--data-files", "RB", "--mode", "bth-orders"], "--mode must be one of official, both-orders, got 'bth-orders'"),
        (["bench", "rewardbench", "--data-files", "RB", "--model", "smollm2-135"], "unknown judge 'smollm2-135'; did you mean smollm2-135m?"),
        (["bench", "mtbench", "--template", "pairwise-v2"], "unknown judge template 'pairwise-v2'"),
    ],
    ids=["order-typo", "judge-typo", "shipped-typo", "bench-template", "bench-mode", "bench-judge", "mtbench-template"],
)
def test_bad_flags_fail_before_any_model_loads(tmp_path, capsys, monkeypatch, args, expected):
    from stub_judges import forbid_models, run_main

    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(PAIR)])
    rows = write_lines(tmp_path / "rb.jsonl", [json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "subset": "llmbar-natural"})])
    forbid_models(monkeypatch)
    code, _, err = run_main(monkeypatch, capsys, *[{"PAIRS": str(pairs), "RB": str(rows)}.get(a, a) for a in args])
    assert code == 2 and expected in err, err
    assert "Traceback" not in err and err.count("error:") == 1


def test_model_path_knows_the_shipped_judge(capsys, monkeypatch, tmp_path):
    from stub_judges import run_main

    from st_eval import embedded

    monkeypatch.setattr(embedded, "shipped_judge_path", lambda name: tmp_path / f"merged-{name}")
    code, out, _ = run_main(monkeypatch, capsys, "model-path", "smollm2-135m-st")
    assert code == 0 and out.strip() == str(tmp_path / "merged-smollm2-135m-st")
    code, _, err = run_main(monkeypatch, capsys, "model-path", "smollm2-135")
    assert code == 2 and "unknown judge 'smollm2-135'; did you mean smollm2-135m?" in err


def test_a_single_llmbar_file_hints_at_the_folder_it_belongs_in(tmp_path, capsys, monkeypatch):
    from stub_judges import forbid_models, run_main

    natural = tmp_path / "natural.json"
    natural.write_text(json.dumps([{"input": "Say hi.", "output_1": "Hi!", "output_2": "No.", "label": 1}]))
    forbid_models(monkeypatch)
    code, _, err = run_main(monkeypatch, capsys, "bench", "rewardbench", "--data-files", str(natural))
    assert code == 2
    assert "natural.json: line 1: field 'prompt' is missing or not a string" in err
    assert "LLMBar's layout" in err and "give the folder of the LLMBar release files (natural.json, adversarial_*.json)" in err
    assert "RewardBench's schema (prompt, chosen, rejected, subset)" in err


def test_a_bare_name_far_from_every_judge_stays_a_hub_id():
    """The hub's oldest models have no org (``gpt2``): only names close to st-eval's judges are typos."""
    from st_eval.embedded import check_model_name
    from st_eval.errors import ModelNotFoundError

    check_model_name("gpt2")
    check_model_name("HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ModelNotFoundError, match="did you mean smollm2-135m-st"):
        check_model_name("smollm2-135m-sf")
