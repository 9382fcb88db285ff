"""OpenAI-compatible chat engine: vLLM serve, llama.cpp server, TGI, ``st-eval serve``, OpenAI.

Requests run concurrently (bounded), each with a timeout, and are retried with exponential
backoff. ``base_url`` may name several servers (a list, or comma-separated URLs): requests go to
the least-loaded healthy server, and a request that fails on one server is retried on another,
so one slow or dead replica does not stop a run.

The API key comes from ``api_key`` or ``$OPENAI_API_KEY`` (a placeholder when unset, which local
servers accept). It is never logged, shown in ``repr`` or put in an error message.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig, add_token_logprob, continues, cut_at_stop
from st_eval.errors import EngineError
from st_eval.progress import sample_done

PLACEHOLDER_KEY = "st-eval-no-key"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def parse_base_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """Server URLs from a list or a comma-separated string (default ``$OPENAI_BASE_URL``).

    A URL without a path gets ``/v1`` appended, so ``http://host:8000`` works like
    ``http://host:8000/v1``.
    """
    if base_url is None:
        base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    items = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise EngineError(f"base_url {url!r}: expected http(s)://host[:port][/v1]")
        urls.append(url if parts.path else url + "/v1")
    if not urls:
        raise EngineError("base_url names no server")
    return urls


@dataclass
class _Server:
    """One server of the pool and what the scheduler knows about it."""

    url: str
    in_flight: int = 0
    failures: int = 0
    down_until: float = 0.0
    reported_model: str | None = None
    #: the context window the server reports for the model (vLLM and st-eval serve: max_model_len)
    context: int | None = None
    client: Any = field(default=None, repr=False)


class MalformedResponse(Exception):
    """A server answered 200 with something that is not a usable chat completion."""


def _check_completion(response: Any) -> None:
    """Raise :class:`MalformedResponse` unless ``response`` holds choices with a message."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse(f"no choices in the answer ({type(response).__name__})")
    for choice in choices:
        if getattr(choice, "message", None) is None or not isinstance(getattr(choice, "index", None), int):
            raise MalformedResponse("a choice without a message or index")


