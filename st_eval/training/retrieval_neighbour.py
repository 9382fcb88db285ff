"""Stage 3 from answered instructions: the ``neighbour`` pair source, and synthesis over sources.

The neighbour source is the cheapest: the loser is the answer written for a neighbouring instruction.

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
themselves only, so no held-out pair shares an answer with a training pair. Every other source
of ``synthesis.sources`` (``pair_sources/``) then makes its pairs on each side the same way.
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
from st_eval.training.pair_sources import Side, contrast_pair, cue_balanced, drawn, make_source, mix_stats
from st_eval.training.similar_instruction import answer_prompt, finish_response

TokenCounter = Callable[[str], int]


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
    side = Side(instructions, nearest_neighbours([i.text for i in instructions], k, max_similarity), "train", seed)
    return NeighbourSource(k).pairs(side, range(len(instructions)))


class NeighbourSource:
    """Pair source ``neighbour``: each drawn request's answer against its ``k`` nearest other
    requests' answers (``Side.neighbours`` must hold at least ``k`` per request)."""

    name = "neighbour"

    def __init__(self, k: int) -> None:
        self.k = k

    def pairs(self, side: Side, chosen: Sequence[int]) -> tuple[list[Pair], dict[str, int]]:
        pairs: list[Pair] = []
        stats = {"identical_answers": 0}
        for index in chosen:
            item = side.items[index]
            rank = 0
            for j, similarity in side.neighbours[index][: self.k]:
                other = side.items[j]
                if normalize(other.answer or "") == normalize(item.answer or ""):
                    stats["identical_answers"] += 1
                    continue
                extra = {"neighbour": other.id, "neighbour_instruction": other.text, "similarity": round(similarity, 4), "rank": rank}
                rank += 1
                pairs.append(contrast_pair(item, item.answer or "", other.answer or "", self.name, extra, side.seed, f"{item.id}~{other.id}"))
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
    then the held-out split, then each of ``config.sources`` within each side (the
    ``neighbour`` source: ``candidates`` per training instruction, default
    ``config.neighbours``, more for later iterations to choose from; one per held-out one).
    The generator is only loaded when some instruction lacks an answer or a source writes one."""
    specs = config.pair_sources()
    needs_model = any(not i.answer for i in instructions) or any(spec.kind == "weak_policy" for spec in specs)
    engine = engine_for() if needs_model else None
    answered, stats = answer_missing(
        instructions, engine, config, seed=seed, partial=partial,  # type: ignore[arg-type]
        count_tokens=count_tokens() if any(not i.answer for i in instructions) else None, batch=batch,
    )
    train_items, heldout_items = split_heldout(answered, config.heldout, seed)
    generate = _resumable_generate(engine, partial, batch) if engine is not None else None
    sides = []
    for name, items, k in (("train", train_items, max(candidates or 0, config.neighbours)), ("heldout", heldout_items, 1)):
        neighbours = nearest_neighbours([i.text for i in items], k, config.max_similarity)
        side = Side(items, neighbours, name, seed, generate)
        made, counts = [], {}
        for spec in specs:
            source = make_source(spec, k)
            pairs, skipped = source.pairs(side, drawn(items, source.name, spec.share, seed))
            made.extend(pairs)
            counts[source.name] = {**skipped, "pairs": len(pairs)}
        sides.append((made, counts))
    (train, train_counts), (heldout, heldout_counts) = sides
    if config.balance_cues:
        stats["mix_before_balance"] = mix_stats(train)
        train = cue_balanced(train, seed, config.length_bins)
    stats.update(
        instructions=len(instructions),
        train_instructions=len(train_items),
        heldout_instructions=len(heldout_items),
        sources={"train": train_counts, "heldout": heldout_counts},
        mix=mix_stats(train),
        pairs=len(train) + len(heldout),
    )
    return train, heldout, stats


def _resumable_generate(engine: Engine, partial: Path, batch: int):
    """A ``pair_sources.Generate`` over ``engine`` whose outputs survive an interrupted run
    (one partial file per tag beside ``partial``)."""

    def generate(prompts, sampling: SamplingConfig, tag: str) -> list[str]:
        numbered = list(enumerate(prompts))

        def work(chunk):
            outputs = engine.generate([p for _, p in chunk], 1, sampling)
            return [{"key": str(i), "output": out[0]} for (i, _), out in zip(chunk, outputs)]

        where = partial.with_name(f"{partial.name.split('.')[0]}.{tag}.partial.jsonl")
        rows = resumable_chunks(numbered, lambda n: str(n[0]), work, where, chunk_size=batch, desc=tag)
        return [r["output"] for r in rows]

    return generate
