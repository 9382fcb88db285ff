"""Typed records that flow through st-eval: a pair goes in, a judgment comes out.

Every record serializes to a flat JSON object (one JSONL line) so that any artifact can be
loaded back with ``datasets.load_dataset("json", data_files=...)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
Verdict = Literal["A", "B", "tie"]
Order = Literal["given", "swapped"]


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    content: str


@dataclass
class Pair:
    """An instruction (or conversation) with two candidate responses.

    ``conversation`` holds the turns *before* the responses; the last one is the user turn the
    responses answer. For multi-turn judging, ``response_a``/``response_b`` may instead be full
    assistant turn lists: ``turns_a``/``turns_b`` carry one answer per user turn.
    """

    id: str
    conversation: list[Message]
    response_a: str
    response_b: str
    reference: str | None = None
    label: Verdict | None = None
    turns_a: list[str] | None = None
    turns_b: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def instruction(self) -> str:
        """The last user turn: what the responses answer."""
        users = [m.content for m in self.conversation if m.role == "user"]
        return users[-1] if users else ""

    @property
    def is_multi_turn(self) -> bool:
        return sum(1 for m in self.conversation if m.role == "user") > 1

    def swapped(self) -> Pair:
        """The same pair with A and B exchanged (labels follow their responses)."""
        flipped: Verdict | None = {"A": "B", "B": "A"}.get(self.label or "", self.label)  # type: ignore[assignment]
        return Pair(
            id=self.id,
            conversation=self.conversation,
            response_a=self.response_b,
            response_b=self.response_a,
            reference=self.reference,
            label=flipped,
            turns_a=self.turns_b,
            turns_b=self.turns_a,
            metadata=self.metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["conversation"] = [asdict(m) for m in self.conversation]
        return data


@dataclass
class OrderResult:
    """What the judge said in one presentation order, mapped back to the pair's own labels."""

    order: Order
    verdict: Verdict | None
    votes: dict[str, int]
    confidence: float
    rationale: str
    raw: list[str]
    #: samples whose verdict the verdict step wrote (the judge reasoned but did not conclude)
    forced: int = 0

    @property
    def invalid(self) -> int:
        return self.votes.get("invalid", 0)


@dataclass
class Judgment:
    """The judge's decision on one pair, with everything needed to audit it.

    ``verdict`` is in the pair's own labels (``A`` means ``response_a``), ``None`` when no
    sample could be parsed. With both orders, a verdict that flips with the order is a ``tie``
    and ``consistent`` is False. A rating judge rates each answer alone, so its orders share
    the same two ``ratings`` and always agree.
    """

    pair_id: str
    verdict: Verdict | None
    confidence: float
    rationale: str
    orders: list[OrderResult]
    consistent: bool | None
    engine: str
    model: str
    template: str
    sampling: dict[str, Any]
    label: Verdict | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: rating judges: each answer's rating in the pair's own labels (None: no valid rating)
    ratings: dict[str, float | None] | None = None
    #: the judge read a shortened text of the pair (a template bound on what it reads)
    shortened: bool = False

    @property
    def correct(self) -> bool | None:
        if self.label is None:
            return None
        return self.verdict == self.label

    @property
    def votes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for result in self.orders:
            for key, count in result.votes.items():
                total[key] = total.get(key, 0) + count
        return total

    @property
    def raw(self) -> list[str]:
        return [text for result in self.orders for text in result.raw]

    def order(self, name: Order) -> OrderResult | None:
        return next((r for r in self.orders if r.order == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["votes"] = self.votes
        data["correct"] = self.correct
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgment:
        fields = {k: v for k, v in data.items() if k not in ("votes", "correct")}
        fields["orders"] = [OrderResult(**o) for o in data.get("orders", [])]
        return cls(**fields)
