"""``st-eval gate`` end to end through the real CLI entry point, judged by a labelled STAND-IN.

The stand-in (tests/gate_standin.py) is not a model: it picks the answer with the higher known
score. These tests check the gate's mechanics: exit codes, reports, caching, qualification and
generation. The real judge runs in test_gate_real.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from gate_standin import LabelledStandInEngine

from st_eval import cli, cli_options
from st_eval.cache import CachedEngine, GenerationCache
from st_eval.engines.base import Engine
from st_eval.gate.outputs import load_outputs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def answers(model: str, ids: range) -> list[dict]:
    return [
        {"question_id": i, "model_id": model, "choices": [{"index": 0, "turns": [f"{model} first turn #{i}.", f"{model} answer #{i}."]}]}
        for i in ids
    ]


@pytest.fixture
def files(tmp_path):
    ids = range(1, 21)
    questions = write_jsonl(tmp_path / "question.jsonl", [
        {"question_id": i, "category": "math" if i % 2 else "writing", "turns": [f"Question {i}?", f"Follow-up {i}?"]} for i in ids
    ])
    return {
        "prompts": questions,
        "good": write_jsonl(tmp_path / "good.jsonl", answers("good", ids)),
        "bad": write_jsonl(tmp_path / "bad.jsonl", answers("bad", ids)),
        "dir": tmp_path,
    }


def scores(losing_ids: set[int] = frozenset(), n: int = 20) -> dict[str, float]:
    """good beats bad on every prompt except ``losing_ids``."""
    table = {}
    for i in range(1, n + 1):
        table[f"good answer #{i}."] = 0.0 if i in losing_ids else 1.0
        table[f"bad answer #{i}."] = 0.5
    return table


def run_cli(monkeypatch, args: list[str], engine: Engine | None = None) -> int:
    """Run ``st-eval gate ARGS`` through cli.main with the stand-in as the judge; the exit code."""
    if engine is not None:
        monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: cached(engine, **k))
    monkeypatch.setattr(sys, "argv", ["st-eval", "gate", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code or 0


def cached(engine: Engine, cache: bool = True, cache_path: Path | None = None, **_) -> Engine:
    """What build_engine does with a real engine: wrap it in the generation cache."""
    return CachedEngine(engine, GenerationCache(cache_path)) if cache else engine


#: the stand-in writes verdicts (a pairwise template), and 20 prompts test the gate's mechanics,
#: not its power: the minimum of decided prompts has tests of its own
MECHANICS = ("--template", "pairwise-v1", "--min-decided", "1")


def gate_args(files, candidate: str, baseline: str, *extra: str, mechanics: tuple[str, ...] = MECHANICS) -> list[str]:
    d = files["dir"]
    return [
        "--candidate", str(files[candidate]), "--baseline", str(files[baseline]), "--prompts", str(files["prompts"]),
        "--cache-path", str(d / "cache.sqlite"), "--outputs-dir", str(d / "outputs"), "--report-json", str(d / "report.json"), "--report-md", str(d / "report.md"),
        *mechanics, *extra,
    ]


def report(files) -> dict:
    return json.loads((files["dir"] / "report.json").read_text())


def test_better_candidate_passes_and_reports_are_written(files, monkeypatch, tmp_path):
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    engine = LabelledStandInEngine(scores(losing_ids={3}))
    code = run_cli(monkeypatch, gate_args(files, "good", "bad", "--min-win-rate", "0.8"), engine)
    assert code == 0
    data = report(files)
    assert data["status"] == "pass" and data["exit_code"] == 0
    assert (data["overall"]["wins"], data["overall"]["losses"], data["overall"]["n"]) == (19, 1, 20)
    assert data["overall"]["position_consistency"] == 1.0
    assert set(data["categories"]) == {"math", "writing"}
    assert data["candidate"]["model"] == "good" and data["baseline"]["model"] == "bad"
    [worst] = data["worst_regressions"]
    assert worst["id"] == "3" and "Final verdict" in worst["rationale"] and worst["candidate"] == "good answer #3."
    markdown = (files["dir"] / "report.md").read_text()
    assert "PASS" in markdown and "Worst regressions" in markdown
    assert summary.read_text().strip() == markdown.strip()


def test_worse_candidate_fails_with_exit_code_1(files, monkeypatch):
    code = run_cli(monkeypatch, gate_args(files, "bad", "good"), LabelledStandInEngine(scores()))
    assert code == 1
    data = report(files)
    assert data["status"] == "fail" and data["overall"]["losses"] == 20
    assert [c["name"] for c in data["checks"] if not c["passed"]] == ["not_significantly_worse"]


def test_position_bias_becomes_ties(files, monkeypatch):
    """Equal scores make the stand-in always answer A: both orders disagree, so every prompt is a tie."""
    flat = {k: 1.0 for k in scores()}
    code = run_cli(monkeypatch, gate_args(files, "good", "bad", "--min-win-rate", "0.5"), LabelledStandInEngine(flat))
    data = report(files)
    assert code == 0 and data["overall"]["ties"] == 20 and data["overall"]["position_consistency"] == 0.0


def test_judge_failure_rate_above_the_limit_is_exit_2_never_a_pass(files, monkeypatch):
    engine = LabelledStandInEngine(scores(), unparseable=["good answer #1.", "good answer #2."])
    code = run_cli(monkeypatch, gate_args(files, "good", "bad", "--max-failure-rate", "0.05"), engine)
    assert code == 2
    data = report(files)
    assert data["status"] == "error" and "failure rate" in data["errors"][0]
    assert data["overall"]["wins"] == 18  # everything else won, and still no pass
    assert {row["id"] for row in data["judge_failures"]} == {"1", "2"}
    assert "not sure" in data["judge_failures"][0]["output_tail"]
    assert "Judge failures" in (files["dir"] / "report.md").read_text()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: write_jsonl(f["bad"], answers("bad", range(1, 20))), "missing outputs"),
        (lambda f: f["bad"].write_text("{not json\n"), "not valid JSON"),
        (lambda f: f["bad"].unlink(), "file not found"),
        (lambda f: f.update(extra=["--category-min-win-rate", "codng=0.5"]), "unknown category codng"),
    ],
    ids=["missing outputs", "bad json", "no file", "unknown category"],
)
def test_bad_input_is_exit_2_before_any_model_loads(files, monkeypatch, capsys, mutate, message):
    mutate(files)

    def no_engine(*args, **kwargs):
        raise AssertionError("the judge must not be built for bad input")

    monkeypatch.setattr(cli_options, "build_engine", no_engine)
    assert run_cli(monkeypatch, gate_args(files, "good", "bad", *files.get("extra", []))) == 2
    assert message in capsys.readouterr().err
    assert report(files)["status"] == "error"


def test_an_engine_crash_is_exit_2(files, monkeypatch):
    code = run_cli(monkeypatch, gate_args(files, "good", "bad"), LabelledStandInEngine(scores(), crash_after=0))
    assert code == 2
    assert "crashed" in report(files)["errors"][0]


def test_usage_errors_exit_2(files, monkeypatch):
    assert run_cli(monkeypatch, ["--candidate", str(files["good"])]) == 2  # no baseline
    assert run_cli(monkeypatch, gate_args(files, "good", "bad", "--category-min-win-rate", "math")) == 2
    assert run_cli(monkeypatch, gate_args(files, "good", "bad", "--min-win-rate", "2")) == 2


def test_rerun_after_a_crash_and_with_more_prompts_judges_only_what_is_new(files, monkeypatch):
    # Crash in the second chunk (the judge sends 16 pairs x 2 orders = 32 prompts per chunk).
    crashing = LabelledStandInEngine(scores(), crash_after=32)
    assert run_cli(monkeypatch, gate_args(files, "good", "bad"), crashing) == 2
    resumed = LabelledStandInEngine(scores())
    assert run_cli(monkeypatch, gate_args(files, "good", "bad"), resumed) == 0
    assert resumed.prompts_seen == 2 * (20 - 16)
    assert report(files)["gate_outputs_cached"] == 2 * 16
    # Two more prompts: only they are judged.
    more = range(1, 23)
    write_jsonl(files["prompts"], [{"question_id": i, "category": "math" if i % 2 else "writing", "turns": [f"Question {i}?", f"Follow-up {i}?"]} for i in more])
    write_jsonl(files["good"], answers("good", more))
    write_jsonl(files["bad"], answers("bad", more))
    extended = LabelledStandInEngine(scores(n=22))
    assert run_cli(monkeypatch, gate_args(files, "good", "bad"), extended) == 0
    assert extended.prompts_seen == 2 * 2 and report(files)["overall"]["n"] == 22


def test_rerun_and_reverse_direction_reuse_every_judge_output(files, monkeypatch):
    """Both orders are judged, so baseline-vs-candidate shows the judge the very same prompts."""
    first = LabelledStandInEngine(scores())
    assert run_cli(monkeypatch, gate_args(files, "good", "bad"), first) == 0
    assert first.prompts_seen == 40
    again = LabelledStandInEngine(scores())
    assert run_cli(monkeypatch, gate_args(files, "good", "bad"), again) == 0
    reverse = LabelledStandInEngine(scores())
    assert run_cli(monkeypatch, gate_args(files, "bad", "good"), reverse) == 1
    assert again.prompts_seen == reverse.prompts_seen == 0
    assert report(files)["gate_outputs_generated"] == 0 and report(files)["overall"]["losses"] == 20
    uncached = LabelledStandInEngine(scores())
    assert run_cli(monkeypatch, gate_args(files, "good", "bad", "--no-cache"), uncached) == 0
    assert uncached.prompts_seen == 40


def llmbar_folder(path: Path, n: int) -> Path:
    """An LLMBar release folder (natural.json) whose better answers are the stand-in's "good" texts."""
    path.mkdir()
    rows = [{"input": f"Task {i}", "output_1": f"bad answer #{i}.", "output_2": f"good answer #{i}.", "label": 2} for i in range(1, n + 1)]
    (path / "natural.json").write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_unqualified_judge_refuses_to_gate(files, monkeypatch):
    bench = llmbar_folder(files["dir"] / "llmbar", 10)
    # This stand-in prefers the wrong answer on 5 of the 10 benchmark pairs: accuracy 0.5.
    engine = LabelledStandInEngine(scores(losing_ids={1, 2, 3, 4, 5}))
    args = gate_args(files, "good", "bad", "--qualify-on", str(bench), "--min-judge-accuracy", "0.8")
    assert run_cli(monkeypatch, args, engine) == 2
    data = report(files)
    assert data["status"] == "error" and data["qualification"]["accuracy"] == 0.5 and "not qualified" in data["errors"][0]
    assert "overall" not in data


