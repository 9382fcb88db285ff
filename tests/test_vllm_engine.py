"""The vllm engine for real: vLLM's offline engine on the embedded judge (CPU build here).

One engine for the whole module (start-up takes minutes on CPU); the ``st-eval judge`` run reuses
it because vLLM engines are shared per (model, options) within a process. Run with
``scripts/test.sh --vllm``, which builds ``.venv-vllm``.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

try:
    import vllm  # noqa: F401
except Exception as exc:  # ImportError, or a broken build (e.g. CUDA-only wheels beside a CPU torch)
    pytest.skip(f"vLLM is not importable ({exc.__class__.__name__}): run scripts/test.sh --vllm", allow_module_level=True)

from typer.testing import CliRunner

from st_eval.cli import app
from st_eval.engines import SamplingConfig, make_engine

OPTIONS = {"max_model_len": 2048}
PROMPT = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def engine(embedded_model):
    built = make_engine("vllm", embedded_model, **OPTIONS)
    yield built
    built.close()


def test_judge_pairs_with_the_vllm_engine(engine, embedded_model, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"id": "math", "instruction": "What is 2+2?", "response_a": "4", "response_b": "22", "label": "A"},
        {"id": "capital", "instruction": "Capital of France?", "response_a": "Berlin.", "response_b": "Paris.", "label": "B"},
        {"id": "greet", "instruction": "Greet me politely.", "response_a": "Go away.", "response_b": "Hello, nice to meet you!", "label": "B"},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    output = tmp_path / "judgments.jsonl"
    args = ["judge", str(pairs), "--engine", "vllm", "--model", embedded_model, "--order", "both",
            "--max-new-tokens", "96", "--output", str(output)]
    args += [arg for key, value in OPTIONS.items() for arg in ("--engine-arg", f"{key}={value}")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    judged = [json.loads(line) for line in output.read_text().splitlines()]
    assert [j["pair_id"] for j in judged] == ["math", "capital", "greet"]
    for judgment in judged:
        assert judgment["engine"] == "vllm"
        assert [o["order"] for o in judgment["orders"]] == ["given", "swapped"]
        assert all(o["raw"][0].strip() for o in judgment["orders"])  # the model wrote something
    assert "accuracy" in result.output


def test_greedy_n_and_stop_follow_the_protocol(engine):
    full = engine.generate([PROMPT], n=2, sampling=SamplingConfig(max_new_tokens=16))[0]
    assert len(full) == 2 and full[0] == full[1] and full[0].strip()
    words = full[0].split()
    assert len(words) >= 3, full[0]
    cut = engine.generate([PROMPT], sampling=SamplingConfig(max_new_tokens=16, stop=(words[2],)))[0][0]
    assert cut == full[0][: full[0].index(words[2])]


def test_seeded_samples_are_reproducible(engine):
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=7)
    first = engine.generate([PROMPT, PROMPT], n=3, sampling=sampling)
    assert [len(o) for o in first] == [3, 3]
    assert engine.generate([PROMPT, PROMPT], n=3, sampling=sampling) == first


def test_a_final_assistant_message_is_continued_like_the_hf_engine(engine, hf_engine):
    """The verdict step's prefill: both engines continue the same text with the same greedy letter."""
    prefill = [*PROMPT, {"role": "assistant", "content": "Red, green and"}]
    mixed = engine.generate([PROMPT, prefill], sampling=SamplingConfig(max_new_tokens=4))
    continued = mixed[1][0]
    assert continued.strip() and not continued.lstrip().lower().startswith("red")  # no new turn restarting the list
    assert continued == hf_engine.generate([prefill], sampling=SamplingConfig(max_new_tokens=4))[0][0]
