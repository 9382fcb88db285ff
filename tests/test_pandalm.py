"""PandaLM's test set: loading the release schema, the scoring, and ``st-eval bench pandalm``."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from st_eval import cli_options
from st_eval.benchmarks.pandalm import gold_label, load_pandalm, non_tie, published_for, three_way
from st_eval.cli import app
from st_eval.engines.base import Engine
from st_eval.errors import InputError
from st_eval.records import Judgment, OrderResult

ROWS = [
    # response1 better (2 of 3), no input (the release's NaN written as null)
    {"idx": 1, "motivation_app": "a", "cmp_key": "x_y", "instruction": "Name a fruit.", "input": None,
     "response1": "An apple is a fruit that grows on trees.", "response2": "Car.", "annotator1": 1, "annotator2": 1, "annotator3": 2},
    # response2 better, with an input, and a model that answered nothing
    {"idx": 2, "motivation_app": "b", "cmp_key": "x_z", "instruction": "Translate to French.", "input": "cat",
     "response1": "", "response2": "chat", "annotator1": 2, "annotator2": 2, "annotator3": 2},
    # a tie by majority
    {"idx": 3, "motivation_app": "c", "cmp_key": "y_z", "instruction": "Say hi.", "input": "",
     "response1": "Hi!", "response2": "Hello!", "annotator1": 0, "annotator2": 0, "annotator3": 1},
    # no majority: left out
    {"idx": 4, "motivation_app": "d", "cmp_key": "x_y", "instruction": "Count to two.", "input": None,
     "response1": "1 2", "response2": "one, two", "annotator1": 0, "annotator2": 1, "annotator3": 2},
]


@pytest.fixture()
def release(tmp_path):
    path = tmp_path / "testset-v1-dev.json"
    path.write_text(json.dumps(ROWS))
    return path


def test_gold_is_the_annotators_majority():
    assert gold_label([1, 1, 2]) == "A" and gold_label([2, 0, 2]) == "B" and gold_label([0, 0, 1]) == "tie"
    assert gold_label([0, 1, 2]) is None


def test_loader_reads_the_release_schema_file_or_folder(release):
    pairs, counts = load_pandalm(release.parent)  # the folder finds the release's file name
    assert counts == {"rows": 4, "no_majority": 1, "pairs": 3, "ties": 1, "non_tie": 2}
    first, second, tie = pairs
    assert first.instruction == "Name a fruit." and first.label == "A"
    assert second.instruction == "Translate to French.\n\ncat" and second.response_a == "" and second.label == "B"
    assert tie.instruction == "Say hi." and tie.label == "tie"
    assert [p.id for p in non_tie(pairs)] == ["pandalm-1", "pandalm-2"]


def test_loader_names_the_item_and_field_of_a_bad_row(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([ROWS[0], {**ROWS[1], "annotator2": 7}]))
    with pytest.raises(InputError, match=r"bad.json: item 2: field 'annotator2' must be 0, 1 or 2"):
        load_pandalm(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no PandaLM file"):
        load_pandalm(empty)


def test_three_way_and_published_figures(release):
    pairs, _ = load_pandalm(release)
    judgments = [_judgment(p.id, ["A", "B"]) for p in pairs]
    figures = three_way(pairs, judgments)
    assert figures["n"] == 3 and math.isclose(figures["accuracy"], 1.0 / 3.0) and figures["judge_tie_rate"] == 0.0
    assert published_for(pairs) is None  # only for the development half's 487 non-tie rows


def _judgment(pair_id: str, verdicts: list[str]) -> Judgment:
    orders = [OrderResult(order, v, {v: 1}, 1.0, "", []) for order, v in zip(("given", "swapped"), verdicts)]  # type: ignore[arg-type]
    return Judgment(pair_id, None, 0.0, "", orders, False, "stub", "stub", "t", {})


class LongerIsBetter(Engine):
    """A rating stub: P(Yes) grows with the answer's length, so it is the "longer wins" rule."""

    name = "stub"

    def __init__(self) -> None:
        super().__init__("stub-model")

    def generate(self, prompts, n=1, sampling=None):
        raise AssertionError("a rating judge does not generate")

    def next_token_logprobs(self, prompts, top_k=20, include=()):
        rated = []
        for prompt in prompts:
            answer = prompt[-1]["content"].split("<answer>")[1].split("</answer>")[0].strip()
            yes = min(0.99, 0.01 + len(answer) / 100)
            rated.append({"Yes": math.log(yes), "No": math.log(1 - yes)})
        return rated


def test_bench_pandalm_reports_binary_three_way_and_the_longer_rule(release, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: LongerIsBetter())
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["bench", "pandalm", "--data-files", str(release), "--template", "rating-yesno-v1", "--report-json", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    # both non-tie golds are the longer answer, and this stub is the longer-wins rule
    assert report["figures"]["all"]["n"] == 2 and report["figures"]["all"]["order_averaged"] == report["figures"]["all"]["longer_wins"] == 1.0
    assert report["three_way"]["n"] == 3 and report["counts"]["no_majority"] == 1
    assert "the longer answer wins" in result.output
    again = CliRunner().invoke(app, ["bench", "pandalm", "--data-files", str(release), "--template", "rating-yesno-v1",
                                     "--report-json", str(tmp_path / "again.json"), "--baseline-report", str(report_path)])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again.json").read_text())["gain_over_baseline"]["all"]["order_averaged"]["gain"] == 0.0