def test_qualified_judge_gates(files, monkeypatch):
    bench = llmbar_folder(files["dir"] / "llmbar", 10)
    args = gate_args(files, "good", "bad", "--qualify-on", str(bench), "--qualify-limit", "6")
    assert run_cli(monkeypatch, args, LabelledStandInEngine(scores())) == 0
    assert report(files)["qualification"] == {**report(files)["qualification"], "n": 6, "accuracy": 1.0, "passed": True}


class EchoGenerator(Engine):
    """A generation STAND-IN: answers each user turn with a fixed text naming the model and turn."""

    name = "echo"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.calls = 0

    def generate(self, prompts, n=1, sampling=None):
        self.calls += len(prompts)
        out = []
        for chat in prompts:
            qid = chat[0]["content"].split()[-1].rstrip("?")
            turn = sum(m["role"] == "user" for m in chat)
            out.append([f"{self.model} answer #{qid}." if turn == 2 else f"{self.model} first turn #{qid}."] * n)
        return out


def test_outputs_are_generated_from_models_then_reused(files, monkeypatch):
    judge = LabelledStandInEngine(scores())
    generators: dict[str, EchoGenerator] = {}

    def build(engine, model, **kwargs):
        if model is None:
            return judge
        return generators.setdefault(model, EchoGenerator(model))

    monkeypatch.setattr(cli_options, "build_engine", build)
    args = ["--candidate-model", "good", "--baseline-model", "bad", "--prompts", str(files["prompts"]), "--no-cache",
            "--outputs-dir", str(files["dir"] / "outputs"), "--report-json", str(files["dir"] / "report.json"), *MECHANICS]
    assert run_cli(monkeypatch, args) == 0
    assert generators["good"].calls == 40  # 20 prompts x 2 turns
    assert report(files)["overall"]["wins"] == 20
    generated = sorted((files["dir"] / "outputs").glob("*.jsonl"))
    assert len(generated) == 2
    # A generated file is an ordinary outputs file: it can be gated later with --candidate.
    loaded = load_outputs(generated[0])
    assert len(loaded.answers) == 20 and loaded.answers["7"].prompt.user_turns == ["Question 7?", "Follow-up 7?"]
    generators.clear()
    assert run_cli(monkeypatch, args) == 0
    assert generators["good"].calls == 0  # outputs reused from the generated files


