"""Pair source ``weak_policy``: the loser is the generator's own answer, drawn as a weak policy.

Real bad answers are written by weaker models. The generator (the seed judge's model by
default) writes one, on purpose worse than it can: sampled hot (``temperature``, default 1.2)
with a cut budget (``max_new_tokens``, default 48), so it wanders, errs and stops early. The
winner is the request's own answer (a human one, or the generator's careful greedy answer).
Unlike the other sources, this one runs the model: one short generation per drawn request,
resumable like every generation stage.
"""

from __future__ import annotations

from collections.abc import Sequence

from st_eval.engines import SamplingConfig
from st_eval.errors import InputError
from st_eval.records import Pair
from st_eval.training.instruction_pool import normalize
from st_eval.training.pair_sources import Side, contrast_pair

NAME = "weak_policy"


class WeakPolicySource:
    """The generator's hot, short answer to each drawn request, against the request's own answer."""

    name = NAME

    def __init__(self, temperature: float = 1.2, max_new_tokens: int = 48) -> None:
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens

    def pairs(self, side: Side, chosen: Sequence[int]) -> tuple[list[Pair], dict[str, int]]:
        if not chosen:
            return [], {}
        if side.generate is None:
            raise InputError("synthesis source 'weak_policy' needs a generator model")
        items = [side.items[i] for i in chosen]
        sampling = SamplingConfig(temperature=self.temperature, top_p=1.0, max_new_tokens=self.max_new_tokens, seed=side.seed)
        outputs = side.generate([[{"role": "user", "content": item.text}] for item in items], sampling, f"{NAME}-{side.name}")
        pairs: list[Pair] = []
        stats = {"empty_or_same": 0}
        for item, loser in zip(items, outputs):
            loser = loser.strip()
            if not loser or normalize(loser) == normalize(item.answer or ""):
                stats["empty_or_same"] += 1
                continue
            pairs.append(contrast_pair(item, item.answer or "", loser, NAME, {}, side.seed, f"{item.id}~{NAME}"))
        return pairs, stats


__all__ = ["WeakPolicySource"]
