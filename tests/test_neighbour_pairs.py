"""Retrieval-neighbour pairs, the Self-Instruct pool source, and the judge-chosen hard negatives."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pytest

from st_eval.engines.base import ChatPrompt, Engine
from st_eval.errors import InputError
from st_eval.training.config import recipe_from_dict
from st_eval.training.instruction_pool import Instruction, build_pool
from st_eval.training.retrieval_neighbour import nearest_neighbours, neighbour_pairs, split_heldout, synthesize_neighbour_pairs

TEXTS = [
    "Write a poem about the sea and its waves.",
    "Write a poem about the sea at night.",
    "Explain how a binary search tree works.",
    "Explain how a hash table works.",
    "Give three tips for growing tomatoes.",
]


def _items(answers: bool = True) -> list[Instruction]:
    return [Instruction(f"i{n}", text, "test", answer=f"answer {n}" if answers else None) for n, text in enumerate(TEXTS)]


def test_nearest_neighbours_are_the_most_similar_texts_first():
    found = nearest_neighbours(TEXTS, k=2, max_similarity=0.99)
    assert found[0][0][0] == 1 and found[1][0][0] == 0  # the two sea poems
    assert found[2][0][0] == 3 and found[3][0][0] == 2  # the two "explain how" requests
    assert all(i not in [j for j, _ in row] for i, row in enumerate(found))  # never itself
    assert all(a[1] >= b[1] for row in found for a, b in zip(row, row[1:]))  # by decreasing similarity


def test_near_duplicates_are_not_neighbours():
    texts = ["Summarize this article about whales.", "Summarize this article about whales!", "Bake bread."]
    found = nearest_neighbours(texts, k=2, max_similarity=0.9)
    assert 1 not in [j for j, _ in found[0]]


def test_neighbour_pairs_know_their_winner_rank_and_skip_identical_answers():
    items = _items()
    items[1].answer = items[0].answer  # the sea poems share an answer: no pair between them
    pairs, stats = neighbour_pairs(items, k=2, max_similarity=0.99, seed=0)
    assert stats["identical_answers"] == 2
    for pair in pairs:
        own = next(i for i in items if i.id == pair.metadata["instruction_id"])
        winner = pair.response_a if pair.label == "A" else pair.response_b
        loser = pair.response_b if pair.label == "A" else pair.response_a
        assert winner == own.answer and loser != own.answer
        assert pair.instruction == own.text and pair.id == f"{own.id}~{pair.metadata['neighbour']}"
    first = [p for p in pairs if p.metadata["instruction_id"] == "i2"]
    assert [p.metadata["rank"] for p in first] == [0, 1] and first[0].metadata["neighbour"] == "i3"
    assert {p.label for p in pairs} == {"A", "B"}  # winner position varies


def test_heldout_split_is_seeded_and_disjoint():
    train, held = split_heldout(_items(), 2, seed=3)
    again_train, again_held = split_heldout(_items(), 2, seed=3)
    assert [i.id for i in held] == [i.id for i in again_held] and len(held) == 2
    assert not {i.id for i in train} & {i.id for i in held}


def test_synthesis_without_missing_answers_never_loads_a_model(tmp_path):
    recipe = recipe_from_dict({"name": "t", "synthesis": {"method": "retrieval_neighbour", "neighbours": 1, "heldout": 2}})

    def no_engine():
        raise AssertionError("no model should be needed")

    train, held, stats = synthesize_neighbour_pairs(
        _items(), no_engine, recipe.synthesis, seed=0, partial=tmp_path / "p.jsonl", count_tokens=lambda: None, batch=4
    )
    assert stats["given_answers"] == 5 and stats["generated_answers"] == 0
    held_answers = {p.response_a for p in held} | {p.response_b for p in held}
    train_answers = {p.response_a for p in train} | {p.response_b for p in train}
    assert not held_answers & train_answers  # held-out pairs share no answer with training pairs


def test_missing_answers_are_written_by_the_generator(tmp_path):
    recipe = recipe_from_dict({"name": "t", "synthesis": {"method": "retrieval_neighbour", "heldout": 1}})

    class Writer(Engine):
        """Stand-in generator (named as such): answers by echoing the request's first word."""

        name = "writer"

        def generate(self, prompts, n=1, sampling=None):
            return [[f"Reply to {p[-1]['content'].split()[0]}."] * n for p in prompts]

    items = _items()
    items[4].answer = None
    train, held, stats = synthesize_neighbour_pairs(
        items, lambda: Writer("w"), recipe.synthesis, seed=0, partial=tmp_path / "p.jsonl", count_tokens=lambda: None, batch=4
    )
    assert stats["generated_answers"] == 1
    assert any("Reply to Give." in (p.response_a, p.response_b) for p in train + held)


