"""``st-eval serve``: any st-eval engine behind an OpenAI-compatible HTTP API.

Serves ``/v1/chat/completions`` and ``/v1/models`` so that a trained judge (or the embedded one)
can be used by anything that speaks the OpenAI protocol, including st-eval's own ``openai``
engine pointed at one server or a pool of them. Concurrent requests with the same decoding
settings are batched into one ``engine.generate`` call. A request for one token with
``logprobs: true, top_logprobs: k`` (what rating judges send) is answered from
``engine.next_token_logprobs``, batched the same way.
"""

import asyncio
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from st_eval import cli_options as opt
from st_eval.context_fit import fits_by_size
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.errors import InputError, StEvalError


#: seconds a stopping server waits for requests in flight before it exits
SHUTDOWN_GRACE_SECONDS = 3


@dataclass
class ServeConfig:
    """How the server batches and what it promises.

    served_name: the model id clients send and ``/v1/models`` lists.
    api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
    max_batch: most prompts in one ``engine.generate`` call.
    batch_wait: seconds the first request of a batch waits for others to join it.
    max_n: most choices returned per request (clients ask again for the rest), bounding the
        work one request can ask for.
    max_tokens: generation budget when a request names none.
    """

    served_name: str
    api_key: str | None = None
    max_batch: int = 32
    batch_wait: float = 0.01
    max_n: int = 16
    max_tokens: int = 512


@dataclass
class _Request:
    prompt: ChatPrompt
    n: int
    sampling: SamplingConfig
    future: asyncio.Future
    #: set for a log-probability request: how many top next tokens to return
    top_logprobs: int | None = None

    @property
    def key(self) -> tuple:
        return (self.n, self.sampling, self.top_logprobs)


class Batcher:
    """Collects concurrent requests and runs them through the engine in batches, one at a time.

    Requests that arrive while the engine is busy wait in the queue and form the next batch;
    a batch holds requests with equal ``(n, sampling)`` so one generate call serves them all.
    """

    def __init__(self, engine: Engine, max_batch: int, batch_wait: float) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches run, for logs and tests

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def submit(self, prompt: ChatPrompt, n: int, sampling: SamplingConfig) -> list[str]:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(prompt, n, sampling, future))
        return await future

    async def submit_logprobs(self, prompt: ChatPrompt, top_k: int) -> dict[str, float]:
        """The top ``top_k`` next tokens of the answer to ``prompt`` with their log-probabilities."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(prompt, 1, SamplingConfig(max_new_tokens=1), future, top_logprobs=top_k))
        return await future

    async def _loop(self) -> None:
        pending: list[_Request] = []
        while True:
            if not pending:
                pending.append(await self._queue.get())
                await asyncio.sleep(self.batch_wait)
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            key = pending[0].key
            batch = [r for r in pending if r.key == key][: self.max_batch]
            taken = {id(r) for r in batch}
            pending = [r for r in pending if id(r) not in taken]
            self.batches.append(len(batch))
            prompts = [r.prompt for r in batch]
            try:
                if key[2] is not None:
                    outputs = await in_daemon_thread(self.engine.next_token_logprobs, prompts, key[2])
                else:
                    outputs = await in_daemon_thread(self.engine.generate, prompts, key[0], key[1])
            except Exception as exc:
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            for request, texts in zip(batch, outputs):
                if not request.future.done():
                    request.future.set_result(texts)


def in_daemon_thread(function: Callable[..., Any], *args: Any) -> asyncio.Future:
    """Run ``function(*args)`` in a daemon thread and await its result.

    Why not ``asyncio.to_thread``: its pool threads are joined when the interpreter exits, so a
    server stopped (SIGTERM) in the middle of a long generation would wait for it to finish. A
    daemon thread dies with the process.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any = None, error: BaseException | None = None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (function(*args), None)
        except BaseException as exc:  # handed to the awaiting request
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the server stopped meanwhile: nobody is waiting
            pass

    threading.Thread(target=work, daemon=True, name="st-eval-serve-engine").start()
    return future


