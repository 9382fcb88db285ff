"""A rerun with the same ``--output`` resumes only the run that wrote it (stand-in judges, no model).

Every door that resumes (``judge``, ``bench rewardbench``/``mtbench`` through the runner,
``bench rewardbench2``) refuses a file another producer wrote, with one line naming the file,
line and field; ``--overwrite`` starts over.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_files import mtbench_human_file
from stub_judges import ALWAYS_A, ScriptedEngine, install, run_main

PAIRS = [
    {"id": "p1", "instruction": "Say hi.", "response_a": "Hi!", "response_b": "Go away.", "label": "A"},
    {"id": "p2", "instruction": "2+2?", "response_a": "5", "response_b": "4", "label": "B"},
]


@pytest.fixture()
def pairs(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    return path


def judge(monkeypatch, capsys, pairs: Path, output: Path, *flags: str) -> tuple[int, str, str]:
    return run_main(monkeypatch, capsys, "judge", str(pairs), "--output", str(output), "--template", "pairwise-v1", *flags)


@pytest.mark.parametrize(
    ("flags", "field", "was", "now"),
    [
        (["--template", "pairwise-short-v1"], "template", "'pairwise-v1'", "'pairwise-short-v1'"),
        (["--max-new-tokens", "64"], "sampling.max_new_tokens", "512", "64"),
        (["--samples", "3"], "sampling.samples", "1", "3"),
        (["--seed", "7"], "sampling.seed", "0", "7"),
        (["--allow-tie"], "sampling.allow_tie", "False", "True"),
        (["--order", "given"], "orders", "['given', 'swapped']", "['given']"),
    ],
    ids=["template", "budget", "samples", "seed", "ties", "order"],
)
def test_judge_refuses_an_output_another_run_wrote(monkeypatch, capsys, tmp_path, pairs, flags, field, was, now):
    engine = install(monkeypatch, ScriptedEngine(ALWAYS_A))
    output = tmp_path / "j.jsonl"
    code, _, _ = judge(monkeypatch, capsys, pairs, output, "--order", "both")
    assert code == 0 and engine.prompts == 4
    before = output.read_text()
    rerun = flags if flags[0] == "--order" else ["--order", "both", *flags]
    code, out, err = judge(monkeypatch, capsys, pairs, output, *rerun)
    assert code == 2 and engine.prompts == 4  # nothing judged, nothing mixed in
    assert f"j.jsonl: line 1: field '{field}' is {was} in this file, {now} in this run" in err
    assert "--overwrite" in err and "accuracy (swapped order)" not in out + err
    assert output.read_text() == before


def test_judge_refuses_another_model_and_overwrite_starts_over(monkeypatch, capsys, tmp_path, pairs):
    output = tmp_path / "j.jsonl"
    install(monkeypatch, ScriptedEngine(ALWAYS_A, model="judge-one"))
    assert judge(monkeypatch, capsys, pairs, output)[0] == 0
    other = install(monkeypatch, ScriptedEngine(ALWAYS_A, model="judge-two"))
    code, _, err = judge(monkeypatch, capsys, pairs, output)
    assert code == 2 and "field 'model' is 'judge-one' in this file, 'judge-two' in this run" in err
    code, _, err = judge(monkeypatch, capsys, pairs, output, "--overwrite")
    assert code == 0 and other.prompts == 2 and "resuming" not in err
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["model"] for r in rows] == ["judge-two", "judge-two"]
    code, _, err = judge(monkeypatch, capsys, pairs, output)  # the same run resumes as before
    assert code == 0 and "resuming: 2 of 2 pairs already judged" in err and other.prompts == 2


def test_bench_refuses_an_output_another_template_wrote(monkeypatch, capsys, tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad", "subset": "llmbar-natural", "id": i} for i in range(3)]
    data = tmp_path / "rb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    output, report = tmp_path / "rb_out.jsonl", tmp_path / "report.json"
    engine = install(monkeypatch, ScriptedEngine(ALWAYS_A))
    args = ["bench", "rewardbench", "--data-files", str(data), "--output", str(output), "--report-json", str(report)]
    assert run_main(monkeypatch, capsys, *args, "--template", "pairwise-v1")[0] == 0
    code, _, err = run_main(monkeypatch, capsys, *args, "--template", "pairwise-short-v1")
    assert code == 2 and engine.prompts == 3
    assert "rb_out.jsonl: line 1: field 'template' is 'pairwise-v1' in this file, 'pairwise-short-v1' in this run" in err
    assert run_main(monkeypatch, capsys, *args, "--template", "pairwise-short-v1", "--overwrite")[0] == 0
    assert json.loads(report.read_text())["template"] == "pairwise-short-v1" and engine.prompts == 6


def test_mtbench_output_records_its_producer_too(monkeypatch, capsys, tmp_path):
    data = mtbench_human_file(tmp_path)
    output = tmp_path / "mt.jsonl"
    install(monkeypatch, ScriptedEngine(ALWAYS_A))
    args = ["bench", "mtbench", "--data-files", str(data), "--output", str(output), "--template", "pairwise-v1"]
    assert run_main(monkeypatch, capsys, *args)[0] == 0
    code, _, err = run_main(monkeypatch, capsys, *args, "--no-tie")
    assert code == 2 and "field 'sampling.allow_tie' is True in this file, False in this run" in err
