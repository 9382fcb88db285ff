"""``st-eval judge`` on a file of pairs with the embedded judge on CPU: both orders, valid JSONL,
loadable with ``datasets``, resumable after a torn write; ``st-eval model-path`` is loadable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from st_eval.cli import app
from st_eval.records import Judgment

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Generate with one thread: on a shared, busy CPU, spinning OpenMP threads make small
    batches many times slower (measured 320 s vs ~30 s here); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def judge(*args: str):
    result = CliRunner().invoke(app, ["judge", *args, "--order", "both", "--max-new-tokens", "64"])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def judged(tmp_path_factory, embedded_model):
    """Two example pairs judged once in both orders; returns (pairs file, output file)."""
    folder = tmp_path_factory.mktemp("judge")
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join((REPO / "examples" / "pairs.jsonl").read_text().splitlines(keepends=True)[:2]))
    output = folder / "judgments.jsonl"
    judge(str(pairs), "--model", embedded_model, "--output", str(output))
    return pairs, output


def test_both_orders_write_valid_jsonl_that_datasets_loads(judged):
    from datasets import load_dataset

    pairs, output = judged
    ids = [json.loads(line)["id"] for line in pairs.read_text().splitlines()]
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["pair_id"] for r in rows] == ids
    for row in rows:
        assert [o["order"] for o in row["orders"]] == ["given", "swapped"]
        assert row["verdict"] in ("A", "B", "tie", None)
        assert row["consistent"] in (True, False, None)
        assert Judgment.from_dict(row).to_dict() == row  # lossless round trip
    loaded = load_dataset("json", data_files=str(output), split="train")
    assert loaded.num_rows == 2 and loaded["pair_id"] == ids


def test_resume_after_a_torn_last_line_judges_only_what_is_missing(judged, tmp_path, embedded_model):
    pairs, output = judged
    first, second = output.read_text().splitlines(keepends=True)
    resumed = tmp_path / "judgments.jsonl"
    resumed.write_text(first + second[: len(second) // 2])  # a crash in the middle of line 2
    result = judge(str(pairs), "--model", embedded_model, "--output", str(resumed))
    assert "resuming: 1 of 2" in result.output
    lines = resumed.read_text().splitlines(keepends=True)
    assert len(lines) == 2 and lines[0] == first
    assert json.loads(lines[1])["pair_id"] == json.loads(second)["pair_id"]

    again = judge(str(pairs), "--model", embedded_model, "--output", str(resumed))
    assert "resuming: 2 of 2" in again.output
    assert resumed.read_text().splitlines(keepends=True) == lines  # nothing judged twice


def test_model_path_prints_a_folder_transformers_loads(embedded_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = subprocess.run(
        [sys.executable, "-m", "st_eval.cli", "model-path"], capture_output=True, text=True, timeout=300, check=True
    )
    folder = Path(result.stdout.strip())
    assert folder.is_dir() and folder == Path(embedded_model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.vocab_size >= len(tokenizer) - 1
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def test_the_readmes_first_command_gives_a_verdict_with_the_default_judge(monkeypatch):
    """No --model, no --template: the default judge under its own rating template writes a verdict
    and both ratings (under the pairwise template it almost never writes one)."""
    import re

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["judge", "--instruction", "What is 17 * 3?", "--response-a", "41", "--response-b", "51"])
    assert result.exit_code == 0, result.output
    assert re.search(r"rating of A: 0\.\d{4}, rating of B: 0\.\d{4} \(rating-yesno-v1\)", result.output), result.output
    assert re.search(r"^verdict: [AB] ", result.output, re.MULTILINE), result.output