def context_error(engine: Engine, prompt: ChatPrompt, new_tokens: int) -> str | None:
    """Why ``prompt`` cannot be served (longer than the context window with ``new_tokens`` to
    generate), in the words vLLM's server uses; None when it fits or the engine cannot tell."""
    window = engine.context_window
    if window is None:
        return None
    if fits_by_size(prompt, window - new_tokens):
        return None
    counted = engine.prompt_tokens([prompt])
    tokens = counted[0] if counted else sum(len(m.get("content", "").encode("utf-8")) for m in prompt)
    if tokens + new_tokens <= window:
        return None
    return (
        f"This model's maximum context length is {window} tokens. However, you requested {tokens + new_tokens} tokens "
        f"({tokens} in the messages, {new_tokens} in the completion). Please reduce the length of the messages or completion."
    )


def create_app(engine: Engine, config: ServeConfig):
    """The FastAPI application serving ``engine`` under ``config.served_name``.

    (This module has no ``from __future__ import annotations``: FastAPI reads the endpoints'
    annotations at run time, and ``Request`` is imported here, lazily.)
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    batcher = Batcher(engine, config.max_batch, config.batch_wait)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="st-eval serve", lifespan=lifespan)
    app.state.batcher = batcher

    def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if config.api_key is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given.encode(), config.api_key.encode()):
                return error(401, "invalid or missing API key", "authentication_error")
        return await call_next(request)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": config.served_name, "object": "model", "created": created, "owned_by": "st-eval", "root": engine.identity}
        if engine.context_window is not None:
            entry["max_model_len"] = engine.context_window  # as vLLM lists it, so clients can fit prompts
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return error(400, "request body is not valid JSON")
        try:
            prompt, n, sampling = parse_chat_request(body, config)
        except ValueError as exc:
            return error(400, str(exc))
        if body.get("model") not in (None, config.served_name):
            return error(404, f"model {body.get('model')!r} not found; this server serves {config.served_name!r}", "not_found_error")
        try:
            top_k = parse_logprobs_request(body, sampling)
        except ValueError as exc:
            return error(400, str(exc))
        too_long = await in_daemon_thread(context_error, engine, prompt, 1 if top_k is not None else sampling.max_new_tokens)
        if too_long:
            return error(400, too_long)
        if top_k is not None:
            try:
                top = await batcher.submit_logprobs(prompt, top_k)
            except StEvalError as exc:
                return error(400, str(exc))
            choices = [logprobs_choice(top, top_k)]
        else:
            texts = await batcher.submit(prompt, min(n, config.max_n), sampling)
            choices = [
                {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": _finish_reason(engine, text, sampling)}
                for i, text in enumerate(texts)
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": config.served_name,
            "choices": choices,
        }

    return app


def parse_chat_request(body: Any, config: ServeConfig) -> tuple[ChatPrompt, int, SamplingConfig]:
    """Validate an OpenAI chat request into (messages, n, sampling); ValueError names the field."""
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    if body.get("stream"):
        raise ValueError("field 'stream': streaming is not supported")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("field 'messages' must be a non-empty list")
    prompt = []
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"field 'messages[{index}]' must be {{role, content}}")
        prompt.append({"role": "system" if message["role"] == "developer" else message["role"], "content": content})
    n = 1 if body.get("n") is None else body["n"]
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    max_tokens = next(
        (body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None), config.max_tokens
    )
    try:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"field 'n' must be a positive integer, got {n!r}")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"field 'max_tokens' must be a positive integer, got {max_tokens!r}")
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ValueError("field 'stop' must be a string or a list of strings")
        temperature = body.get("temperature")
        top_p = body.get("top_p")
        sampling = SamplingConfig(
            temperature=1.0 if temperature is None else float(temperature),
            top_p=1.0 if top_p is None else float(top_p),
            max_new_tokens=int(max_tokens),
            seed=int(body.get("seed") or 0),  # None (not given) and 0 mean the same
            stop=tuple(stop),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    return prompt, n, sampling


def parse_logprobs_request(body: dict[str, Any], sampling: SamplingConfig) -> int | None:
    """How many top log-probabilities a request asks for (None: a plain generation request).

    Served for one-token requests only: rating judges read the first answer token, and that is
    what the engines compute without decoding."""
    if not body.get("logprobs"):
        return None
    top_k = body.get("top_logprobs") or 0
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 0 <= top_k <= 20:
        raise ValueError(f"field 'top_logprobs' must be an integer from 0 to 20, got {top_k!r}")
    if sampling.max_new_tokens != 1:
        raise ValueError("field 'logprobs': this server returns log-probabilities for one-token requests only (max_tokens: 1)")
    return max(top_k, 1)


def logprobs_choice(top: dict[str, float], top_k: int) -> dict[str, Any]:
    """An OpenAI chat choice for a one-token request: the likeliest token and its alternatives."""
    ranked = sorted(top.items(), key=lambda item: item[1], reverse=True)[:top_k]
    token, logprob = ranked[0] if ranked else ("", float("-inf"))
    alternatives = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in ranked]
    entry = {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")), "top_logprobs": alternatives}
    return {"index": 0, "message": {"role": "assistant", "content": token}, "logprobs": {"content": [entry]}, "finish_reason": "length"}


def _finish_reason(engine: Engine, text: str, sampling: SamplingConfig) -> str:
    """``length`` when the text used the whole budget (known when the engine has a tokenizer)."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        return "stop"
    used = len(tokenizer(text, add_special_tokens=False).input_ids)
    return "length" if used >= sampling.max_new_tokens else "stop"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), bound before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Listening now means clients that connect before the app is up wait in the backlog
    # instead of being refused.
    sock.listen(2048)
    return sock


