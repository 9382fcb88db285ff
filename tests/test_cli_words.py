"""One vocabulary and readable help across the st-eval commands (no model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import typer
import typer.core
import typer.testing
from stub_judges import ALWAYS_A, ScriptedEngine, install, run_main

from st_eval.cli import app


def commands() -> dict[str, object]:
    """Every leaf command by its full name (``bench rewardbench``)."""
    found = {}

    def walk(command, path):
        if isinstance(command, typer.core.TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(app), [])
    return found


def test_a_short_flag_means_one_thing_in_every_command():
    meanings: dict[str, set[frozenset[str]]] = {}
    for command in commands().values():
        for param in command.params:
            if param.param_type_name == "option":
                longs = frozenset(o for o in param.opts if o.startswith("--"))
                for short in (o for o in param.opts if not o.startswith("--")):
                    meanings.setdefault(short, set()).add(longs)
    for short, names in meanings.items():
        assert frozenset.intersection(*names), f"{short} means {sorted(map(sorted, names))}"
    assert {"--response-b"} in [set(n) for n in meanings["-b"]] and len(meanings["-b"]) == 1
    assert len(meanings["-p"]) == 1  # --port only: gate's --prompts has no short flag


def test_help_at_80_columns_shows_every_option_name_whole():
    script = (
        "from typer.testing import CliRunner; from st_eval.cli import app; import sys\n"
        "for name in sys.argv[1:]:\n"
        "    print('=====', name); print(CliRunner().invoke(app, [*name.split(), '--help']).output)\n"
    )
    names = sorted(commands())
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": ""}
    result = subprocess.run([sys.executable, "-c", script, *names], env=env, capture_output=True, text=True, timeout=300, check=True)
    pages = dict(zip(names, result.stdout.split("=====")[1:]))
    for name, command in commands().items():
        page = pages[name]
        assert "…" not in page, f"st-eval {name} --help cuts a name"
        for param in command.params:
            for option in (o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")):
                assert option in page, f"st-eval {name} --help lacks {option}"


def test_bench_help_names_every_benchmark():
    page = " ".join(typer.testing.CliRunner().invoke(app, ["bench", "--help"]).output.split())
    for name in ("RewardBench", "RewardBench 2", "MT-Bench", "PandaLM"):
        assert name in page


def test_both_and_both_orders_are_one_word(monkeypatch, capsys, tmp_path):
    install(monkeypatch, ScriptedEngine(ALWAYS_A))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"instruction": "Say hi.", "response_a": "Hi!", "response_b": "No."}) + "\n")
    output = tmp_path / "j.jsonl"
    code, _, _ = run_main(monkeypatch, capsys, "judge", str(pairs), "--order", "both-orders", "--template", "pairwise-v1", "--output", str(output))
    assert code == 0 and [o["order"] for o in json.loads(output.read_text())["orders"]] == ["given", "swapped"]
    data = tmp_path / "rb.jsonl"
    data.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "subset": "llmbar-natural"}) + "\n")
    report = tmp_path / "report.json"
    code, _, _ = run_main(monkeypatch, capsys, "bench", "rewardbench", "--data-files", str(data), "--mode", "both", "--template", "pairwise-v1", "--report-json", str(report))
    assert code == 0 and json.loads(report.read_text())["mode"] == "both-orders"
