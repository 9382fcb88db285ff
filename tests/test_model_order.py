"""The model-order check's pairs (benchmarks/model_order.py): MT-Bench's first turns, each strong
model's answer against each weak model's on the same question, the strong one as response A."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("bench_model_order", Path(__file__).resolve().parent.parent / "benchmarks" / "model_order.py")
model_order = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_model_order"] = model_order
_SPEC.loader.exec_module(model_order)


def _mt_bench(folder: Path, answered: dict[str, list[int]]) -> Path:
    (folder / "model_answer").mkdir(parents=True)
    questions = [{"question_id": q, "category": "writing", "turns": [f"first turn {q}", f"second turn {q}"]} for q in (81, 82)]
    (folder / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    for model in (*model_order.STRONG, *model_order.WEAK):
        rows = [{"question_id": q, "model_id": model, "choices": [{"index": 0, "turns": [f"{model} on {q}", "later turn"]}]} for q in answered.get(model, [81, 82])]
        (folder / "model_answer" / f"{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_every_strong_answer_meets_every_weak_answer_on_the_first_turn_as_response_a(tmp_path):
    pairs = model_order.model_order_pairs(_mt_bench(tmp_path, {}))
    assert len(pairs) == 2 * len(model_order.STRONG) * len(model_order.WEAK) == 12
    first = pairs[0]
    assert first.id == "81-gpt-4-alpaca-13b" and first.label == "A"
    assert (first.conversation[-1].content, first.response_a, first.response_b) == ("first turn 81", "gpt-4 on 81", "alpaca-13b on 81")
    assert all(p.response_a.split(" on ")[0] in model_order.STRONG and p.response_b.split(" on ")[0] in model_order.WEAK for p in pairs)


def test_a_question_a_model_did_not_answer_makes_no_pair_with_it(tmp_path):
    pairs = model_order.model_order_pairs(_mt_bench(tmp_path, {"llama-13b": [81]}))
    assert len(pairs) == 12 - len(model_order.STRONG)
    assert not any(p.id.startswith("82-") and p.id.endswith("llama-13b") for p in pairs)
