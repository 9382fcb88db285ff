"""``st-eval bench``: plumbing, official order choice, resume and reports (stub engine, no model)."""

from __future__ import annotations

import json

import pytest
from bench_files import rewardbench_file
from typer.testing import CliRunner

from st_eval import cli_options
from st_eval.benchmarks.runner import official_order, planned_orders
from st_eval.cli import app
from st_eval.engines.base import Engine


class AlwaysFirst(Engine):
    """Answers [[A]] to every prompt: right in the given order, wrong when swapped."""

    name = "stub"

    def __init__(self) -> None:
        super().__init__("stub-model")
        self.prompts = 0

    def generate(self, prompts, n=1, sampling=None):
        self.prompts += len(prompts)
        return [["Reasoning.\nFinal verdict: [[A]]"] * n for _ in prompts]


#: the stub writes verdicts: a pairwise template, whatever the embedded judge's own is
PAIRWISE = ("--template", "pairwise-v1")


@pytest.fixture()
def stub(monkeypatch):
    engine = AlwaysFirst()
    monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: engine)
    return engine


def test_official_order_is_a_seeded_function_of_the_pair_id():
    orders = [official_order(str(i), 0) for i in range(200)]
    assert 70 < orders.count("swapped") < 130
    assert orders == [official_order(str(i), 0) for i in range(200)]
    assert orders != [official_order(str(i), 1) for i in range(200)]


def test_rewardbench_official_scores_the_recorded_order(tmp_path, stub):
    data = rewardbench_file(tmp_path)
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["bench", "rewardbench", "--data-files", str(data), "--report-json", str(report_path), "--seed", "5", *PAIRWISE])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    # the stub always says A: right exactly when the pair was shown in the given order
    for row in report["rows"]:
        (order, verdict), = row["orders"].items()
        assert order == official_order(row["id"], 5)
        assert row["score"] == (1.0 if order == "given" else 0.0)
    official = report["official"]
    assert official["missing_sections"] == []
    assert official["headline"] == pytest.approx(sum(official["sections"].values()) / 4)
    assert "headline" in result.output


def test_rewardbench_both_orders_resumes_and_rejects_another_mode(tmp_path, stub):
    data = rewardbench_file(tmp_path, n=4)
    out, report_path = tmp_path / "judgments.jsonl", tmp_path / "report.json"
    args = ["bench", "rewardbench", "--data-files", str(data), "--mode", "both-orders", "-o", str(out), "--report-json", str(report_path), *PAIRWISE]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert stub.prompts == 8
    assert CliRunner().invoke(app, args).exit_code == 0
    assert stub.prompts == 8  # everything resumed from the judgments file
    figures = json.loads(report_path.read_text())["both_orders"]
    assert figures["accuracy_per_order"] == {"given": 1.0, "swapped": 0.0}
    assert figures["consistent_accuracy"] == 0.0
    assert "not the official" in figures["note"]
    mixed = CliRunner().invoke(app, ["bench", "rewardbench", "--data-files", str(data), "-o", str(out), *PAIRWISE])
    assert mixed.exit_code != 0 and "another --mode or --seed" in str(mixed.exception)


def test_limit_is_per_subset(tmp_path, stub):
    report_path = tmp_path / "report.json"
    args = ["bench", "rewardbench", "--data-files", str(rewardbench_file(tmp_path)), "--limit", "1", "--report-json", str(report_path), *PAIRWISE]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert sorted(r["subset"] for r in json.loads(report_path.read_text())["rows"]) == [
        "alpacaeval-easy", "donotanswer", "llmbar-natural", "math-prm",
    ]


def test_bad_mode_is_an_input_error():
    from st_eval.errors import InputError

    with pytest.raises(InputError, match="--mode"):
        planned_orders(None, "fast", 0)  # type: ignore[arg-type]


def test_mtbench_judges_both_orders_and_reports_agreement(tmp_path, stub):
    conv = lambda name: [  # noqa: E731
        {"role": "user", "content": "Q1"}, {"role": "assistant", "content": f"{name}-1"},
        {"role": "user", "content": "Q2"}, {"role": "assistant", "content": f"{name}-2"},
    ]
    rows = [
        {"question_id": 81, "model_a": "gpt-4", "model_b": "llama-13b", "winner": "model_a", "judge": "expert_0",
         "conversation_a": conv("g"), "conversation_b": conv("l"), "turn": 1},
        {"question_id": 81, "model_a": "llama-13b", "model_b": "gpt-4", "winner": "model_b", "judge": "expert_1",
         "conversation_a": conv("l"), "conversation_b": conv("g"), "turn": 1},
    ]
    data = tmp_path / "human.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["bench", "mtbench", "--data-files", str(data), "--mode", "both-orders", "--report-json", str(report_path), *PAIRWISE])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    # always-A flips with the order: the paper's protocol makes that a tie
    assert report["rows"][0]["verdict"] == "tie"
    assert report["agreement"]["turn1"]["with_tie"] == {"agree": 0, "total": 2, "agreement": 0.0}
    assert report["agreement"]["turn1"]["without_tie"]["total"] == 0
    assert report["agreement_per_order"]["given"]["turn1"]["with_tie"]["agreement"] == 1.0
    assert report["position_consistency"] == 0.0
