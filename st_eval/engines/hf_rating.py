"""The hf engine's rating path on CPU: next-token probabilities of many prompts, each shared start
computed once.

A rating judge rates each answer of a pair alone, so its prompts begin alike: all of them with
the template's opening, the two of a pair with the whole instruction too. On 32 LLMBar pairs
(``rating-yesno-v1``, 64 prompts, 10,321 tokens) the prompts' prefix tree holds 6,601 tokens:
36% of the tokens are a start another prompt already has. So the prompts are sorted (prompts
that begin alike lie side by side) and laid out end to end in rows of up to a token budget, each
written only from where it stops agreeing with the prompt before it in the row: a **segment**,
whose tokens attend to the row's tokens that hold its start (its **context**: pieces of earlier
segments) and causally to themselves, with the positions they have in their own prompt
(:func:`prefix_tree_attention`, through st-eval's CPU attention). Every prompt's last token
sees exactly what it sees alone: the same log-probabilities as one prompt at a time (up to
rounding), with no padding, no mask over the row, and the output head at each prompt's last
token only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: (first token in the row, tokens, context: (start, stop) ranges of the row's tokens it continues)
Segment = tuple[int, int, list[tuple[int, int]]]


@dataclass
class PackedRow:
    """One forward pass: ``tokens`` and their ``positions``, the ``segments`` that attend as
    described above, where each prompt's last token lies (``ends``) and which prompt it is
    (``prompts``); ``path``: the row ranges holding the last prompt laid out, in order."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    prompts: list[int] = field(default_factory=list)
    path: list[tuple[int, int]] = field(default_factory=list)

    def add(self, prompt: int, ids: Sequence[int], shared: int) -> None:
        """Lay out ``ids`` (prompt number ``prompt``), whose first ``shared`` tokens are the
        first tokens of the prompt laid out last."""
        context = _first_tokens(self.path, shared)
        start = len(self.tokens)
        self.tokens += ids[shared:]
        self.positions += range(shared, len(ids))
        self.segments.append((start, len(ids) - shared, context))
        self.path = context + [(start, len(self.tokens))]
        self.ends.append(len(self.tokens) - 1)
        self.prompts.append(prompt)


def _first_tokens(path: list[tuple[int, int]], count: int) -> list[tuple[int, int]]:
    """The ranges of ``path`` that hold its first ``count`` tokens."""
    pieces = []
    for start, stop in path:
        if count <= 0:
            break
        pieces.append((start, min(stop, start + count)))
        count -= stop - start
    return pieces


def pack_prefix_tree(token_ids: Sequence[Sequence[int]], budget: int) -> list[PackedRow]:
    """Rows of at most ``budget`` tokens (a longer prompt goes alone) holding every prompt, in
    sorted order, each after the tokens it shares with the prompt before it in the same row (at
    least its last token is its own: that is where its next token is read)."""
    rows = [PackedRow()]
    previous: Sequence[int] = ()
    for prompt in sorted(range(len(token_ids)), key=lambda i: list(token_ids[i])):
        ids = list(token_ids[prompt])
        row = rows[-1]
        shared = min(_common_start(previous, ids), len(ids) - 1) if row.tokens else 0
        if row.tokens and len(row.tokens) + len(ids) - shared > budget:
            row, shared = PackedRow(), 0
            rows.append(row)
        row.add(prompt, ids, shared)
        previous = ids
    return [row for row in rows if row.tokens]


def _common_start(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    while length < min(len(a), len(b)) and a[length] == b[length]:
        length += 1
    return length


def prefix_tree_attention(query: Any, key: Any, value: Any, segments: list[Segment], scaling: float | None, gqa: bool) -> Any:
    """Attention over a :class:`PackedRow` (query, key, value: (1, heads, tokens, dim)): each
    segment attends to its context and causally to itself. Returns (1, tokens, heads, dim)."""
    import torch

    sdpa = torch.nn.functional.scaled_dot_product_attention
    parts = []
    for start, length, context in segments:
        own = slice(start, start + length)
        if not context:
            parts.append(sdpa(query[:, :, own], key[:, :, own], value[:, :, own], is_causal=True, scale=scaling, enable_gqa=gqa))
            continue
        keys = torch.cat([key[:, :, a:b] for a, b in context] + [key[:, :, own]], dim=2)
        values = torch.cat([value[:, :, a:b] for a, b in context] + [value[:, :, own]], dim=2)
        before = keys.shape[2] - length
        allowed = torch.ones(length, before + length, dtype=torch.bool, device=query.device)
        allowed[:, before:] = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
        parts.append(sdpa(query[:, :, own], keys, values, attn_mask=allowed, scale=scaling, enable_gqa=gqa))
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous()


def has_linear_head(model: Any) -> bool:
    """Whether ``model`` is a body followed by one linear output head, which
    :func:`float32_head` can apply on its own (no logit soft-cap or scale after it)."""
    import torch

    config = model.config
    if not isinstance(model.get_output_embeddings(), torch.nn.Linear) or model.base_model is model:
        return False
    return not (getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None))


def float32_head(model: Any) -> Callable[[Any], Any] | None:
    """The model's output head applied in float32, whatever dtype its hidden states come in; None
    where the model is not :func:`has_linear_head` (no body apart from its head, or a logit
    soft-cap or scale): the model's own forward then computes the logits.

    Why: a judge computing in bfloat16 (its weights, or autocast) writes bfloat16 logits, which
    step by 1/8 to 1/4 at the sizes a small judge's logits take (16 to 64): as coarse as the
    difference between the ratings of two answers, so verdicts turned on the rounding. Only the
    prompts' last tokens go through the head, so its float32 product costs next to nothing."""
    import torch

    if not has_linear_head(model):
        return None
    head = model.get_output_embeddings()
    weight = head.weight.float()
    bias = None if head.bias is None else head.bias.float()

    def apply(hidden: Any) -> Any:
        with torch.autocast(hidden.device.type, enabled=False):
            return torch.nn.functional.linear(hidden.float(), weight, bias)

    return apply


def packed_last_logits(model: Any, token_ids: Sequence[Sequence[int]], budget: int, on_row: Callable[[Any, PackedRow], None]) -> None:
    """Run the packed rows through ``model`` (switched to st-eval's CPU attention, which hands
    ``prefix_tree`` to :func:`prefix_tree_attention`) and call ``on_row(logits, row)`` with each
    row's float32 logits at its prompts' last tokens (through :func:`float32_head` where it
    applies), in the order of ``row.prompts``."""
    import torch

    head = float32_head(model)
    for row in pack_prefix_tree(token_ids, budget):
        inputs = {
            "input_ids": torch.tensor([row.tokens], device=model.device),
            "position_ids": torch.tensor([row.positions], device=model.device),
            "prefix_tree": row.segments,
        }
        if head is None:
            logits = model(**inputs, logits_to_keep=torch.tensor(row.ends, device=model.device)).logits[0]
        else:
            logits = head(model.base_model(**inputs).last_hidden_state[0, row.ends])
        on_row(logits.float(), row)


__all__ = ["PackedRow", "Segment", "float32_head", "has_linear_head", "pack_prefix_tree", "packed_last_logits", "prefix_tree_attention"]