class OpenAIEngine(Engine):
    """Chat completions from one or more OpenAI-compatible servers.

    model: the model name to request; default the first model the server lists.
    base_url: URL, list of URLs or comma-separated URLs (default ``$OPENAI_BASE_URL``).
    api_key: default ``$OPENAI_API_KEY``, else a placeholder for local servers.
    concurrency: requests in flight at once, over all servers.
    max_retries: retries of a failed request (connection errors, timeouts, 408/409/429/5xx,
        malformed answers), on another server when the pool has one.
    timeout: seconds per request.
    backoff: first retry delay in seconds; doubled at each retry (with jitter), capped at 30 s.
    progress: show a progress bar over requests.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        concurrency: int = 16,
        max_retries: int = 4,
        timeout: float = 300.0,
        backoff: float = 0.5,
        progress: bool = False,
    ) -> None:
        if concurrency < 1:
            raise EngineError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise EngineError(f"max_retries must be >= 0, got {max_retries}")
        self.base_urls = parse_base_urls(base_url)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self.progress = progress
        self.__key = api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY
        self._servers = [_Server(url) for url in self.base_urls]
        self._turn = 0
        super().__init__(self._run(self._discover(model)))

    def __repr__(self) -> str:
        return f"OpenAIEngine(model={self.model!r}, base_url={self.base_urls!r})"

    @property
    def identity(self) -> str:
        """Engine, requested model and the model names the servers report (e.g. a snapshot)."""
        reported = sorted({s.reported_model for s in self._servers if s.reported_model})
        return f"{self.name}:{self.model}@{'|'.join(reported) or '?'}"

    def _scrub(self, text: str) -> str:
        return text.replace(self.__key, "***") if self.__key != PLACEHOLDER_KEY else text

    # -- event loop plumbing ---------------------------------------------------------------------

    def _run(self, coroutine):
        """Run a coroutine to completion, also when the caller already runs an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = asyncio.run(coroutine)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _open_clients(self) -> None:
        from openai import AsyncOpenAI

        for server in self._servers:
            # Retries are ours (they can move to another server), so the client's are off.
            server.client = AsyncOpenAI(base_url=server.url, api_key=self.__key, max_retries=0, timeout=self.timeout)

    async def _close_clients(self) -> None:
        for server in self._servers:
            if server.client is not None:
                await server.client.close()
                server.client = None

    # -- discovery -----------------------------------------------------------------------------

    async def _discover(self, model: str | None) -> str:
        """Ask each server which models it serves; pick the default model; record reported names."""
        from openai import NotFoundError

        self._open_clients()
        errors = []
        try:
            for server in self._servers:
                try:
                    listed = [m async for m in server.client.models.list()]
                except NotFoundError:
                    continue  # up, but without a model list: only a named model can be used
                except Exception as exc:
                    errors.append(f"{server.url}: {self._describe(exc)}")
                    server.down_until = time.monotonic() + self.backoff
                    continue
                chosen = model or (listed[0].id if listed else None)
                entry = next((m for m in listed if m.id == chosen), None)
                if entry is not None:
                    window = getattr(entry, "max_model_len", None)
                    server.context = window if isinstance(window, int) and window > 0 else None
                    root = getattr(entry, "root", None)
                    server.reported_model = f"{entry.id}({root})" if root and root != entry.id else entry.id
                model = chosen
        finally:
            await self._close_clients()
        if model is None:
            detail = "; ".join(errors) or "no models listed"
            raise EngineError(f"openai engine: no model given and none could be listed ({detail})")
        if len(errors) == len(self._servers):
            raise EngineError(f"openai engine: no server answered: {'; '.join(errors)}")
        return model

    # -- generation ----------------------------------------------------------------------------

    @property
    def context_window(self) -> int | None:
        """The smallest ``max_model_len`` the servers report (None when none reports one)."""
        windows = [s.context for s in self._servers if s.context]
        return min(windows) if windows else None

    def generate(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> list[list[str]]:
        sampling = sampling or SamplingConfig()
        if not prompts:
            return []
        return self._run(self._generate(list(prompts), n, sampling))

    async def _generate(self, prompts: list[ChatPrompt], n: int, sampling: SamplingConfig) -> list[list[str]]:
        self._open_clients()
        limit = asyncio.Semaphore(self.concurrency)
        bar = tqdm(total=len(prompts), desc="requests", unit="prompt", disable=not self.progress)
        wanted = 1 if sampling.greedy else n

        async def one(prompt: ChatPrompt) -> list[str]:
            texts: list[str] = []
            # A server may return fewer choices than asked (llama.cpp returns one): ask again
            # for the rest, with a shifted seed so the extra samples differ.
            while len(texts) < wanted:
                async with limit:
                    got = await self._complete(prompt, wanted - len(texts), sampling, seed_offset=len(texts))
                if not got:
                    raise EngineError(f"openai engine: {self.model!r} returned no choices")
                texts.extend(got)
            bar.update(1)
            sample_done(n)
            texts = texts[:wanted]
            return texts * n if sampling.greedy else texts

        try:
            return list(await asyncio.gather(*(one(p) for p in prompts)))
        finally:
            bar.close()
            await self._close_clients()

    async def _complete(self, prompt: ChatPrompt, n: int, sampling: SamplingConfig, seed_offset: int) -> list[str]:
        """One chat completion request; returns its choices' texts, cut at the stop strings."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": prompt,
            "n": n,
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed + seed_offset,
        }
        if not sampling.greedy:
            request["top_p"] = sampling.top_p
        if continues(prompt):
            # The chat-template flags of vLLM-style servers (and st-eval serve): continue the
            # final assistant message instead of opening a new one.
            request["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
        if sampling.stop:
            # The OpenAI API takes at most 4 stop sequences; the rest are applied to the text here.
            request["stop"] = list(sampling.stop)[:4]
        response = await self._send(request)
        choices = sorted(response.choices, key=lambda c: c.index)
        return [cut_at_stop(c.message.content or "", sampling.stop) for c in choices]

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        """One token per prompt with ``logprobs=true, top_logprobs=top_k`` (the API allows up to 20
        and returns no others, so ``include`` adds nothing)."""
        if not prompts:
            return []
        return self._run(self._all_logprobs(list(prompts), top_k))

    async def _all_logprobs(self, prompts: list[ChatPrompt], top_k: int) -> list[dict[str, float]]:
        self._open_clients()
        limit = asyncio.Semaphore(self.concurrency)

        async def one(prompt: ChatPrompt) -> dict[str, float]:
            request = {
                "model": self.model, "messages": prompt, "n": 1, "temperature": 0.0, "max_tokens": 1,
                "logprobs": True, "top_logprobs": top_k,
            }
            async with limit:
                response = await self._send(request)
            content = response.choices[0].logprobs.content if response.choices and response.choices[0].logprobs else None
            if not content:
                raise EngineError(f"openai engine: {self.model!r} returned no token log-probabilities (the server must support logprobs)")
            top: dict[str, float] = {}
            for entry in content[0].top_logprobs or []:
                add_token_logprob(top, entry.token, float(entry.logprob))
            return top

        try:
            return list(await asyncio.gather(*(one(p) for p in prompts)))
        finally:
            await self._close_clients()

    async def _send(self, request: dict[str, Any]):
        """One chat completion request, retried with backoff on the least-loaded healthy server.

        Transient, so retried: connection errors and resets (also mid-body), timeouts, 408/409/429
        and 5xx answers, and answers that are not a chat completion (a body cut short, not JSON,
        not UTF-8, or without choices), as overloaded servers and proxies send. Other 4xx answers
        are the request's fault and fail at once. After the last attempt the error names the
        server and what failed.
        """
        import httpx
        from openai import APIConnectionError, APIResponseValidationError, APIStatusError, APITimeoutError

        last_error = ""
        for attempt in range(self.max_retries + 1):
            server = self._pick()
            server.in_flight += 1
            try:
                response = await server.client.chat.completions.create(**request)
                _check_completion(response)
            except (APIConnectionError, APITimeoutError, httpx.TransportError) as exc:
                last_error = f"{server.url}: {self._describe(exc)}"
            except APIStatusError as exc:
                if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    raise EngineError(f"openai engine: {server.url}: {self._describe(exc)}") from None
                last_error = f"{server.url}: {self._describe(exc)}"
            except (APIResponseValidationError, ValueError, MalformedResponse) as exc:  # JSON and UTF-8 decode errors are ValueErrors
                last_error = f"{server.url}: malformed response ({self._describe(exc)})"
            else:
                server.failures = 0
                if response.model and server.reported_model is None:
                    server.reported_model = response.model
                return response
            finally:
                server.in_flight -= 1
            server.failures += 1
            delay = min(30.0, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
            server.down_until = time.monotonic() + delay * server.failures
            if attempt < self.max_retries:
                await asyncio.sleep(delay if len(self._servers) == 1 else delay / 4)
        raise EngineError(f"openai engine: request failed after {self.max_retries + 1} attempts; last error: {last_error}")

    def _pick(self) -> _Server:
        """The healthy server with the fewest requests in flight (round-robin among equals)."""
        now = time.monotonic()
        healthy = [s for s in self._servers if s.down_until <= now] or sorted(self._servers, key=lambda s: s.down_until)[:1]
        self._turn += 1
        start = self._turn % len(healthy)
        rotated = healthy[start:] + healthy[:start]
        return min(rotated, key=lambda s: s.in_flight)

    def _describe(self, exc: Exception) -> str:
        return self._scrub(f"{type(exc).__name__}: {exc}")
