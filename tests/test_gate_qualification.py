"""Loading judge-qualification benchmarks (no model)."""

from __future__ import annotations

import json

import pytest

from st_eval.errors import InputError
from st_eval.gate.qualification import load_benchmark, qualification
from st_eval.records import Judgment


def test_formats_llmbar_rewardbench_and_pairs(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"input": "q", "output_1": "x", "output_2": "y", "label": 2}]))
    (tmp_path / "b.jsonl").write_text(json.dumps({"prompt": "q", "chosen": "good", "rejected": "bad"}) + "\n")
    (tmp_path / "c.jsonl").write_text(json.dumps({"instruction": "q", "response_a": "r", "response_b": "s", "label": "A"}) + "\n")
    pairs = load_benchmark(tmp_path)
    assert [(p.id, p.label, p.response_a) for p in pairs] == [("a:1", "B", "x"), ("b:1", "A", "good"), ("c:1", "A", "r")]


def test_unlabelled_pairs_cannot_qualify_a_judge(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"instruction": "q", "response_a": "r", "response_b": "s"}) + "\n")
    with pytest.raises(InputError, match=r"x\.jsonl: line 1: field 'label' is required"):
        load_benchmark(tmp_path / "x.jsonl")


def test_accuracy_counts_ties_as_wrong():
    def j(verdict, label):
        return Judgment(pair_id="1", verdict=verdict, confidence=1.0, rationale="", orders=[], consistent=True,
                        engine="e", model="m", template="t", sampling={}, label=label)

    q = qualification("bench", [j("A", "A"), j("tie", "A"), j("B", "B"), j("A", "B")], 0.5)
    assert q.accuracy == 0.5 and q.passed and q.n == 4


def test_real_llmbar_slice_loads_and_samples_reproducibly(shared_data):
    pairs = load_benchmark(shared_data / "llmbar")
    assert len(pairs) == 419 and {p.label for p in pairs} == {"A", "B"}
    sample = load_benchmark(shared_data / "llmbar", limit=20)
    assert [p.id for p in sample] == [p.id for p in load_benchmark(shared_data / "llmbar", limit=20)]
    assert len(sample) == 20
