"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for tests of st-eval's engines.

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` from an st-eval Engine given to
it (a stand-in judge in the tests, so answers are exact and repeatable), and fails a seeded
fraction of the completion requests the ways overloaded servers and proxies do:

* ``500``: an internal error; ``429``: rate limited (both with an OpenAI-style error body);
* ``drop``: the connection is closed without an answer;
* ``truncate``: HTTP 200 with a body cut in half (the JSON never closes);
* ``reset``: HTTP 200 with the full Content-Length announced, half the body sent, then closed;
* ``stall``: the answer comes after ``stall_seconds`` (longer than the client's timeout).

Which request fails, and how, is drawn from ``random.Random(seed)`` in arrival order, so a run is
repeatable given the same arrival order; ``counts`` records what was served.
"""

from __future__ import annotations

import http.server
import json
import random
import threading
import time
from collections import Counter
from typing import Any

from st_eval.engines.base import Engine, SamplingConfig

FAULTS = ("500", "429", "drop", "truncate", "reset", "stall")


class FaultServer(http.server.ThreadingHTTPServer):
    """Serve ``engine``'s answers; fail ``rate`` of completion requests, spread over ``faults``."""

    daemon_threads = True

    def __init__(self, engine: Engine, *, rate: float = 0.0, faults: tuple[str, ...] = FAULTS, seed: int = 0, stall_seconds: float = 3.0, delay: float = 0.0) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        self.engine = engine
        self.rate = rate
        self.faults = faults
        self.rng = random.Random(seed)
        self.stall_seconds = stall_seconds
        self.delay = delay
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        """A client that gave up on a stalled answer closes its end: not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def draw(self) -> str | None:
        """The fault for the next completion request, or None to answer it."""
        with self.lock:
            fault = self.rng.choice(self.faults) if self.rng.random() < self.rate else None
            self.counts[fault or "ok"] += 1
            return fault

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion from the engine, in the OpenAI schema."""
        sampling = SamplingConfig(temperature=float(body.get("temperature") or 0.0), max_new_tokens=int(body.get("max_tokens") or 512))
        with self.lock:  # one engine call at a time: stand-ins need not be thread-safe
            [texts] = self.engine.generate([body["messages"]], n=int(body.get("n") or 1), sampling=sampling)
        return {
            "id": "chatcmpl-fault-server", "object": "chat.completion", "created": int(time.time()), "model": self.engine.model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: bytes, *, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload) if length is None else length))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": self.server.engine.model, "object": "model"}]}).encode())
        else:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        fault = self.server.draw()
        if self.server.delay:
            time.sleep(self.server.delay)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault in ("500", "429"):
            self._send(int(fault), json.dumps({"error": {"message": f"injected {fault}", "type": "server_error"}}).encode())
            return
        if fault == "stall":
            time.sleep(self.server.stall_seconds)
        payload = json.dumps(self.server.complete(body)).encode()
        if fault == "truncate":
            self.close_connection = True
            self._send(200, payload[: len(payload) // 2])
        elif fault == "reset":
            self.close_connection = True
            self._send(200, payload[: len(payload) // 2], length=len(payload))
            self.connection.shutdown(2)
        else:
            self._send(200, payload)