def test_self_instruct_source_reads_instruction_input_and_answer(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rows = [
        {"id": "t1", "instruction": "Translate to French.", "instances": [{"input": "Good morning", "output": "Bonjour"}]},
        {"id": "t2", "instruction": "Name a planet.", "instances": [{"input": "", "output": "Mars"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = recipe_from_dict({"name": "t", "pool": {"sources": [{"kind": "self_instruct", "path": str(path)}]}})
    pool, stats = build_pool(recipe)
    assert [(i.text, i.answer) for i in pool] == [("Translate to French.\n\nGood morning", "Bonjour"), ("Name a planet.", "Mars")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "x", "instances": []}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl: line 1: field 'instances'"):
        build_pool(recipe_from_dict({"name": "t", "pool": {"sources": [{"kind": "self_instruct", "path": str(bad)}]}}))


def test_optional_pool_source_absent_is_skipped_and_counted(tmp_path):
    recipe = recipe_from_dict({"name": "t", "pool": {"sources": [{"kind": "self_instruct", "path": str(tmp_path / "none.jsonl"), "required": False}, "builtin"]}})
    pool, stats = build_pool(recipe)
    assert stats["skipped_source_0"] == 1 and pool and all(i.source == "builtin" for i in pool)


class RatesByLength(Engine):
    """Stand-in rating engine (named as such): P(Yes) grows with the answer's length, so the
    test knows which candidate the judge finds most convincing."""

    name = "bylength"

    def generate(self, prompts: Sequence[ChatPrompt], n: int = 1, sampling=None):
        raise NotImplementedError

    def next_token_logprobs(self, prompts, top_k=20, include=()):
        tops = []
        for prompt in prompts:
            answer = prompt[-1]["content"].split("<answer>\n")[1].split("\n</answer>")[0]
            p = min(0.99, len(answer) / 100)
            tops.append({"Yes": math.log(p), "No": math.log(1 - p)})
        return tops


def test_hard_negatives_are_the_losers_the_judge_rates_closest_to_the_winner(tmp_path):
    from st_eval.training.rating_pairs import hardest_pairs

    items = [Instruction(f"i{n}", text, "test", answer="x" * (10 + 10 * n)) for n, text in enumerate(TEXTS)]
    pairs, _ = neighbour_pairs(items, k=3, max_similarity=0.99, seed=0)
    chosen, stats = hardest_pairs(
        pairs, RatesByLength("m"), "rating-yesno-v1", per_instruction=1, candidates=3, partial=tmp_path / "m.jsonl", batch=4, desc="t"
    )
    assert stats["candidates"] == len(pairs) == 15 and stats["chosen"] == len(chosen) == 5
    for pair in chosen:
        own = pair.metadata["instruction_id"]
        candidates = [p for p in pairs if p.metadata["instruction_id"] == own]
        longest = max(candidates, key=lambda p: len(p.response_a if p.label == "B" else p.response_b))
        assert pair.id == longest.id  # the longest loser is rated highest by this judge
    assert stats["chosen_ranked_wrong"] >= 1  # instruction i0's losers are all longer than its answer


def test_recipe_rules_for_rating_templates():
    base = {"name": "t", "template": "rating-yesno-v1"}
    with pytest.raises(InputError, match="'verdict_step'"):
        recipe_from_dict({**base, "verdict_step": True})
    with pytest.raises(InputError, match="'dpo.enabled'"):
        recipe_from_dict({**base, "dpo": {"enabled": True}})
    with pytest.raises(InputError, match="'annotation.hard_negatives'"):
        recipe_from_dict({"name": "t", "annotation": {"hard_negatives": 3}})
    with pytest.raises(InputError, match="'synthesis.neighbours'"):
        recipe_from_dict({**base, "synthesis": {"method": "retrieval_neighbour", "neighbours": 0}})
