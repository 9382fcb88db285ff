"""Stage 3: synthetic preference pairs without human labels.

``similar_instruction`` (the paper's method): the winner is the model's answer to x; for the
loser the model first writes a related-but-different instruction x', then answers x'. That
answer is fluent but answers the wrong question, so it is worse for x by construction.
``worse_response`` (the paper's weaker ablation): the model is asked directly for a worse answer.

Every model output is parsed strictly; malformed or degenerate pairs (empty, identical,
truncated) are dropped and counted by reason.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from st_eval.engines import Engine, SamplingConfig
from st_eval.records import Message, Pair
from st_eval.training.artifacts import resumable_chunks
from st_eval.training.config import SynthesisConfig
from st_eval.training.instruction_pool import Instruction, normalize

_LABEL = re.compile(r"^\s*(?:new\s+|modified\s+|similar\s+)?(?:instruction|request)\s*:\s*", re.IGNORECASE)
TokenCounter = Callable[[str], int]


def answer_prompt(text: str, system: str | None = None) -> list[dict[str, str]]:
    """A plain request; the same optional system message goes to winner and loser alike."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def similar_instruction_prompt(text: str) -> list[dict[str, str]]:
    """Ask for x': same topic, looks alike, but a good answer to x' does not answer x.

    One worked example turn comes first: small models copy a shown format far more reliably
    than they follow a described one.
    """
    return [
        {"role": "user", "content": _SIMILAR_ASK.replace("{text}", "What is the capital of France?")},
        {"role": "assistant", "content": f"Instruction: {_EXAMPLE_REWRITE}"},
        {"role": "user", "content": _SIMILAR_ASK.replace("{text}", text)},
    ]


_EXAMPLE_REWRITE = "What is the largest city in France by population?"
_SIMILAR_ASK = (
    "Here is a user request:\n<request>\n{text}\n</request>\n\n"
    "Write one new request on the same topic that looks similar but asks for something "
    "different, so that a good answer to the new request would not answer the original one. "
    "Reply with one line only, in this form:\nInstruction: <the new request>"
)


def worse_response_prompt(text: str) -> list[dict[str, str]]:
    """Ask directly for a plausible but worse answer (the paper's ablation)."""
    return [
        {
            "role": "user",
            "content": (
                "Here is a user request:\n"
                f"<request>\n{text}\n</request>\n\n"
                "Write a response that looks plausible but is clearly worse than a good answer: it "
                "misses part of the request or contains a mistake. Reply with the response only."
            ),
        }
    ]


def parse_similar_instruction(output: str, original: str) -> tuple[str | None, str | None]:
    """Strictly read x' from the model's output: ``Instruction: <text>`` on the first line.

    Returns (x', None) or (None, reason): empty, unlabelled, multi_line, identical, or
    copied_example (the worked example's answer repeated, which small models do).
    """
    text = output.strip()
    if not text:
        return None, "empty"
    match = _LABEL.match(text)
    if not match:
        return None, "unlabelled"
    body = text[match.end() :]
    first, _, rest = body.partition("\n")
    if rest.strip():
        return None, "multi_line"
    candidate = first.strip().strip('"').strip()
    if not candidate:
        return None, "empty"
    if normalize(candidate) == normalize(original):
        return None, "identical"
    if normalize(candidate) == normalize(_EXAMPLE_REWRITE):
        return None, "copied_example"
    return candidate, None


def finish_response(
    text: str, budget: int, count_tokens: TokenCounter | None, truncated: str = "drop"
) -> tuple[str | None, str | None]:
    """(usable text, None) or (None, drop reason) for one generated response.

    A response that used its whole token budget was cut mid-thought: with ``truncated: drop``
    (the default) its pair is dropped; with ``trim`` it is cut back to its last complete
    sentence, and dropped only if no complete sentence is left.
    """
    text = text.strip()
    if not text:
        return None, "empty_response"
    # Re-tokenizing decoded text can come out a token or two shorter than what was generated.
    if count_tokens is None or count_tokens(text) < budget - 2:
        return text, None
    if truncated == "trim":
        ends = list(_SENTENCE_END.finditer(text))
        if ends and ends[-1].end() >= 20:
            return text[: ends[-1].end()].strip(), None
    return None, "truncated"


_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


def check_pair(winner: str, loser: str) -> str | None:
    """Why two finished responses make a degenerate pair, or None if they are usable."""
    if not winner.strip() or not loser.strip():
        return "empty_response"
    if normalize(winner) == normalize(loser):
        return "identical_responses"
    return None


