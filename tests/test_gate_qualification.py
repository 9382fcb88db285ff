"""Loading judge-qualification benchmarks and scoring the judge on them (no model)."""

from __future__ import annotations

import json

import pytest

from st_eval.errors import InputError
from st_eval.gate.qualification import load_benchmark, qualification
from st_eval.records import Judgment


def test_llmbar_folder_and_rewardbench_files(tmp_path):
    llmbar = tmp_path / "llmbar"
    llmbar.mkdir()
    (llmbar / "natural.json").write_text(json.dumps([{"input": "q", "output_1": "x", "output_2": "y", "label": 2}]))
    pairs = load_benchmark(str(llmbar))
    assert [(p.response_a, p.label, p.metadata["subset"]) for p in pairs] == [("y", "A", "llmbar-natural")]
    rb = tmp_path / "rb.jsonl"
    rb.write_text("".join(json.dumps({"prompt": "q", "chosen": f"good {i}", "rejected": "bad", "subset": s}) + "\n"
                          for i, s in enumerate(["hep-go", "donotanswer"])))
    assert [p.response_a for p in load_benchmark(str(rb), subsets=["donotanswer"])] == ["good 1"]


def test_missing_benchmark_and_unknown_subset_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="--qualify-on .*nope: not found"):
        load_benchmark(str(tmp_path / "nope"))
    rb = tmp_path / "rb.jsonl"
    rb.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "subset": "hep-go"}) + "\n")
    with pytest.raises(InputError, match="subsets not in the data: hep-gp"):
        load_benchmark(str(rb), subsets=["hep-gp"])


def test_accuracy_counts_ties_as_wrong():
    def j(verdict, label):
        return Judgment(pair_id="1", verdict=verdict, confidence=1.0, rationale="", orders=[], consistent=True,
                        engine="e", model="m", template="t", sampling={}, label=label)

    q = qualification("bench", [j("A", "A"), j("tie", "A"), j("B", "B"), j("A", "B")], 0.5)
    assert q.accuracy == 0.5 and q.passed and q.n == 4
    assert not qualification("bench", [j("tie", "A")], 0.5).passed


def test_real_llmbar_slice_loads_and_samples_reproducibly(shared_data):
    pairs = load_benchmark(str(shared_data / "llmbar"))
    assert len(pairs) == 419 and {p.label for p in pairs} == {"A"}
    sample = load_benchmark(str(shared_data / "llmbar"), limit=20)
    assert [p.id for p in sample] == [p.id for p in load_benchmark(str(shared_data / "llmbar"), limit=20)]
    assert len(sample) == 20
