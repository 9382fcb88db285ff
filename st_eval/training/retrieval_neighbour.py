"""Stage 3, the cheap pair source: the loser is the answer written for a neighbouring instruction.

This is how LLMBar's Neighbor set was built (Zeng et al. 2023): for a request x, retrieve a
similar but different request x' from the pool and take the answer written for x'. That answer
is fluent and on a related topic, yet it answers another request, so x's own answer beats it
for x by construction: a contrasting pair with a known winner and no human label, as in the
Self-Taught Evaluator's similar-instruction method, but without asking the model to invent x'.

Neighbours are the nearest instructions by TF-IDF cosine similarity of their texts. Pairs whose
texts are near-duplicates (``max_similarity``) or whose two answers are the same are skipped,
since there the "loser" may answer x just as well. Instructions that came without an answer
(built-in, MT-Bench) get one from the generator model, one generation per instruction (the
similar-instruction method needs two per pair).

The held-out instructions are split off *before* pairing and find their neighbours among
themselves only, so no held-out pair shares an answer with a training pair.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from st_eval.engines import Engine, SamplingConfig
from st_eval.records import Pair
from st_eval.training.artifacts import resumable_chunks
from st_eval.training.config import SynthesisConfig
from st_eval.training.instruction_pool import Instruction, normalize
from st_eval.training.similar_instruction import answer_prompt, finish_response, make_pair

TokenCounter = Callable[[str], int]
METHOD = "retrieval_neighbour"


def nearest_neighbours(texts: Sequence[str], k: int, max_similarity: float) -> list[list[tuple[int, float]]]:
    """For each text, up to ``k`` other texts by decreasing TF-IDF cosine similarity, each below
    ``max_similarity`` (near-duplicates are not neighbours), as ``(index, similarity)``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    if len(texts) < 2:
        return [[] for _ in texts]
    matrix = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(texts)
    similarity = cosine_similarity(matrix)
    found = []
    for i, row in enumerate(similarity):
        # sort by similarity, then index, so ties resolve the same way everywhere
        ranked = sorted((j for j in range(len(texts)) if j != i), key=lambda j: (-row[j], j))
        found.append([(j, float(row[j])) for j in ranked if row[j] < max_similarity][:k])
    return found


def neighbour_pairs(instructions: Sequence[Instruction], k: int, max_similarity: float, seed: int) -> tuple[list[Pair], dict[str, int]]:
    """Pairs (x's answer beats its neighbours' answers) for instructions that all have answers;
    each pair records its neighbour's ``rank`` (0 = nearest) and its ``instruction_id``."""
    neighbours = nearest_neighbours([i.text for i in instructions], k, max_similarity)
    pairs: list[Pair] = []
    stats = {"identical_answers": 0}
    for item, found in zip(instructions, neighbours):
        rank = 0
        for j, similarity in found:
            other = instructions[j]
            if normalize(other.answer or "") == normalize(item.answer or ""):
                stats["identical_answers"] += 1
                continue
            extra = {
                "instruction_id": item.id, "neighbour": other.id, "neighbour_instruction": other.text,
                "similarity": round(similarity, 4), "rank": rank,
            }
            rank += 1
            pair = make_pair(item, item.answer or "", other.answer or "", METHOD, extra, seed)
            pair.id = f"{item.id}~{other.id}"
            pairs.append(pair)
    return pairs, stats


def split_heldout(instructions: Sequence[Instruction], heldout: int, seed: int) -> tuple[list[Instruction], list[Instruction]]:
    """(train, held-out) instructions, the held-out ones drawn at random with the seed."""
    order = list(instructions)
    random.Random(seed).shuffle(order)
    count = min(heldout, len(order) // 2)
    return order[count:], order[:count]


def answer_missing(
    instructions: Sequence[Instruction],
    engine: Engine,
    config: SynthesisConfig,
    *,
    seed: int,
    partial: Path,
    count_tokens: TokenCounter | None,
    batch: int,
) -> tuple[list[Instruction], dict[str, int]]:
    """Give every instruction an answer: its own, or one the generator writes (dropped, and
    counted by reason, when that answer is empty or truncated)."""
    todo = [i for i in instructions if not i.answer]
    sampling = SamplingConfig(config.temperature, config.top_p, config.max_new_tokens, seed)

    def work(chunk: list[Instruction]) -> list[dict[str, Any]]:
        outputs = engine.generate([answer_prompt(i.text, config.answer_system) for i in chunk], 1, sampling)
        return [{"key": i.id, "answer": out[0]} for i, out in zip(chunk, outputs)]

    written = {r["key"]: r["answer"] for r in resumable_chunks(todo, lambda i: i.id, work, partial, chunk_size=batch, desc="answers")} if todo else {}
    stats = {"given_answers": len(instructions) - len(todo), "generated_answers": 0}
    ready = []
    for item in instructions:
        if item.answer:
            ready.append(item)
            continue
        text, reason = finish_response(written[item.id], config.max_new_tokens, count_tokens, config.truncated)
        if text is None:
            stats[f"dropped_{reason}"] = stats.get(f"dropped_{reason}", 0) + 1
            continue
        stats["generated_answers"] += 1
        ready.append(Instruction(item.id, item.text, item.source, item.tags, answer=text))
    return ready, stats


def synthesize_neighbour_pairs(
    instructions: Sequence[Instruction],
    engine_for: Callable[[], Engine],
    config: SynthesisConfig,
    *,
    seed: int,
    partial: Path,
    count_tokens: Callable[[], TokenCounter | None],
    batch: int,
    candidates: int | None = None,
) -> tuple[list[Pair], list[Pair], dict[str, Any]]:
    """(train pairs, held-out pairs, counts): answers first (generated only where missing),
    then the held-out split, then neighbours within each side: ``candidates`` per training
    instruction (default ``config.neighbours``; more for later iterations to choose from).
    The generator is only loaded when some instruction lacks an answer."""
    needs_model = any(not i.answer for i in instructions)
    engine = engine_for() if needs_model else None
    answered, stats = answer_missing(
        instructions, engine, config, seed=seed, partial=partial,  # type: ignore[arg-type]
        count_tokens=count_tokens() if needs_model else None, batch=batch,
    )
    train_items, heldout_items = split_heldout(answered, config.heldout, seed)
    train, train_stats = neighbour_pairs(train_items, max(candidates or 0, config.neighbours), config.max_similarity, seed)
    heldout, heldout_stats = neighbour_pairs(heldout_items, 1, config.max_similarity, seed)
    stats.update(
        instructions=len(instructions),
        train_instructions=len(train_items),
        heldout_instructions=len(heldout_items),
        skipped_identical_answers=train_stats["identical_answers"] + heldout_stats["identical_answers"],
        pairs=len(train) + len(heldout),
    )
    return train, heldout, stats
