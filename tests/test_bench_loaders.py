"""Benchmark loaders on small local files written here in the official schemas."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from st_eval.benchmarks.mtbench import load_mtbench_human
from st_eval.benchmarks.rewardbench import EXAMPLE_COUNTS, load_llmbar, load_rewardbench
from st_eval.errors import InputError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rewardbench_rows():
    return [
        {"prompt": "Say hi.", "chosen": "Hi!", "chosen_model": "m1", "rejected": "Bye.", "rejected_model": "m2", "subset": "alpacaeval-easy", "id": 3},
        {"prompt": "2+2?", "chosen": "4", "chosen_model": "m1", "rejected": "5", "rejected_model": "m2", "subset": "math-prm", "id": 7},
    ]


def test_rewardbench_local_file(tmp_path):
    pairs = load_rewardbench(write_jsonl(tmp_path / "rb.jsonl", rewardbench_rows()))
    assert [p.id for p in pairs] == ["3", "7"]
    first = pairs[0]
    assert (first.instruction, first.response_a, first.response_b, first.label) == ("Say hi.", "Hi!", "Bye.", "A")
    assert first.metadata == {"subset": "alpacaeval-easy", "chosen_model": "m1", "rejected_model": "m2"}


def test_rewardbench_subset_filter_and_typos(tmp_path):
    path = write_jsonl(tmp_path / "rb.jsonl", rewardbench_rows())
    assert [p.id for p in load_rewardbench(path, subsets=["math-prm"])] == ["7"]
    with pytest.raises(InputError, match="math-prn"):
        load_rewardbench(path, subsets=["math-prn"])


def test_rewardbench_errors_name_file_line_field(tmp_path):
    rows = rewardbench_rows()
    del rows[1]["rejected"]
    with pytest.raises(InputError, match=r"rb.jsonl: line 2: field 'rejected'"):
        load_rewardbench(write_jsonl(tmp_path / "rb.jsonl", rows))


def test_llmbar_folder_layout(tmp_path):
    (tmp_path / "natural.json").write_text(json.dumps([
        {"input": "q1", "output_1": "good", "output_2": "bad", "label": 1},
        {"input": "q2", "output_1": "bad", "output_2": "good", "label": 2},
    ]))
    (tmp_path / "adversarial_manual.json").write_text(json.dumps([{"input": "q3", "output_1": "x", "output_2": "y", "label": 2}]))
    pairs = load_rewardbench(tmp_path)  # a folder in the LLMBar layout is accepted as data_files
    assert [(p.metadata["subset"], p.response_a, p.label) for p in pairs] == [
        ("llmbar-natural", "good", "A"),
        ("llmbar-natural", "good", "A"),
        ("llmbar-adver-manual", "y", "A"),
    ]
    (tmp_path / "natural.json").write_text(json.dumps([{"input": "q", "output_1": "a", "output_2": "b", "label": 3}]))
    with pytest.raises(InputError, match=r"natural.json: item 1: field 'label'"):
        load_llmbar(tmp_path)


def test_llmbar_real_data(shared_data):
    pairs = load_llmbar(shared_data / "llmbar")
    counts = Counter(p.metadata["subset"] for p in pairs)
    assert len(pairs) == 419
    assert counts == {name: EXAMPLE_COUNTS[name] for name in counts} and len(counts) == 5
    assert len({p.id for p in pairs}) == 419


def _conv(q1, a1, q2, a2):
    return [{"content": q1, "role": "user"}, {"content": a1, "role": "assistant"}, {"content": q2, "role": "user"}, {"content": a2, "role": "assistant"}]


def mtbench_rows():
    vicuna = _conv("Q1", "vicuna-1", "Q2", "vicuna-2")
    gpt4 = _conv("Q1", "gpt4-1", "Q2", "gpt4-2")
    row = lambda a, b, ca, cb, winner, judge, turn: {  # noqa: E731
        "question_id": 81, "model_a": a, "model_b": b, "winner": winner, "judge": judge,
        "conversation_a": ca, "conversation_b": cb, "turn": turn,
    }
    return [
        row("vicuna-13b-v1.2", "gpt-4", vicuna, gpt4, "model_a", "expert_0", 1),
        row("gpt-4", "vicuna-13b-v1.2", gpt4, vicuna, "model_b", "expert_1", 1),
        row("gpt-4", "vicuna-13b-v1.2", gpt4, vicuna, "tie (bothbad)", "expert_2", 2),
        row("gpt-4", "vicuna-13b-v1.2", gpt4, vicuna, "model_a", "author_0", 2),
        {**row("gpt-4", "claude-v1", gpt4, vicuna, "model_a", "author_0", 1), "question_id": 82},
    ]


def test_mtbench_pairs_keyed_sorted_with_flipped_votes(tmp_path):
    pairs = load_mtbench_human(write_jsonl(tmp_path / "human.jsonl", mtbench_rows()))
    assert [p.id for p in pairs] == ["81-gpt-4-vicuna-13b-v1.2-turn1", "81-gpt-4-vicuna-13b-v1.2-turn2"]
    turn1, turn2 = pairs
    # gpt-4 sorts first, so it is A even where the row listed it as model_b
    assert (turn1.response_a, turn1.response_b, turn1.turns_a, turn1.turns_b) == ("gpt4-1", "vicuna-1", ["gpt4-1"], ["vicuna-1"])
    assert turn1.metadata["votes"] == [
        {"judge": "expert_0", "winner": "model_b"},  # vicuna won; flipped to the sorted orientation
        {"judge": "expert_1", "winner": "model_b"},
    ]
    assert [m.content for m in turn2.conversation] == ["Q1", "Q2"]
    assert (turn2.turns_a, turn2.turns_b) == (["gpt4-1", "gpt4-2"], ["vicuna-1", "vicuna-2"])
    assert len(turn2.metadata["votes"]) == 2  # the author vote is kept, the agreement ignores it


def test_mtbench_errors_name_the_field(tmp_path):
    rows = mtbench_rows()
    rows[0]["turn"] = 3
    with pytest.raises(InputError, match=r"human.jsonl: line 1: field 'turn'"):
        load_mtbench_human(write_jsonl(tmp_path / "human.jsonl", rows))


@pytest.mark.parametrize("load", [lambda: load_rewardbench(), lambda: load_mtbench_human()])
def test_unreachable_hub_gives_an_error_that_names_the_offline_way(load, monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):  # stands in for the hub, which tests must never reach
        raise ConnectionError("Couldn't reach 'allenai/reward-bench' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(InputError, match="--data-files") as error:
        load()
    assert "Hugging Face hub" in str(error.value) and "Couldn't reach" in str(error.value)
