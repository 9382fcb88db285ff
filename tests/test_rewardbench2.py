"""RewardBench 2: loading hub-schema files, 4-way and ratings scoring, Ties, the headline (by
hand), judging rows with a scripted stand-in engine, resuming, the CLI report and the lm-eval hooks."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from st_eval import cli_options
from st_eval.benchmarks.rewardbench2 import (
    SUBSETS,
    Protocol,
    RewardBench2Row,
    RowResult,
    four_way_score,
    judge_rows,
    kway_prompt,
    load_rewardbench2,
    position_figures,
    rating_prompt,
    ratings_score,
    run_rewardbench2,
    score_rewardbench2,
    score_ties,
)
from st_eval.cli import app
from st_eval.engines.base import Engine, SamplingConfig
from st_eval.errors import InputError
from st_eval.harness import lm_eval_hooks
from st_eval.kway import drawn_position
from st_eval.prompt import load_template


def best_of_4(row_id: str, subset: str = "Math", **extra) -> dict:
    return {"id": row_id, "prompt": f"Q{row_id}", "chosen": ["good"], "rejected": ["r0", "r1", "r2"],
            "num_correct": 1, "subset": subset, **extra}


def ties_row(row_id: str, correct: int, wrong: int) -> dict:
    return {"id": row_id, "prompt": "Name a colour.", "chosen": [f"c{i}" for i in range(correct)],
            "rejected": [f"w{i}" for i in range(wrong)], "num_correct": correct, "subset": "Ties"}


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def ties_result(row_id: str, num_correct: int, ratings) -> RowResult:
    return RowResult(id=row_id, subset="Ties", score=None, invalid=sum(r is None for r in ratings),
                     num_correct=num_correct, ratings=tuple(ratings))


class AnswerKeyJudge(Engine):
    """Stand-in judge (no model): picks the letter of the answer ``good`` in a 4-way prompt, and
    rates an answer 9 if it is ``good`` or starts with ``c`` (a correct Ties answer), else 2;
    answers ``unsure`` to prompts whose question is in ``unsure``."""

    name = "answer-key"

    def __init__(self, unsure: tuple[str, ...] = ()) -> None:
        super().__init__("answer-key")
        self.unsure = unsure
        self.prompts = 0

    def generate(self, prompts, n=1, sampling=None):
        self.prompts += len(prompts)
        return [[self._answer(p[-1]["content"])] * n for p in prompts]

    def _answer(self, text: str) -> str:
        if any(f"\n{q}\n" in text for q in self.unsure):
            return "unsure"
        if "[The Start of Assistant A's Answer]" in text:
            letter = next(letter for letter in "ABCD" if f"[The Start of Assistant {letter}'s Answer]\ngood\n" in text)
            return f"Best is [[{letter}]]"
        response = text.split("[Response]\n", 1)[1].split("\n\n[Your judgement]")[0]
        return "Correct.\n9" if response == "good" or response.startswith("c") else "Wrong.\n2"


# ----------------------------------------------------------------------------- loading


def test_loads_hub_schema_from_jsonl_json_and_parquet(tmp_path):
    rows = [best_of_4("1", "Factuality", source="x"), ties_row("ref:3", 1, 2), ties_row("tied:3", 2, 1)]
    loaded = load_rewardbench2(write_jsonl(tmp_path / "rb2.jsonl", rows))
    assert [r.id for r in loaded] == ["1", "ref:3", "tied:3"]
    assert loaded[0].answers == ("good", "r0", "r1", "r2") and loaded[0].metadata == {"source": "x"}
    assert loaded[2].num_correct == 2
    assert [r.id for r in load_rewardbench2(tmp_path / "rb2.jsonl", subsets=["Ties"])] == ["ref:3", "tied:3"]
    (tmp_path / "rb2.json").write_text(json.dumps(rows), encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([best_of_4("9", "Focus")]), tmp_path / "rb2.parquet")
    assert len(load_rewardbench2([tmp_path / "rb2.json", tmp_path / "rb2.parquet"])) == 4


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": None}, r"line 2: field 'prompt' is missing or not a string"),
        ({"chosen": "good"}, r"line 2: field 'chosen' must be a non-empty list of strings"),
        ({"rejected": ["r0", 3, "r2"]}, r"line 2: field 'rejected' must be a non-empty list of strings"),
        ({"subset": "Chat"}, r"line 2: field 'subset' must be one of Factuality, Precise IF, .*got 'Chat'"),
        ({"num_correct": 2}, r"line 2: field 'num_correct' must equal the number of chosen answers \(1\), got 2"),
        ({"rejected": ["r0", "r1"]}, r"line 2: fields 'chosen'/'rejected': a Math row needs exactly 1 chosen and at least 3"),
        ({"id": "1"}, r"line 2: field 'id': duplicate id '1' \(first at .*line 1\)"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [best_of_4("1"), {**best_of_4("2"), **bad}])
    with pytest.raises(InputError, match=message) as err:
        load_rewardbench2(path)
    assert str(err.value).startswith(str(tmp_path / "bad.jsonl"))


def test_ties_ids_unknown_subsets_and_empty_selections_are_reported(tmp_path):
    with pytest.raises(InputError, match=r"line 1: field 'id': a Ties row needs an id 'ref:<n>' or 'tied:<n>', got 'ties-3'"):
        load_rewardbench2(write_jsonl(tmp_path / "a.jsonl", [ties_row("ties-3", 1, 2)]))
    with pytest.raises(InputError, match=r"line 1: field 'chosen': a 'tied' Ties row needs at least 2 correct answers, got 1"):
        load_rewardbench2(write_jsonl(tmp_path / "b.jsonl", [ties_row("tied:3", 1, 2)]))
    path = write_jsonl(tmp_path / "c.jsonl", [best_of_4("1")])
    with pytest.raises(InputError, match=r"unknown RewardBench 2 subset\(s\) 'maths'"):
        load_rewardbench2(path, subsets=["maths"])
    with pytest.raises(InputError, match=r"no RewardBench 2 rows found in subsets Focus"):
        load_rewardbench2(path, subsets=["Focus"])


# ----------------------------------------------------------------------------- scoring by hand


def test_four_way_and_ratings_row_scores_by_hand():
    assert (four_way_score("C", 2), four_way_score("A", 2), four_way_score(None, 2)) == (1.0, 0.0, 0.25)
    assert ratings_score([9, 5, 3, 2]) == 1.0
    assert ratings_score([8, 8, 3, None]) == 0.5
    assert ratings_score([8, 8, 8, 1]) == pytest.approx(1 / 3)
    assert ratings_score([7, 9, 3, 2]) == 0.0
    assert ratings_score([None, 5, 2, 1]) == 0.0  # an unparseable rating never wins
    assert ratings_score([None, None, None, None]) == 0.25


def test_ties_score_by_hand_with_equal_correct_ratings_and_invalid_ratings():
    results = [
        ties_result("ref:1", 1, [9, 5, 4, 3]),  # accurate, gap 4
        ties_result("tied:1", 3, [8, 8, 7, 5, 2]),  # accurate, spread 1, gap 2
        ties_result("ref:2", 1, [6, 7, 2]),  # not accurate, gap -1
        ties_result("tied:2", 2, [7, 7, 3]),  # equal correct ratings: spread 0, gap 4
        ties_result("ref:3", 1, [None, 4, 4]),  # invalid counts as -1: gap -5; no tied:3, so unpaired
    ]
    figures = score_ties(results)
    assert figures["ref_accuracy"] == pytest.approx(1 / 3)
    assert figures["tied_accuracy"] == 1.0
    assert figures["correctness_preferred"] == 1.0  # 2 > 1 and 4 > 0
    assert figures["correctness_preferred_hard"] == 0.5  # min(4, 2) > 1; min(-1, 4) > 0 fails
    margin = (math.tanh(2 / 1 - 1) + -1.0) / 2  # -1 / 0 is -inf, tanh(-inf) = -1
    assert figures["correctness_margin_score"] == pytest.approx(margin)
    expected = 0.30 * 1.0 + 0.30 / 3 + 0.20 * 1.0 + 0.20 * 0.5 + 0.01 * margin
    assert figures["score"] == pytest.approx(expected)
    assert (figures["ref_prompts"], figures["tied_prompts"], figures["paired_prompts"], figures["invalid"]) == (3, 2, 2, 1)


def test_ties_all_ratings_invalid_and_zero_over_zero_margin():
    figures = score_ties([ties_result("ref:1", 1, [None, None]), ties_result("tied:1", 2, [None, None, None])])
    assert figures["score"] == 0.0 and figures["correctness_margin_score"] == 0.0  # every rating -1: 0/0 -> 0
    assert figures["invalid"] == 5


def test_ties_positive_gap_over_zero_spread_and_unpaired_prompts():
    figures = score_ties([ties_result("ref:1", 1, [9, 2]), ties_result("tied:1", 2, [6, 6, 1])])
    assert figures["correctness_margin_score"] == 1.0  # min(7, 5) / 0 is +inf
    assert figures["score"] == pytest.approx(0.30 + 0.30 + 0.20 + 0.20 + 0.01)
    alone = score_ties([ties_result("tied:4", 2, [5, 5, 1])])
    assert (alone["ref_accuracy"], alone["tied_accuracy"], alone["score"], alone["paired_prompts"]) == (0.0, 1.0, None, 0)


def test_headline_is_the_unweighted_mean_of_the_six_subsets():
    results = [
        RowResult("f1", "Factuality", 1.0, 0), RowResult("f2", "Factuality", 0.0, 0), RowResult("p1", "Precise IF", 0.25, 1),
        RowResult("m1", "Math", 0.5, 0), RowResult("s1", "Safety", 0.0, 0), RowResult("o1", "Focus", 0.25, 4),
        ties_result("ref:1", 1, [9, 2]), ties_result("tied:1", 2, [6, 6, 1]),
    ]
    report = score_rewardbench2(results)
    assert list(report["subsets"]) == list(SUBSETS)
    assert report["subsets"]["Factuality"] == {"score": 0.5, "n": 2, "invalid": 0, "invalid_rate": 0.0}
    assert report["subsets"]["Ties"]["score"] == pytest.approx(1.01)
    assert report["headline"] == pytest.approx((0.5 + 0.25 + 0.5 + 0.0 + 0.25 + 1.01) / 6)
    assert report["missing_subsets"] == []
    partial = score_rewardbench2([RowResult("1", "Math", 1.0, 0), ties_result("tied:1", 2, [5, 5, 1])])
    assert partial["headline"] == 1.0 and partial["missing_subsets"] == ["Factuality", "Precise IF", "Safety", "Focus", "Ties"]
    assert score_rewardbench2([])["headline"] is None


# ----------------------------------------------------------------------------- judging


def sample_rows(tmp_path) -> list[RewardBench2Row]:
    rows = [best_of_4(str(i), subset) for i, subset in enumerate(SUBSETS[:5])] + [ties_row("ref:1", 1, 2), ties_row("tied:1", 2, 2)]
    return load_rewardbench2(write_jsonl(tmp_path / "rb2.jsonl", rows))


def test_official_mode_shows_the_correct_answer_at_its_drawn_position(tmp_path):
    rows = sample_rows(tmp_path)
    engine = AnswerKeyJudge(unsure=("Q1",))
    results = [r for r, _ in judge_rows(engine, rows, Protocol(seed=5), SamplingConfig())]
    for row, result in zip(rows[:5], results[:5]):
        assert result.positions == (drawn_position(row.id, 5, 4),)
    assert [r.score for r in results[:5]] == [1.0, 0.25, 1.0, 1.0, 1.0]  # Q1 (Precise IF) unparseable
    assert results[1].invalid == 1 and results[1].verdicts == (None,)
    assert results[5].ratings == (9.0, 2.0, 2.0) and results[6].ratings == (9.0, 9.0, 2.0, 2.0)
    report = score_rewardbench2(results)
    assert report["subsets"]["Ties"]["score"] == pytest.approx(1.01)
    # the prompt shown is the template's, with answers arranged around the drawn position
    prompt = kway_prompt(rows[0], 2, load_template("rewardbench2-4way"))
    assert "[The Start of Assistant C's Answer]\ngood\n" in prompt[-1]["content"]
    assert rating_prompt(rows[5], "c0", load_template("rewardbench2-ratings-ties"))[0]["content"].endswith("[Response]\nc0\n\n[Your judgement]")


def test_all_positions_and_ratings_modes(tmp_path):
    rows = sample_rows(tmp_path)
    engine = AnswerKeyJudge()
    results = [r for r, _ in judge_rows(engine, rows, Protocol(mode="all-positions"), SamplingConfig())]
    assert all(r.positions == (0, 1, 2, 3) and r.verdicts == ("A", "B", "C", "D") and r.score == 1.0 for r in results[:5])
    figures = position_figures(results)
    assert figures["accuracy_by_position"] == {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0} and figures["judgments"] == 20
    assert engine.prompts == 20 + 3 + 4
    rated = [r for r, _ in judge_rows(AnswerKeyJudge(), rows, Protocol(mode="ratings"), SamplingConfig())]
    assert [r.ratings for r in rated[:5]] == [(9.0, 2.0, 2.0, 2.0)] * 5 and all(r.score == 1.0 for r in rated[:5])


def test_protocol_refuses_templates_of_the_wrong_kind():
    with pytest.raises(InputError, match="is of kind 'pairwise'; RewardBench 2 needs a 'kway' template"):
        Protocol(kway_template="pairwise-v1")
    with pytest.raises(InputError, match="--mode must be one of official, all-positions, ratings"):
        Protocol(mode="best")


def test_run_writes_each_row_and_resumes_without_rejudging(tmp_path):
    rows = sample_rows(tmp_path)
    output = tmp_path / "rows.jsonl"
    first = run_rewardbench2(AnswerKeyJudge(), rows[:4], Protocol(), SamplingConfig(), output=output, progress=False, chunk_size=2)
    engine = AnswerKeyJudge()
    again = run_rewardbench2(engine, rows, Protocol(), SamplingConfig(), output=output, progress=False)
    assert again[:4] == first and engine.prompts == 1 + 3 + 4  # only the rows not yet judged
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == [r.id for r in rows] and lines[0]["raw"][0].startswith("Best is [[")
    with pytest.raises(InputError, match=r"rows.jsonl: line 1: field 'protocol.seed' is 0 in this file, 9 in this run.*--overwrite"):
        run_rewardbench2(AnswerKeyJudge(), rows, Protocol(seed=9), SamplingConfig(), output=output, progress=False)
    with pytest.raises(InputError, match=r"line 1: field 'sampling.max_new_tokens' is 512 in this file, 64 in this run"):
        run_rewardbench2(AnswerKeyJudge(), rows, Protocol(), SamplingConfig(max_new_tokens=64), output=output, progress=False)
    other = AnswerKeyJudge()
    other.model = "another-judge"
    with pytest.raises(InputError, match=r"line 1: field 'model' is 'answer-key' in this file, 'another-judge' in this run"):
        run_rewardbench2(other, rows, Protocol(), SamplingConfig(), output=output, progress=False)


def test_invalid_rate_counts_positions_and_sampled_ratings():
    kway = RowResult.from_kway("1", "Math", 1, [0, 1, 2, 3], ["A", None, None, "D"])
    rated = RowResult.from_ratings("2", "Focus", 1, [7.0, None, 3.0, 2.0], invalid=3)  # 4 answers x 2 samples
    report = score_rewardbench2([kway, rated], samples=2)
    assert report["subsets"]["Math"]["invalid_rate"] == 0.5
    assert report["subsets"]["Focus"]["invalid_rate"] == 3 / 8
    assert report["invalid_rate"] == (2 + 3) / (4 + 8)


def test_cli_report(tmp_path, monkeypatch):
    engine = AnswerKeyJudge(unsure=("Q4",))
    monkeypatch.setattr(cli_options, "build_engine", lambda *a, **k: engine)
    sample_rows(tmp_path)
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["bench", "rewardbench2", "--data-files", str(tmp_path / "rb2.jsonl"), "--report-json", str(report_path), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "headline" in result.output and "Ties terms" in result.output
    report = json.loads(report_path.read_text())
    assert report["subsets"]["Focus"] == {"score": 0.25, "n": 1, "invalid": 1, "invalid_rate": 1.0}  # Q4 is the Focus row
    assert report["invalid_rate"] == 1 / (5 + 3 + 4)  # one 4-way judgment per row, one rating per Ties answer
    table = " ".join(result.output.split())
    assert "invalid %" in table and "100.0" in table  # the Focus row's rate, beside its score
    assert report["headline"] == pytest.approx((4 * 1.0 + 0.25 + 1.01) / 6)
    assert report["templates"] == {"best_of_4": "rewardbench2-4way", "ties": "rewardbench2-ratings-ties"}
    assert [row["positions"] for row in report["rows"][:5]] == [[drawn_position(str(i), 3, 4)] for i in range(5)]
    bad = CliRunner().invoke(app, ["bench", "rewardbench2", "--data-files", str(tmp_path / "rb2.jsonl"), "--allow-tie"])
    assert isinstance(bad.exception, InputError) and "--allow-tie does not apply to RewardBench 2" in str(bad.exception)


# ----------------------------------------------------------------------------- lm-eval hooks


def test_lm_eval_documents_score_like_the_cli(tmp_path):
    rows = sample_rows(tmp_path)
    docs = list(lm_eval_hooks.rewardbench2_dataset(data_files=str(tmp_path / "rb2.jsonl"), seed=3)["test"])
    assert len(docs) == 5 + 3 + 4  # one 4-way document per best-of-4 row, one per Ties answer
    engine = AnswerKeyJudge(unsure=("Q4",))
    items = [lm_eval_hooks.process_rewardbench2(d, engine.generate([[{"role": "user", "content": d["judge_user"]}]])[0])["score"] for d in docs]
    cli = score_rewardbench2(run_rewardbench2(AnswerKeyJudge(unsure=("Q4",)), rows, Protocol(seed=3), SamplingConfig(), progress=False))
    assert lm_eval_hooks.rewardbench2_score(items) == pytest.approx(cli["headline"])
    assert lm_eval_hooks.focus(items) == 0.25 and lm_eval_hooks.ties(items) == pytest.approx(1.01)
    invalid = [lm_eval_hooks.process_rewardbench2(d, engine.generate([[{"role": "user", "content": d["judge_user"]}]])[0])["invalid"] for d in docs]
    assert lm_eval_hooks.invalid_share(invalid) == pytest.approx(cli["invalid_rate"])  # the harness reports it too
    kway = next(d for d in docs if d["kind"] == "kway")
    assert kway["judge_system"] == load_template("rewardbench2-4way").system and kway["position"] == drawn_position(kway["id"], 3, 4)
    ratings_docs = list(lm_eval_hooks.rewardbench2_dataset(data_files=str(tmp_path / "rb2.jsonl"), mode="ratings")["test"])
    assert len(ratings_docs) == 5 * 4 + 3 + 4 and all(d["judge_system"] == "" for d in ratings_docs)


def test_hub_path_reads_allenai_reward_bench_2_test_split(monkeypatch):
    import datasets

    calls = []

    def local_stand_in_for_the_hub(name, split):  # tests never reach the hub
        calls.append((name, split))
        rows = [best_of_4("7", "Safety"), {**ties_row("ref:2", 1, 1), "id": "ref:2"}]
        return datasets.Dataset.from_list([{**r, "num_rejected": len(r["rejected"])} for r in rows])

    monkeypatch.setattr(datasets, "load_dataset", local_stand_in_for_the_hub)
    rows = load_rewardbench2()
    assert calls == [("allenai/reward-bench-2", "test")]
    assert [(r.id, r.subset) for r in rows] == [("7", "Safety"), ("ref:2", "Ties")] and rows[0].metadata == {"num_rejected": 3}

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/reward-bench-2' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(InputError, match="cannot load allenai/reward-bench-2.*--data-files"):
        load_rewardbench2()
