"""A STAND-IN engine for the Ray cluster tests: no model, so a test starts replicas in a second.

Replicas build engines by ``module:Class`` (``make_engine``), so the tests name this one. It
answers each prompt from its last message, writes one line per block it generates to ``log``
(which process did which prompts: each prompt must be generated once, a dead replica's block
twice), and with ``die_once`` kills its own process on its first block (a crashed replica), once
per marker file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from st_eval.engines.base import Engine, SamplingConfig
from st_eval.errors import EngineError


class EchoEngine(Engine):
    """``echo <last message> #<sample>`` for every prompt."""

    name = "echo"

    def __init__(self, model: str | None = None, *, log: str | None = None, die_once: str | None = None, delay: float = 0.0, fail: bool = False) -> None:
        super().__init__(model or "echo-model")
        self.log, self.die_once, self.delay, self.fail = log, die_once, delay, fail

    def generate(self, prompts, n=1, sampling: SamplingConfig | None = None):
        if self.fail:
            raise EngineError("echo engine: asked to fail")
        if self.die_once and not Path(self.die_once).exists():
            Path(self.die_once).write_text(str(os.getpid()))
            os._exit(1)
        time.sleep(self.delay)
        texts = [[f"echo {p[-1]['content']} #{i}" for i in range(n)] for p in prompts]
        if self.log:
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "prompts": [p[-1]["content"] for p in prompts]}) + "\n")
        return texts

    def next_token_logprobs(self, prompts, top_k: int = 20, include=()):
        return [{" A": -0.1 * len(p[-1]["content"]), " B": -1.0} for p in prompts]
