"""The gate on real MT-Bench answers (gpt-4 vs llama-13b) with the real embedded judge.

The 135M embedded judge is too weak to be expected to prefer gpt-4; the slow test checks what
must hold for any judge: the decision matches the exit code, both orders are judged, and the
reverse gate (baseline as candidate) reuses every judge output and mirrors the counts. The fast
test runs all 80 questions with a labelled STAND-IN for a capable judge (it knows gpt-4's answers
are the better ones, as MT-Bench's human and GPT-4 ratings say) to show the gate's decisions.
"""

from __future__ import annotations

import json
import sys

import pytest

from gate_standin import LabelledStandInEngine

from st_eval import cli, cli_options
from st_eval.cache import CachedEngine, GenerationCache
from st_eval.gate.decision import EXIT_CODES
from st_eval.gate.outputs import load_outputs

QUESTIONS = {108}  # the shortest two-turn conversation (about 450 prompt tokens), to stay fast on a CPU


@pytest.fixture
def mt_subset(shared_data, tmp_path):
    mt = shared_data / "mt_bench"
    subset = tmp_path / "question.jsonl"
    lines = [line for line in (mt / "question.jsonl").read_text().splitlines() if json.loads(line)["question_id"] in QUESTIONS]
    subset.write_text("\n".join(lines) + "\n")
    return {"prompts": subset, "gpt-4": mt / "model_answer" / "gpt-4.jsonl", "llama-13b": mt / "model_answer" / "llama-13b.jsonl"}


def gate(monkeypatch, hf_engine, tmp_path, candidate, baseline, mt_subset) -> tuple[int, dict]:
    cache = GenerationCache(tmp_path / "cache.sqlite")
    monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: CachedEngine(hf_engine, cache))
    out = tmp_path / f"{candidate}-vs-{baseline}.json"
    monkeypatch.setattr(sys, "argv", [
        "st-eval", "gate", "--candidate", str(mt_subset[candidate]), "--baseline", str(mt_subset[baseline]),
        "--prompts", str(mt_subset["prompts"]), "--template", "pairwise-short-v1", "--max-new-tokens", "32",
        "--max-failure-rate", "1.0", "--report-json", str(out),
    ])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code or 0, json.loads(out.read_text())


@pytest.mark.slow
def test_embedded_judge_gates_real_mt_bench_answers_both_directions(monkeypatch, hf_engine, tmp_path, mt_subset):
    code, forward = gate(monkeypatch, hf_engine, tmp_path, "gpt-4", "llama-13b", mt_subset)
    assert code == EXIT_CODES[forward["status"]]
    overall = forward["overall"]
    assert overall["n"] + overall["failures"] == len(QUESTIONS)
    assert forward["gate_outputs_generated"] == 2 * len(QUESTIONS)  # both orders, judged for real
    assert forward["candidate"]["model"] == "gpt-4" and forward["judge"].startswith("hf:")

    code, reverse = gate(monkeypatch, hf_engine, tmp_path, "llama-13b", "gpt-4", mt_subset)
    assert code == EXIT_CODES[reverse["status"]]
    assert reverse["gate_outputs_generated"] == 0  # the same prompts, already in the cache
    mirrored = reverse["overall"]
    assert (mirrored["wins"], mirrored["ties"], mirrored["losses"]) == (overall["losses"], overall["ties"], overall["wins"])
    assert mirrored["position_consistency"] == overall["position_consistency"]


def test_capable_judge_stand_in_passes_gpt4_and_fails_llama13b_on_all_80(shared_data, monkeypatch, tmp_path):
    mt = shared_data / "mt_bench"
    scores = {}
    for model, score in (("gpt-4", 1.0), ("llama-13b", 0.0)):
        for answer in load_outputs(mt / "model_answer" / f"{model}.jsonl").answers.values():
            if answer.turns[-1].strip():
                scores.setdefault(answer.turns[-1], score)
    standin = CachedEngine(LabelledStandInEngine(scores), GenerationCache(tmp_path / "cache.sqlite"))
    monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: standin)
    codes = {}
    for candidate, baseline in (("gpt-4", "llama-13b"), ("llama-13b", "gpt-4")):
        monkeypatch.setattr(sys, "argv", [
            "st-eval", "gate", "--candidate", str(mt / "model_answer" / f"{candidate}.jsonl"),
            "--baseline", str(mt / "model_answer" / f"{baseline}.jsonl"), "--prompts", str(mt / "question.jsonl"),
            "--non-inferiority-margin", "0.05", "--category-min-win-rate", "*=0.5", "--report-json", str(tmp_path / f"{candidate}.json"),
            # the stand-in writes verdicts; a 0.05 margin needs 3,140 prompts for 80% power, and
            # MT-Bench has 80: accepted knowingly, as docs/gate.md shows
            "--template", "pairwise-v1", "--min-decided", "80",
        ])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        codes[candidate] = exit_info.value.code or 0
    assert codes == {"gpt-4": 0, "llama-13b": 1}
    forward = json.loads((tmp_path / "gpt-4.json").read_text())
    assert forward["overall"]["n"] == 80 and len(forward["categories"]) == 8
    assert forward["overall"]["wins"] >= 75
    assert standin.inner.prompts_seen == 160  # the reverse gate came from the cache
