"""Model provider ``st_judge/<model>``: any st-eval engine served to inspect-ai.

``inspect eval ... --model st_judge/smollm2-135m`` (or ``--model-role grader=st_judge/...``)
generates with an st-eval engine, and answers one-token requests for ``logprobs`` with the
engine's top next-token log-probabilities (what rating judges read) (``-M engine=hf|vllm|openai``, default ``hf``). inspect-ai
calls ``generate`` once per message list, concurrently for all running samples; judging one
prompt at a time would waste the engine, so requests are queued and a worker thread hands them
to the engine in batches. Engines (and so weights) are cached per process: every provider
instance with the same engine, model and options shares one engine and one batch queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from st_eval.engines import ChatPrompt, Engine, SamplingConfig, make_engine
from st_eval.errors import InputError

#: generation budget when neither the task nor the user sets ``max_tokens``.
DEFAULT_MAX_TOKENS = SamplingConfig().max_new_tokens


@dataclass
class _Request:
    prompt: ChatPrompt
    n: int
    sampling: SamplingConfig
    future: Future = field(default_factory=Future)
    #: set for a log-probability request (rating judges): how many top next tokens to return
    top_logprobs: int | None = None


class EngineBatcher:
    """Collects concurrent requests for one engine and generates them in batches.

    A daemon worker thread waits for the first request, keeps collecting until ``batch_size``
    requests are queued or none arrived for ``wait`` seconds, then calls ``engine.generate``
    once per group of requests that share (n, sampling). Running the engine in this thread keeps
    inspect-ai's event loop free, and one worker per engine means engine calls never overlap.
    """

    def __init__(self, engine: Engine, batch_size: int, wait: float) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.wait = wait
        self._queue: list[_Request] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None

    def submit(self, prompt: ChatPrompt, n: int, sampling: SamplingConfig, top_logprobs: int | None = None) -> Future:
        request = _Request(prompt, n, sampling, top_logprobs=top_logprobs)
        with self._ready:
            self._queue.append(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="st-judge-batcher", daemon=True)
                self._worker.start()
            self._ready.notify()
        return request.future

    def _run(self) -> None:
        while True:
            for group in self._take():
                self._generate(group)

    def _take(self) -> list[list[_Request]]:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            seen = len(self._queue)
            deadline = time.monotonic() + self.wait
            while len(self._queue) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
                if len(self._queue) > seen:  # more arrived: give the rest a moment too
                    seen = len(self._queue)
                    deadline = time.monotonic() + self.wait
            taken, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
        groups: dict[Hashable, list[_Request]] = {}
        for request in taken:
            groups.setdefault((request.n, request.sampling, request.top_logprobs), []).append(request)
        return list(groups.values())

    def _generate(self, group: list[_Request]) -> None:
        try:
            prompts = [r.prompt for r in group]
            if group[0].top_logprobs is not None:
                outputs = self.engine.next_token_logprobs(prompts, group[0].top_logprobs)
            else:
                outputs = self.engine.generate(prompts, n=group[0].n, sampling=group[0].sampling)
        except Exception as exc:  # every waiting sample must learn about the failure
            for request in group:
                request.future.set_exception(exc)
            return
        for request, samples in zip(group, outputs):
            request.future.set_result(samples)


_BATCHERS: dict[Hashable, EngineBatcher] = {}
_BATCHERS_LOCK = threading.Lock()


def shared_batcher(engine: str, model: str, batch_size: int, wait: float, options: dict[str, Any]) -> EngineBatcher:
    """The process-wide batcher (and engine) for these settings, created on first use."""
    key = (engine, model, batch_size, wait, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _BATCHERS_LOCK:
        if key not in _BATCHERS:
            if engine == "hf":
                options = {"batch_size": batch_size, **options}
            _BATCHERS[key] = EngineBatcher(make_engine(engine, model, **options), batch_size, wait)
        return _BATCHERS[key]


def sampling_from_config(config: GenerateConfig) -> tuple[int, SamplingConfig]:
    """(samples, decoding settings) for an inspect-ai GenerateConfig; unset fields mean greedy."""
    sampling = SamplingConfig(
        temperature=config.temperature or 0.0,
        top_p=config.top_p if config.top_p is not None else 1.0,
        max_new_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
        seed=config.seed or 0,
        stop=tuple(config.stop_seqs or ()),
    )
    return config.num_choices or 1, sampling


def to_chat_prompt(messages: list[ChatMessage]) -> ChatPrompt:
    """inspect-ai messages as the plain chat messages st-eval engines take."""
    prompt = []
    for message in messages:
        if message.role not in ("system", "user", "assistant"):
            raise InputError(f"st_judge models take system, user and assistant messages, not {message.role!r}")
        prompt.append({"role": message.role, "content": message.text})
    return prompt


#: the scheme of the engine identity st_judge reports as its base URL (not a server address)
_IDENTITY_URL = "st-judge://"


@modelapi(name="st_judge")
class StJudgeAPI(ModelAPI):
    """An st-eval engine behind inspect-ai's model interface.

    Model args (``-M key=value``): ``engine`` (hf, vllm, openai; default hf), ``batch_size``
    (requests per engine call and inspect-ai's default max_connections; default 16),
    ``batch_wait`` (seconds to wait for more requests before a batch starts; default 0.05);
    anything else goes to the engine (e.g. ``device``, ``dtype``, ``tensor_parallel_size``).
    ``--model-base-url`` is passed to the openai engine as ``base_url``.
    """

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),
        engine: str = "hf",
        batch_size: int = 16,
        batch_wait: float = 0.05,
        **engine_options: Any,
    ) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        if int(batch_size) < 1:
            raise InputError(f"st_judge: batch_size must be >= 1, got {batch_size}")
        if base_url and base_url.startswith(_IDENTITY_URL):
            # a model rebuilt from a log (``inspect score``) gets back the identity set below
            base_url = None
        if base_url:
            engine_options["base_url"] = base_url
        self.engine_name = engine
        self.batch_size = int(batch_size)
        self.batcher = shared_batcher(engine, model_name, self.batch_size, float(batch_wait), engine_options)
        if not base_url:
            # Inspect keys its response cache on the model name, config, input and base URL, not on
            # -M options: the engine identity (weights fingerprint, dtype) keeps another producer's
            # cached answers out, as st-eval's own cache does
            self.base_url = f"{_IDENTITY_URL}{self.batcher.engine.identity}"

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if tools:
            raise InputError("st_judge models do not call tools; remove the tools from the task")
        n, sampling = sampling_from_config(config)
        started = time.monotonic()
        if config.logprobs and config.top_logprobs and sampling.max_new_tokens == 1:
            top = await _wait(self.batcher.submit(to_chat_prompt(input), 1, sampling, top_logprobs=int(config.top_logprobs)))
            return ModelOutput(model=self.model_name, choices=[_logprobs_choice(top, self.model_name)], time=time.monotonic() - started)
        samples = await _wait(self.batcher.submit(to_chat_prompt(input), n, sampling))
        return ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(content=text, model=self.model_name, source="generate"),
                    stop_reason="stop",
                )
                for text in samples
            ],
            time=time.monotonic() - started,
        )

    async def count_text_tokens(self, text: str) -> int:
        """Count with the engine's own tokenizer when it has one (inspect-ai's default needs
        tiktoken files from the network)."""
        tokenizer = getattr(self.batcher.engine, "tokenizer", None)
        if tokenizer is None:
            return await super().count_text_tokens(text)
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    def max_tokens(self) -> int | None:
        return DEFAULT_MAX_TOKENS

    def max_connections(self) -> int:
        return self.batch_size

    def connection_key(self) -> str:
        return f"{self.engine_name}:{self.model_name}"


def _logprobs_choice(top: dict[str, float], model: str) -> ChatCompletionChoice:
    """A one-token answer (the likeliest token) carrying the top next tokens' log-probabilities."""
    from inspect_ai.model import Logprob, Logprobs, TopLogprob

    ranked = sorted(top.items(), key=lambda item: item[1], reverse=True)
    token, logprob = ranked[0] if ranked else ("", float("-inf"))
    alternatives = [TopLogprob(token=t, logprob=lp) for t, lp in ranked]
    return ChatCompletionChoice(
        message=ChatMessageAssistant(content=token, model=model, source="generate"),
        stop_reason="max_tokens",
        logprobs=Logprobs(content=[Logprob(token=token, logprob=logprob, top_logprobs=alternatives)]),
    )


async def _wait(future: Future) -> Any:
    """Await a thread's future without blocking the event loop (asyncio or trio)."""
    import sniffio

    if sniffio.current_async_library() == "asyncio":
        import asyncio

        return await asyncio.wrap_future(future)
    import anyio

    while not future.done():
        await anyio.sleep(0.01)
    return future.result()
