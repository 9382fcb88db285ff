"""Loading candidate/baseline outputs and prompt sets, and pairing them (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from st_eval.errors import InputError
from st_eval.gate.outputs import apply_references, build_pairs, load_outputs, load_prompts, resolve_prompts


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def mt_answer(qid: int, model: str, turns: list[str]) -> dict:
    return {"question_id": qid, "answer_id": f"x{qid}", "model_id": model, "choices": [{"index": 0, "turns": turns}]}


@pytest.fixture
def mt_files(tmp_path):
    questions = write_jsonl(tmp_path / "question.jsonl", [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]},
        {"question_id": 111, "category": "math", "turns": ["2+2?", "Times 3?"]},
    ])
    cand = write_jsonl(tmp_path / "cand.jsonl", [mt_answer(81, "cand", ["poem c", "short c"]), mt_answer(111, "cand", ["4", "12"])])
    base = write_jsonl(tmp_path / "base.jsonl", [mt_answer(111, "base", ["5", "15"]), mt_answer(81, "base", ["poem b", "short b"])])
    return questions, cand, base


def test_mt_bench_format_as_is_gives_multi_turn_pairs(mt_files):
    questions, cand, base = mt_files
    c, b = load_outputs(cand), load_outputs(base)
    assert c.model == "cand"
    pairs = build_pairs(resolve_prompts(c, b, load_prompts(questions)), c, b)
    assert [p.id for p in pairs] == ["81", "111"]
    math = pairs[1]
    assert math.turns_a == ["4", "12"] and math.turns_b == ["5", "15"]
    assert math.response_a == "12" and math.instruction == "Times 3?"
    assert math.is_multi_turn and math.metadata["category"] == "math"


def test_references_attach_the_final_turn_answer(mt_files, tmp_path):
    questions, cand, base = mt_files
    refs = load_outputs(write_jsonl(tmp_path / "ref.jsonl", [mt_answer(111, "gpt-4", ["4", "12"])]))
    c, b = load_outputs(cand), load_outputs(base)
    items = apply_references(resolve_prompts(c, b, load_prompts(questions)), refs)
    assert {i.id: i.reference for i in items} == {"81": None, "111": "12"}


def test_plain_rows_carry_their_own_prompt_and_parquet_works(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cand = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "prompt": "Say hi", "output": "hi", "category": "chat"}])
    pq.write_table(pa.Table.from_pylist([{"prompt_id": "a", "response": "hello"}]), tmp_path / "b.parquet")
    c, b = load_outputs(cand), load_outputs(tmp_path / "b.parquet")
    [pair] = build_pairs(resolve_prompts(c, b), c, b)
    assert (pair.instruction, pair.response_a, pair.response_b, pair.turns_a) == ("Say hi", "hi", "hello", None)
    assert pair.metadata["category"] == "chat"


def test_missing_outputs_are_an_error_naming_file_and_ids(mt_files, tmp_path):
    questions, cand, _ = mt_files
    partial = write_jsonl(tmp_path / "partial.jsonl", [mt_answer(81, "base", ["p", "s"])])
    with pytest.raises(InputError, match=r"partial\.jsonl: missing outputs for 1 prompt id\(s\): 111"):
        resolve_prompts(load_outputs(cand), load_outputs(partial), load_prompts(questions))


def test_ids_only_without_prompts_asks_for_prompts(mt_files):
    _, cand, base = mt_files
    with pytest.raises(InputError, match="--prompts"):
        resolve_prompts(load_outputs(cand), load_outputs(base))


def test_different_prompts_on_the_two_sides_are_an_error(tmp_path):
    c = load_outputs(write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "prompt": "A?", "output": "x"}]))
    b = load_outputs(write_jsonl(tmp_path / "b.jsonl", [{"id": 1, "prompt": "B?", "output": "y"}]))
    with pytest.raises(InputError, match=r"b\.jsonl: line 1: .*same prompt"):
        resolve_prompts(c, b)


def test_turn_count_mismatch_names_file_line_and_field(mt_files, tmp_path):
    questions, cand, _ = mt_files
    short = write_jsonl(tmp_path / "short.jsonl", [mt_answer(81, "b", ["only one"]), mt_answer(111, "b", ["5", "15"])])
    c, b = load_outputs(cand), load_outputs(short)
    with pytest.raises(InputError, match=r"short\.jsonl: line 1: field 'turns'.*2 user turn\(s\) but 1 answer"):
        build_pairs(resolve_prompts(c, b, load_prompts(questions)), c, b)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('{"id": 1, "output": "x"}\n{"id": 1, "output": "y"}\n', r"line 2: field 'id': duplicate prompt id '1'"),
        ('{"id": 1, "output": "x"}\n{"id": 2,\n', r"line 2: not valid JSON"),
        ('{"id": 1, "text": "x"}\n', r"line 1: no answer"),
        ('{"output": "x"}\n', r"line 1: no prompt id"),
        ('{"id": 1, "outputs": "x"}\n', r"line 1: field 'outputs' must be a non-empty list"),
        ('{"question_id": 1, "choices": []}\n', r"line 1: field 'choices'"),
    ],
)
def test_bad_rows_name_the_line_and_field(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(lines, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_outputs(path)


def test_real_mt_bench_answers_pair_up(shared_data):
    mt = shared_data / "mt_bench"
    c, b = load_outputs(mt / "model_answer" / "gpt-4.jsonl"), load_outputs(mt / "model_answer" / "llama-13b.jsonl")
    items = apply_references(resolve_prompts(c, b, load_prompts(mt / "question.jsonl")), load_outputs(mt / "reference_answer_gpt-4.jsonl"))
    pairs = build_pairs(items, c, b)
    assert len(pairs) == 80 and all(p.is_multi_turn and len(p.turns_a) == 2 for p in pairs)
    assert len({p.metadata["category"] for p in pairs}) == 8
    assert sum(p.reference is not None for p in pairs) >= 30  # the reference file, plus references in question.jsonl
    assert (c.model, b.model) == ("gpt-4", "llama-13b")