def run_server(engine: Engine, config: ServeConfig, sockets: Sequence[socket.socket], log_level: str = "warning") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM)."""
    import uvicorn

    # A stop (Ctrl-C, SIGTERM) waits at most this long for requests in flight, then exits.
    server = uvicorn.Server(uvicorn.Config(create_app(engine, config), log_level=log_level, timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS))
    server.run(sockets=list(sockets))


def serve_command(
    engine: opt.EngineOpt = "hf",
    model: opt.ModelOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, help="Port to listen on (0: any free port).")] = 8000,
    served_model_name: Annotated[str | None, typer.Option("--served-model-name", help="Model id clients use (default: the --model value or 'st-eval-judge').")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="ST_EVAL_SERVE_API_KEY", help="Require this bearer key (default $ST_EVAL_SERVE_API_KEY; none).", show_default=False)] = None,
    batch_size: opt.BatchSizeOpt = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most prompts per engine call.")] = 32,
    batch_wait_ms: Annotated[float, typer.Option("--batch-wait-ms", min=0.0, help="How long a request waits for others to batch with.")] = 10.0,
    max_n: Annotated[int, typer.Option("--max-n", min=1, help="Most choices per request; clients ask again for more.")] = 16,
    base_url: opt.BaseUrlOpt = None,
    engine_arg: opt.EngineArgOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: warning, info, debug.")] = "info",
) -> None:
    """Serve a judge model over an OpenAI-compatible API ([bold]/v1/chat/completions[/bold], /v1/models)."""
    sock = bind(host, port)
    built = opt.build_engine(engine, model, batch_size=batch_size, base_url=base_url, engine_args=engine_arg)
    name = served_model_name or model or "st-eval-judge"
    shown_host = f"[{host}]" if ":" in host else host
    # One parseable line, flushed, so scripts (and tests) started with --port 0 learn the port.
    print(f"st-eval serve: {name} ({built.identity}) on http://{shown_host}:{sock.getsockname()[1]}/v1", flush=True)
    config = ServeConfig(
        served_name=name, api_key=api_key, max_batch=max_batch, batch_wait=batch_wait_ms / 1000, max_n=max_n
    )
    try:
        run_server(built, config, [sock], log_level=log_level)
    finally:
        built.close()
