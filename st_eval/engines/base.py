"""The one engine protocol: ``generate(prompts, n, sampling) -> outputs``.

Callers never branch on the engine. A prompt is a list of chat messages; each engine applies
its model's chat template (or sends the messages to a server). A prompt whose last message is
the assistant's is *continued*: the engine writes the rest of that message (prefill), which the
judge's verdict step uses. Every engine returns, for each
prompt, exactly ``n`` strings, already cut at the first stop sequence (the stop text itself
excluded), the same way OpenAI-compatible servers do.

Rating judges need one more thing: ``next_token_logprobs(prompts, top_k, include)``, the ``top_k``
most likely first tokens of the answer with their log-probabilities (what OpenAI-compatible
servers return for ``max_tokens=1, logprobs=true, top_logprobs=k``), plus, where the engine reads
every token's probability (hf), the tokens whose text is one of ``include`` (a rating template's
choices): then a choice that falls out of the top ``k`` still counts with its own probability.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from st_eval.errors import EngineError

ChatPrompt = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings shared by all engines.

    temperature: 0 means greedy decoding (then all ``n`` samples are identical, so engines
        may compute one and repeat it).
    top_p: nucleus sampling mass, used when temperature > 0.
    max_new_tokens: generation budget per sample.
    seed: base seed; sample ``i`` of a prompt is reproducible from (seed, prompt, i) where the
        engine supports it.
    stop: strings that end a sample; the output is cut before the first one.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


def continues(prompt: ChatPrompt) -> bool:
    """Whether the prompt ends with an assistant message that the engine should continue."""
    return bool(prompt) and prompt[-1].get("role") == "assistant"


class Engine(ABC):
    """A text generator behind the common protocol."""

    #: short engine name: ``hf``, ``vllm``, ``openai``
    name: str = ""

    def __init__(self, model: str) -> None:
        self.model = model

    @property
    def identity(self) -> str:
        """What produced an output (engine, model, revision): recorded and used in cache keys."""
        return f"{self.name}:{self.model}"

    @property
    def dtype(self) -> str | None:
        """The dtype the judge computes in, where the engine knows it (judge cards and benchmarks
        record it: a verdict can change with it)."""
        return None

    @abstractmethod
    def generate(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> list[list[str]]:
        """Return ``n`` completions for each prompt, in prompt order."""

    @property
    def context_window(self) -> int | None:
        """Most tokens (prompt and generated together) the judge model takes; None when this
        engine cannot tell (then prompts are sent as they are and the server decides)."""
        return None

    def prompt_tokens(self, prompts: Sequence[ChatPrompt]) -> list[int] | None:
        """How many tokens each prompt is as the model sees it; None when this engine cannot count."""
        return None

    def check_fits(self, lengths: Sequence[int], new_tokens: int) -> None:
        """Refuse prompts that do not fit the context window with ``new_tokens`` to generate,
        so a long input is an error naming its size rather than minutes of work or memory."""
        window = self.context_window
        for index, length in enumerate(lengths):
            if window is not None and length + new_tokens > window:
                raise EngineError(
                    f"{self.name} engine: prompt {index + 1} has {length} tokens; with {new_tokens} to generate it exceeds "
                    f"the judge's context window of {window} tokens (the judge shortens or skips such pairs: --too-long)"
                )

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        """For each prompt, the ``top_k`` most likely first tokens of the answer -> log-probability.

        Token texts are decoded as the model wrote them (a leading space included). ``include``:
        texts (compared ignoring surrounding whitespace and case, as ratings read them) whose
        tokens are added outside the top ``k`` by engines that see the whole distribution
        (:attr:`reads_any_token`); the others return the top ``k`` alone. Engines that cannot
        report probabilities raise EngineError, so a rating judge fails clearly on them.
        """
        raise EngineError(f"the {self.name or type(self).__name__} engine cannot report token probabilities, which rating judges need")

    #: whether ``next_token_logprobs`` returns ``include``'s tokens outside the top ``k`` (an
    #: engine holding the whole next-token distribution); servers cap what they return at 20
    reads_any_token: bool = False

    #: prompts a caller should hand over per call, when more than its own habit: an engine that
    #: starts a cluster job per call (``ray_data.RayEngine``) wants whole waves of work per job.
    #: None: no preference (callers keep their own chunk sizes).
    call_size: int | None = None

    def generate_blocks(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> Iterator[tuple[list[int], list[list[str]]]]:
        """``generate`` as blocks of finished work: (indices into ``prompts``, their samples).

        Here one block once all is done; an engine that spreads prompts over workers yields each
        worker's block as it lands, so the generation cache stores it before the rest is done
        and a killed run loses only the blocks in flight.
        """
        yield list(range(len(prompts))), self.generate(prompts, n, sampling)

    def logprob_blocks(
        self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()
    ) -> Iterator[tuple[list[int], list[dict[str, float]]]]:
        """``next_token_logprobs`` as blocks of finished work, as :meth:`generate_blocks`."""
        yield list(range(len(prompts))), self.next_token_logprobs(prompts, top_k, include)

    def close(self) -> None:
        """Release the engine's resources (weights, worker processes, connections)."""


def add_token_logprob(top: dict[str, float], text: str, logprob: float) -> None:
    """Record one of the top next tokens; ids that decode to the same text add up (log-sum-exp)."""
    if text in top:
        high, low = max(top[text], logprob), min(top[text], logprob)
        top[text] = high + math.log1p(math.exp(low - high))
    else:
        top[text] = logprob


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` before the earliest stop sequence, as OpenAI-compatible servers do."""
    cut = len(text)
    for s in stop:
        if s:
            index = text.find(s)
            if index != -1:
                cut = min(cut, index)
    return text[:cut]