def make_pair(instruction: Instruction, winner: str, loser: str, method: str, extra: dict[str, Any], seed: int) -> Pair:
    """A labelled pair; the winner's position is random (seeded per instruction) to avoid bias."""
    winner_first = random.Random(f"{seed}:{instruction.id}").random() < 0.5
    a, b = (winner, loser) if winner_first else (loser, winner)
    return Pair(
        id=instruction.id,
        conversation=[Message("user", instruction.text)],
        response_a=a,
        response_b=b,
        label="A" if winner_first else "B",
        metadata={"method": method, "source": instruction.source, **instruction.tags, **extra},
    )


def pair_from_dict(data: dict[str, Any]) -> Pair:
    """Inverse of ``Pair.to_dict`` for the synthetic pair artifacts."""
    fields = dict(data)
    fields["conversation"] = [Message(**m) for m in data["conversation"]]
    return Pair(**fields)


def synthesize_pairs(
    instructions: list[Instruction],
    engine: Engine,
    config: SynthesisConfig,
    *,
    seed: int,
    partial: Path,
    count_tokens: TokenCounter | None = None,
    batch: int = 16,
) -> tuple[list[Pair], dict[str, int]]:
    """Generate one pair per instruction where possible; returns pairs and drop counts per reason."""
    answer = SamplingConfig(config.temperature, config.top_p, config.max_new_tokens, seed)
    rewrite = SamplingConfig(config.temperature, config.top_p, config.instruction_max_new_tokens, seed + 1)

    def work(chunk: list[Instruction]) -> list[dict]:
        winners = [o[0] for o in engine.generate([answer_prompt(i.text, config.answer_system) for i in chunk], 1, answer)]
        if config.method == "worse_response":
            worse = [worse_response_prompt(i.text) for i in chunk]
            if config.answer_system:
                worse = [[{"role": "system", "content": config.answer_system}, *p] for p in worse]
            losers = [o[0] for o in engine.generate(worse, 1, answer)]
            return [
                _row(item, w, l, None, config, count_tokens, seed) for item, w, l in zip(chunk, winners, losers)
            ]
        raw = [o[0] for o in engine.generate([similar_instruction_prompt(i.text) for i in chunk], 1, rewrite)]
        parsed = [parse_similar_instruction(r, i.text) for r, i in zip(raw, chunk)]
        truncated = [count_tokens is not None and count_tokens(r) >= config.instruction_max_new_tokens - 2 for r in raw]
        asks = [(k, x) for k, ((x, _), cut) in enumerate(zip(parsed, truncated)) if x is not None and not cut]
        outs = engine.generate([answer_prompt(x, config.answer_system) for _, x in asks], 1, answer) if asks else []
        losers: dict[int, str] = {k: o[0] for (k, _), o in zip(asks, outs)}
        rows = []
        for k, item in enumerate(chunk):
            x_prime, reason = parsed[k]
            if x_prime is None or truncated[k]:
                rows.append({"key": item.id, "dropped": f"instruction_{reason or 'truncated'}", "raw": raw[k]})
                continue
            rows.append(_row(item, winners[k], losers[k], x_prime, config, count_tokens, seed))
        return rows

    rows = resumable_chunks(instructions, lambda i: i.id, work, partial, chunk_size=batch, desc="synthesis")
    stats: dict[str, int] = {"instructions": len(instructions)}
    pairs = []
    for row in rows:
        if row.get("dropped"):
            stats[f"dropped_{row['dropped']}"] = stats.get(f"dropped_{row['dropped']}", 0) + 1
        else:
            pairs.append(pair_from_dict(row["pair"]))
    stats["pairs"] = len(pairs)
    stats["pairs_with_trimmed_response"] = sum(bool(p.metadata.get("trimmed")) for p in pairs)
    return pairs, stats


def _row(
    item: Instruction, winner: str, loser: str, x_prime: str | None, config: SynthesisConfig,
    count_tokens: TokenCounter | None, seed: int,
) -> dict[str, Any]:
    finished = [finish_response(t, config.max_new_tokens, count_tokens, config.truncated) for t in (winner, loser)]
    trimmed = [f[0] is not None and f[0] != t.strip() for f, t in zip(finished, (winner, loser))]
    reason = next((r for _, r in finished if r), None)
    if reason is None:
        reason = check_pair(finished[0][0] or "", finished[1][0] or "")
    if reason:
        return {"key": item.id, "dropped": reason, "winner": winner, "loser": loser, "similar_instruction": x_prime}
    extra = {"similar_instruction": x_prime} if x_prime is not None else {}
    extra["trimmed"] = any(trimmed)
    pair = make_pair(item, finished[0][0] or "", finished[1][0] or "", config.method, extra, seed)
    return {"key": item.id, "pair": pair.to_dict()}
