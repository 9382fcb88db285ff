"""The table of every trained judge against its own seed (benchmarks/candidates_table.py), built
from run reports and the shipped judge's served reports alone."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_SPEC = importlib.util.spec_from_file_location("bench_candidates_table", REPO / "benchmarks" / "candidates_table.py")
candidates_table = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_candidates_table"] = candidates_table
_SPEC.loader.exec_module(candidates_table)


def _gain(n: int, candidate: float, gain: float, low: float, high: float) -> dict:
    return {"order_averaged": {"n": n, "baseline": candidate - gain, "candidate": candidate, "gain": gain, "gain_ci": {"low": low, "high": high}}}


def _run(folder: Path, iterations: dict[str, dict], best: int) -> None:
    folder.mkdir(parents=True)
    report = {"template": "rating-yesno-v1", "best": {"iteration": best}, "gains_over_seed": iterations}
    (folder / "report.json").write_text(json.dumps(report))


def test_each_trained_iteration_is_a_row_with_its_gain_over_its_own_seed(tmp_path):
    _run(tmp_path / "runs" / "two-iterations", {
        "1": {"synthetic": _gain(96, 0.70, 0.25, 0.13, 0.36), "llmbar": _gain(419, 0.53, 0.005, -0.053, 0.064)},
        "2": {"synthetic": _gain(96, 0.75, 0.30, 0.16, 0.44), "llmbar/llmbar-natural": _gain(100, 0.46, 0.04, -0.09, 0.17)},
    }, best=2)
    text = candidates_table.table(tmp_path / "runs", tmp_path / "no-shipped-judge")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    first, second = ([c.strip() for c in row.strip("|").split("|")] for row in rows)
    header = [c.strip() for c in next(line for line in text.splitlines() if line.startswith("| judge")).strip("|").split("|")]
    assert first[0] == "`two-iterations` it 1" and second[0] == "`two-iterations` it 2 (selected)"
    assert first[header.index("pairs: held-out / PandaLM / LLMBar")] == "96 / - / 419"
    assert first[header.index("synthetic held-out")] == "0.700 +25.0 [+13.0, +36.0]"
    assert first[header.index("LLMBar all")] == "0.530 +0.5 [-5.3, +6.4]"
    assert first[header.index("PandaLM dev")] == "-"  # a run without the set says so
    assert second[header.index("natural")] == "0.460 +4.0 [-9.0, +17.0]"


def test_the_shipped_judge_as_served_and_the_longer_answer_rule_come_from_its_reports(tmp_path):
    shipped = tmp_path / "judge"
    shipped.mkdir()
    figures = {"all": {"n": 419, "order_averaged": 0.558, "longer_wins": 0.272}, "llmbar-natural": {"n": 100, "order_averaged": 0.57, "longer_wins": 0.565}}
    gains = {"all": _gain(419, 0.558, 0.0, -0.064, 0.064)}
    (shipped / "report-llmbar.json").write_text(json.dumps({"template": "rating-yesno-long-v1", "figures": figures, "gain_over_baseline": gains}))
    (tmp_path / "runs").mkdir()
    text = candidates_table.table(tmp_path / "runs", shipped)
    longer = next(line for line in text.splitlines() if line.startswith("| the longer answer wins"))
    served = next(line for line in text.splitlines() if line.startswith("| `judge` as served"))
    assert "| 0.272 |" in longer and "| 0.565 |" in longer
    assert "rating-yesno-long-v1" in served and "0.558 +0.0 [-6.4, +6.4]" in served
    assert "| 0.570 |" in served  # a set without a gain shows its accuracy alone
