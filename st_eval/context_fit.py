"""Pairs longer than the judge's context window: shortened to fit, or skipped, never a hang.

An engine that knows its model's context window and can count prompt tokens
(``Engine.context_window``, ``Engine.prompt_tokens``) lets the judge check every prompt before
it is sent. A prompt that does not leave room for the generation budget is handled by the
declared policy (``too_long``):

* ``shorten`` (default): every answer text of the pair (responses and multi-turn answers) is cut
  from the middle, around a visible ``[...]`` marker (``prompt.shorten_middle``), to the longest
  length at which all of the pair's prompts fit (found by bisection); the judgment is marked
  ``shortened`` and counted in summaries and judge cards. When even short answers do not fit
  (the request alone is too long), the pair is skipped.
* ``skip``: the pair is not sent; its judgment is invalid and says why.

A prompt whose UTF-8 size (plus a margin for the chat template) is within the window is taken
to fit without counting: a token of a byte-level or byte-fallback tokenizer covers at least
one byte, so it cannot have more tokens than bytes. An engine that knows its window but cannot
count (a server that reports ``max_model_len``, no local tokenizer) is judged by that bound,
which shortens more than needed but never sends a prompt the server must refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from st_eval.engines.base import ChatPrompt, Engine
from st_eval.errors import InputError
from st_eval.prompt import shorten_middle
from st_eval.records import Pair

POLICIES = ("shorten", "skip")
#: bytes allowed for a chat template's own text around the messages
CHAT_TEMPLATE_MARGIN = 512
#: the shortest answer length the bisection tries before the pair is skipped
SHORTEST_ANSWER = 64


@dataclass(frozen=True)
class Fitted:
    """A pair as it will be judged: ``pair`` (maybe shortened), or ``skipped`` with the reason."""

    pair: Pair
    shortened: bool = False
    skipped: str | None = None


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise InputError(f"--too-long must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy


def fit_pairs(
    pairs: Sequence[Pair], prompts_of: Callable[[Pair], list[ChatPrompt]], engine: Engine, new_tokens: int, policy: str = "shorten"
) -> list[Fitted]:
    """Each pair as it will be judged, so that every prompt of it leaves ``new_tokens`` free."""
    window = engine.context_window
    if window is None:
        return [Fitted(pair) for pair in pairs]
    limit = window - new_tokens
    if limit <= 0:
        raise InputError(f"the generation budget ({new_tokens} tokens) leaves no room for a prompt in the judge's context window ({window} tokens)")

    def longest(pair: Pair) -> int:
        prompts = prompts_of(pair)
        if all(fits_by_size(p, limit) for p in prompts):
            return 0
        counted = engine.prompt_tokens(prompts)
        return max(counted if counted is not None else [_size(p) + CHAT_TEMPLATE_MARGIN for p in prompts])

    fitted = []
    for pair in pairs:
        tokens = longest(pair)
        if tokens <= limit:
            fitted.append(Fitted(pair))
        elif policy == "skip":
            fitted.append(Fitted(pair, skipped=f"prompt of {tokens} tokens; the judge's context window leaves {limit} for it (--too-long skip)"))
        else:
            fitted.append(_shorten(pair, lambda p: longest(p) <= limit, tokens, limit))
    return fitted


def _shorten(pair: Pair, fits: Callable[[Pair], bool], tokens: int, limit: int) -> Fitted:
    """The pair with its answers cut to the longest length that fits (bisection over characters)."""
    texts = [pair.response_a, pair.response_b, *(pair.turns_a or []), *(pair.turns_b or [])]
    low, high = SHORTEST_ANSWER, max(len(t) for t in texts)
    if not fits(_cut(pair, low)):
        return Fitted(pair, skipped=f"prompt of {tokens} tokens does not fit the {limit} the context window leaves, even with answers cut to {low} characters")
    while low < high:
        middle = (low + high + 1) // 2
        if fits(_cut(pair, middle)):
            low = middle
        else:
            high = middle - 1
    return Fitted(_cut(pair, low), shortened=True)


def _cut(pair: Pair, limit: int) -> Pair:
    def cut(turns: list[str] | None) -> list[str] | None:
        return [shorten_middle(t, limit) for t in turns] if turns is not None else None

    return replace(
        pair, response_a=shorten_middle(pair.response_a, limit), response_b=shorten_middle(pair.response_b, limit),
        turns_a=cut(pair.turns_a), turns_b=cut(pair.turns_b),
    )


def _size(prompt: ChatPrompt) -> int:
    return sum(len(m.get("content", "").encode("utf-8")) for m in prompt)


def fits_by_size(prompt: ChatPrompt, limit: int) -> bool:
    """Whether ``prompt`` surely fits in ``limit`` tokens without counting them: its UTF-8 size
    with a margin for the chat template bounds its token count (see the module docstring)."""
    return _size(prompt) + CHAT_TEMPLATE_MARGIN <= limit


__all__ = ["POLICIES", "Fitted", "check_policy", "fit_pairs", "fits_by_size"]
