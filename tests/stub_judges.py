"""Judge STAND-INS for fast CLI tests: engines that answer every prompt with a fixed text.

They are not models. Each records the prompts and the decoding settings it was asked for, so a
test can check what a command sent, and installs itself in place of the engine a command builds
(``install``), which also proves the command's flag checks ran before any model would load.
"""

from __future__ import annotations

from collections.abc import Callable

from st_eval import cli_options
from st_eval.engines.base import Engine, SamplingConfig


class ScriptedEngine(Engine):
    """Answers ``answer(prompt)`` (or the fixed text) to every prompt; a continued final
    assistant message (the verdict step) gets ``continuation``."""

    name = "stub"

    def __init__(self, answer: str | Callable[[list[dict]], str], model: str = "stub-model", continuation: str = "A") -> None:
        super().__init__(model)
        self.answer = answer
        self.continuation = continuation
        self.prompts = 0
        self.budgets: list[int] = []

    def generate(self, prompts, n=1, sampling: SamplingConfig | None = None):
        self.prompts += len(prompts)
        self.budgets.append((sampling or SamplingConfig()).max_new_tokens)
        out = []
        for prompt in prompts:
            if prompt[-1]["role"] == "assistant":
                out.append([self.continuation] * n)
            else:
                out.append([self.answer(prompt) if callable(self.answer) else self.answer] * n)
        return out


#: a verdict every order: right when the chosen answer is shown first
ALWAYS_A = "Reasoning.\nFinal verdict: [[A]]"
#: no verdict at all: every judgment is invalid
NO_VERDICT = "I cannot decide which answer is better."


def install(monkeypatch, engine: Engine) -> Engine:
    """Make every command build ``engine`` (whatever model it names)."""
    monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: engine)
    return engine


def forbid_models(monkeypatch) -> None:
    """Make building any engine fail the test: the command must stop before a model loads."""

    def no_model(*_a, **_k):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(cli_options, "build_engine", no_model)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``st-eval ARGS`` through the console entry point in this process: (exit code, stdout,
    stderr with line breaks folded), as a user sees them."""
    import sys

    from st_eval import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["st-eval", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exited:
        code = exited.code or 0
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())
