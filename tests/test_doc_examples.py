"""The README's and docs' examples work: a doc example that breaks fails the tests.

Every ``st-eval`` command in a fenced block of README.md and docs/*.md must parse with the CLI
as it is (no unknown or removed option, no bad value), and every ``from st_eval... import``
in their Python blocks must resolve. The commands that can run here (the embedded judges on
the hf engine, input files that exist) run at tiny size in the slow test: ``--limit 1``, two
pairs of a pairs file, a 16-token budget, outputs in a temporary folder. So does the README's
Python snippet.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import typer.core

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: options whose value is a file the command writes (sent to a temporary folder), and a report
#: an earlier example wrote there
OUTPUT_OPTIONS = ("--output", "-o", "--report-json", "--report-md", "--baseline-report")
#: commands that serve or train for minutes to hours: parsed, never run
NEVER_RUN = ("serve", "train", "train-worker")


@dataclass(frozen=True)
class Example:
    """One ``st-eval`` command of a doc: where it is, and its arguments after ``st-eval``."""

    where: str
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: st-eval {shlex.join(self.args)}"


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, text, first line) of every fenced block."""
    text = path.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text[: m.start()].count("\n") + 2) for m in _FENCE.finditer(text)]


def examples() -> list[Example]:
    """Every ``st-eval ...`` command line (continuations joined, comments dropped) in a fenced
    bash or yaml block of the docs."""
    found = []
    for path in DOCS:
        for language, text, first in blocks(path):
            if language not in ("bash", "yaml", ""):
                continue
            joined = re.sub(r"\\\n\s*", " ", text)
            for offset, line in enumerate(joined.splitlines()):
                words = shlex.split(line, comments=True) if "st-eval" in line else []
                if words and words[0].endswith("st-eval") and "${{" not in line and "..." not in words:  # "..." elides on purpose
                    found.append(Example(f"{path.relative_to(REPO)}:{first + offset}", tuple(words[1:])))
    return found


def python_blocks(path: Path) -> list[tuple[str, str]]:
    return [(f"{path.relative_to(REPO)}:{first}", text) for language, text, first in blocks(path) if language == "python"]


#: a value the reader fills in: ``N``, ``FILE``, ``$SLURM_PROCID``
_PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)$")


def parse(args: tuple[str, ...]) -> tuple[list[str], dict]:
    """Parse ``args`` with the real CLI, down to the command; returns (command path, its options).
    A placeholder the reader fills in stands for ``1`` (a valid count, name or path); a bad
    option or value raises the CLI's usage error."""
    from st_eval.cli import app

    command = typer.main.get_command(app)
    context = command.make_context("st-eval", ["1" if _PLACEHOLDER.match(word) else word for word in args])
    path = []
    while isinstance(command, typer.core.TyperGroup):
        name, *rest = [*(getattr(context, "protected_args", None) or getattr(context, "_protected_args", [])), *context.args]
        path.append(name)
        command = command.commands[name]
        context = command.make_context(name, rest, parent=context)
    return path, context.params


def test_the_docs_have_st_eval_examples_to_check():
    found = examples()
    assert len(found) > 30
    assert any(e.where.startswith("README.md") and e.args[:1] == ("judge",) for e in found)
    assert any("gate.md" in e.where and e.args[:1] == ("gate",) for e in found)  # bash and the CI workflow's yaml


@pytest.mark.parametrize("example", examples(), ids=str)
def test_every_documented_st_eval_command_parses(example):
    try:
        parse(example.args)
    except Exception as exc:  # noqa: BLE001 - the message is what a reader of the docs would see
        pytest.fail(f"{example}: {type(exc).__name__}: {exc}")


PYTHON_BLOCKS = [b for path in DOCS for b in python_blocks(path)]


@pytest.mark.parametrize(("where", "code"), PYTHON_BLOCKS, ids=[where for where, _ in PYTHON_BLOCKS])
def test_every_documented_st_eval_import_resolves(where, code):
    try:
        tree = ast.parse(code, filename=where)
    except SyntaxError:
        assert "import" not in code, f"{where}: a Python example that does not parse"
        return  # a signature sketch (``-> list[str]``), not a program
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("st_eval"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"


# ----------------------------------------------------------------------------- running them


def runnable(example: Example) -> bool:
    """Whether ``example`` can run here: the hf engine, an embedded judge or an existing folder,
    no server, every input present."""
    from st_eval.embedded import known_names

    path, params = parse(example.args)
    if path[0] in NEVER_RUN or params.get("base_url") or any(_PLACEHOLDER.match(word) for word in example.args):
        return False
    if path[0] == "bench" and not params.get("data_files"):
        return False  # the hub's copy: not reachable from a test
    if params.get("engine", "hf") != "hf" or params.get("gen_engine") not in (None, "hf"):
        return False
    for key in ("model", "judge_model"):
        model = params.get(key)
        if model and model not in known_names() and not (REPO / model).exists():
            return False
    data = params.get("data_files")
    inputs = [params.get("file"), *(data if isinstance(data, (list, tuple)) else [data]), *(params.get(k) for k in ("candidate", "baseline", "prompts", "references"))]
    return all(Path(REPO, item).exists() for item in inputs if item)


def tiny(example: Example, folder: Path) -> list[str]:
    """The example at tiny size: outputs in ``folder``, one pair per subset (bench) or two pairs
    of a pairs file (judge), a 16-token budget."""
    args, out = list(example.args), []
    for index, word in enumerate(args):
        previous = args[index - 1] if index else ""
        moved = folder / Path(word).name
        written_here = previous in OUTPUT_OPTIONS and (previous != "--baseline-report" or moved.exists())
        out.append(str(moved) if written_here else word)
    path, params = parse(example.args)
    if path[0] in ("judge", "bench", "gate"):
        out += ["--max-new-tokens", "16"]
    if path[0] == "bench":
        out += ["--limit", "1"]
    if path[0] == "judge" and params.get("file") and not params.get("shard"):
        out += ["--shard", "0/3"]
    return out


def test_the_readmes_judge_examples_are_among_those_run():
    run = [e for e in examples() if runnable(e)]
    assert sum(e.where.startswith("README.md") and e.args[:1] == ("judge",) for e in run) >= 3
    assert not any("vllm" in e.args or "openai" in e.args or e.args[0] in NEVER_RUN for e in run)


@pytest.mark.slow
def test_the_runnable_doc_examples_run_at_tiny_size(tmp_path, monkeypatch):
    """Runs in order, so an example that reads another's report (``--baseline-report``) finds it."""
    from typer.testing import CliRunner

    from st_eval.cli import app

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ran = []
    for example in examples():
        if not runnable(example):
            continue
        result = CliRunner().invoke(app, tiny(example, tmp_path))
        assert result.exit_code == 0, f"{example}\n{result.output[-3000:]}\n{result.exception!r}"
        ran.append(example)
    assert any(e.where.startswith("README.md") for e in ran)


@pytest.mark.slow
def test_the_readmes_python_snippets_run(capsys):
    for where, code in python_blocks(REPO / "README.md"):
        exec(compile(code, where, "exec"), {})  # noqa: S102 - the README's own example
        assert capsys.readouterr().out.strip() not in ("", "None"), f"{where}: printed nothing useful"