def test_unwritable_report_is_exit_2(files, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    args = gate_args(files, "good", "bad")
    args[args.index("--report-json") + 1] = str(blocker / "report.json")
    assert run_cli(monkeypatch, args, LabelledStandInEngine(scores())) == 2


def test_installed_entry_point_exits_2_on_missing_outputs(files):
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "st_eval.cli", "gate", "--candidate", str(files["good"]), "--baseline", str(files["dir"] / "nope.jsonl")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "nope.jsonl" in result.stderr and "file not found" in result.stderr


def test_a_gate_on_too_few_prompts_is_inconclusive_exit_2_with_the_figure_to_beat(files, monkeypatch, capsys):
    three = write_jsonl(files["dir"] / "three.jsonl", [json.loads(line) for line in files["prompts"].read_text().splitlines()[:3]])
    args = gate_args(files, "good", "bad", "--prompts", str(three), mechanics=("--template", "pairwise-v1"))
    code = run_cli(monkeypatch, args, LabelledStandInEngine(scores()))
    assert code == 2
    data = report(files)
    assert data["status"] == "inconclusive" and data["overall"]["wins"] == 3 and data["min_decided"] == 71
    err = " ".join(capsys.readouterr().err.split())
    assert "gate INCONCLUSIVE" in err and "3 decided prompts, fewer than the 71 a pass needs" in err
    assert "PASS" not in err and "INCONCLUSIVE" in (files["dir"] / "report.md").read_text()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(["--template", "pairwise-v2"], "unknown judge template 'pairwise-v2'"), (["--judge", "smollm2-135"], "unknown judge 'smollm2-135'; did you mean smollm2-135m?")],
    ids=["template-typo", "judge-typo"],
)
def test_bad_judge_flags_fail_before_any_model_loads(files, monkeypatch, capsys, flags, expected):
    def no_model(*_a, **_k):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(cli_options, "build_engine", no_model)
    code = run_cli(monkeypatch, gate_args(files, "good", "bad", *flags, mechanics=()))
    assert code == 2 and expected in " ".join(capsys.readouterr().err.split())
