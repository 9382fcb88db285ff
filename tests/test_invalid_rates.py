"""No score without its invalid rate (stand-in judges, no model).

Every table ``judge`` and ``bench`` print carries the invalid, forced and shortened rates beside
the score and says how an invalid output is scored; a run above the threshold warns once.
"""

from __future__ import annotations

import json
import math

from bench_files import mtbench_human_file, rewardbench_file
from stub_judges import ALWAYS_A, NO_VERDICT, ScriptedEngine, install, run_main

from st_eval.summary import INVALID_WARNING_RATE, invalid_warning


def test_warning_threshold():
    assert INVALID_WARNING_RATE == 0.10
    assert invalid_warning(0.10) is None and invalid_warning(None) is None
    assert invalid_warning(0.25, "judged orders").startswith("warning: 25.0% of judged orders had no parseable verdict (above 10%)")


def test_official_rewardbench_prints_the_invalid_rate_beside_every_score(monkeypatch, capsys, tmp_path):
    install(monkeypatch, ScriptedEngine(NO_VERDICT))
    report = tmp_path / "report.json"
    code, out, err = run_main(monkeypatch, capsys, "bench", "rewardbench", "--data-files", str(rewardbench_file(tmp_path, n=4)),
                              "--template", "pairwise-v1", "--report-json", str(report))
    assert code == 0
    table = [line for line in out.splitlines() if "│" in line]
    assert any("Chat Hard" in line and "50.0" in line and "100.0" in line for line in table)  # score, invalid %
    assert any("headline" in line and "50.0" in line and "100.0" in line for line in table)
    assert "invalid and tie score 0.5" in " ".join(out.split()) and "invalid %" in out
    assert "warning: 100.0% of judged orders had no parseable verdict" in err
    data = json.loads(report.read_text())
    assert (data["invalid_rate"], data["forced_rate"], data["shortened_rate"]) == (1.0, 0.0, 0.0)


def test_both_orders_is_one_table_with_the_rates(monkeypatch, capsys, tmp_path):
    install(monkeypatch, ScriptedEngine(ALWAYS_A))
    code, out, err = run_main(monkeypatch, capsys, "bench", "rewardbench", "--data-files", str(rewardbench_file(tmp_path, n=4)),
                              "--template", "pairwise-v1", "--mode", "both-orders")
    assert code == 0
    assert out.count("┏") == 1  # one table, not three at two widths
    header = " ".join(out.split())
    for column in ("given %", "swapped %", "order-averaged %", "both orders right %", "invalid %", "forced %", "shortened %"):
        assert column in header
    assert "headline" in out and "warning" not in err  # every verdict parsed


def test_mtbench_table_carries_the_invalid_rate(monkeypatch, capsys, tmp_path):
    data = mtbench_human_file(tmp_path)
    install(monkeypatch, ScriptedEngine(NO_VERDICT))
    report = tmp_path / "mt.json"
    code, out, err = run_main(monkeypatch, capsys, "bench", "mtbench", "--data-files", str(data), "--template", "pairwise-v1", "--report-json", str(report))
    assert code == 0
    turn_row = next(line for line in out.splitlines() if "turn1" in line)
    assert "0.0 (n=1)" in turn_row and "100.0" in turn_row  # agreement, and the invalid rate beside it
    assert "invalid %" in " ".join(out.split()) and "warning: 100.0%" in err
    assert json.loads(report.read_text())["rates_per_turn"]["turn1"]["invalid_rate"] == 1.0


def test_judge_summary_says_its_scoring_rule_when_everything_is_invalid(monkeypatch, capsys, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"instruction": "Say hi.", "response_a": "Hi!", "response_b": "Go.", "label": "A"}) + "\n")
    install(monkeypatch, ScriptedEngine(NO_VERDICT))
    code, _, err = run_main(monkeypatch, capsys, "judge", str(pairs), "--template", "pairwise-v1")
    assert code == 0
    assert "accuracy (invalid and tie count as wrong) │ 0.000" in err
    assert "forced by the verdict step" in err and "shortened to fit" in err
    assert "warning: 100.0% of judge outputs had no parseable verdict" in err


class RatesGoodAnswers(ScriptedEngine):
    """A rating stand-in: "Yes" to the answer ``good``, "No" to any other."""

    def next_token_logprobs(self, prompts, top_k=20, include=()):
        return [{"Yes": math.log(0.9), "No": math.log(0.1)} if "good" in p[-1]["content"] else {"Yes": math.log(0.1), "No": math.log(0.9)} for p in prompts]


def test_gains_table_puts_mcnemar_p_only_beside_both_orders_right(monkeypatch, capsys, tmp_path):
    """A rating judge's order-averaged scores are 0 or 1, so both gains get a McNemar p; the table
    shows it only in the column the docs give it (both orders right)."""
    data = rewardbench_file(tmp_path, n=4)
    subsets = ["alpacaeval-easy", "llmbar-natural", "donotanswer", "math-prm"]
    rows = [{"id": str(i), "subset": s, "score": float(i % 2), "consistent": i % 2} for i, s in enumerate(subsets)]
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps({"model": "base", "template": "t", "rows": rows}))
    install(monkeypatch, RatesGoodAnswers(NO_VERDICT))
    code, out, _ = run_main(monkeypatch, capsys, "bench", "rewardbench", "--data-files", str(data), "--template", "rating-yesno-v1",
                            "--mode", "both-orders", "--baseline-report", str(baseline))
    assert code == 0
    gain_rows = [line for line in out.split("gain of", 1)[1].splitlines() if line.startswith("│") and "->" in line]
    assert len(gain_rows) == 5
    for line in gain_rows:
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert "p=" not in cells[3] and "p=" in cells[5], line
