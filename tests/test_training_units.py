"""Fast tests of the training stages' parsing, filtering, balancing, config validation and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from st_eval.errors import InputError
from st_eval.jsonl import read_jsonl
from st_eval.records import Message, Pair
from st_eval.training.annotation import Example, balance_examples, judge_samples, select_examples, trim_after_verdict
from st_eval.training.artifacts import resumable_chunks
from st_eval.training.config import SelectionConfig, load_recipe, recipe_from_dict
from st_eval.training.instruction_pool import build_pool, builtin_instructions
from st_eval.training.selection import keep, parse_tags
from st_eval.training.similar_instruction import check_pair, finish_response, make_pair, pair_from_dict, parse_similar_instruction

REPO = Path(__file__).resolve().parent.parent


def _pair(label: str = "A", pid: str = "p1") -> Pair:
    return Pair(pid, [Message("user", "Name a prime number.")], "7", "8", label=label)  # type: ignore[arg-type]


# --- selection: tag parsing -------------------------------------------------------------------


def test_parse_tags_accepts_the_three_lines_in_any_order_and_case():
    tags = parse_tags("complexity: 7\nCategory: Math Reasoning\nLength: long.\n")
    assert (tags.category, tags.complexity, tags.length, tags.valid) == ("math reasoning", 7, "long", True)


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("", "empty"),
        ("Category: coding\nComplexity: 3\nLength: short\nThis one is easy.", "extra_text"),
        ("Category: poetry\nComplexity: 3\nLength: short", "bad_category"),
        ("Category: coding\nComplexity: 11\nLength: short", "bad_complexity"),
        ("Category: coding\nComplexity: three\nLength: short", "bad_complexity"),
        ("Category: coding\nComplexity: 3\nLength: huge", "bad_length"),
        ("Category: coding\nLength: short", "missing_complexity"),
        ("Category: coding\nCategory: advice\nComplexity: 3\nLength: short", "repeated_category"),
    ],
)
def test_parse_tags_is_strict(output, reason):
    tags = parse_tags(output)
    assert not tags.valid and tags.reason == reason


def test_selection_filters_by_category_complexity_length_and_untagged():
    tags = parse_tags("Category: coding\nComplexity: 5\nLength: medium")
    assert keep(tags, SelectionConfig())
    assert not keep(tags, SelectionConfig(categories=["advice"]))
    assert not keep(tags, SelectionConfig(min_complexity=6))
    assert not keep(tags, SelectionConfig(lengths=["long"]))
    untagged = parse_tags("no idea")
    assert not keep(untagged, SelectionConfig())
    assert keep(untagged, SelectionConfig(keep_untagged=True))


# --- synthesis: x' parsing and degenerate pairs -----------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected", "reason"),
    [
        ("Instruction: What is the largest city in Peru?", "What is the largest city in Peru?", None),
        ('New request: "List three rivers in Peru."\n', "List three rivers in Peru.", None),
        ("What is the largest city in Peru?", None, "unlabelled"),
        ("Instruction: Name a river.\nAnswer: the Amazon.", None, "multi_line"),
        ("Instruction:   ", None, "empty"),
        ("", None, "empty"),
        ("Instruction: what is the capital  of PERU?", None, "identical"),
        ("Instruction: What is the largest city in France by population?", None, "copied_example"),
    ],
)
def test_parse_similar_instruction_is_strict(output, expected, reason):
    assert parse_similar_instruction(output, "What is the capital of Peru?") == (expected, reason)


def test_finish_response_drops_or_trims_truncated_and_check_pair_drops_degenerate():
    words = lambda text: len(text.split())  # noqa: E731
    assert finish_response("  ", 10, words) == (None, "empty_response")
    assert finish_response("Lima is the capital.", 10, words) == ("Lima is the capital.", None)
    cut = "Lima is the capital of Peru. It sits on the coast and"
    assert finish_response(cut, 8, words) == (None, "truncated")
    assert finish_response(cut, 8, words, "trim") == ("Lima is the capital of Peru.", None)
    assert finish_response("no sentence end at all here", 3, words, "trim") == (None, "truncated")
    assert finish_response(cut, 8, None) == (cut, None)  # no tokenizer: truncation is not checked
    assert check_pair("Lima.", " ") == "empty_response"
    assert check_pair("Lima is the capital.", "lima is  the capital.") == "identical_responses"
    assert check_pair("Lima.", "Cusco.") is None


def test_make_pair_places_the_winner_at_random_and_labels_it():
    from st_eval.training.instruction_pool import Instruction

    labels = set()
    for n in range(20):
        item = Instruction(f"i{n}", "Say hi.", "builtin")
        pair = make_pair(item, "Hi!", "Bye.", "similar_instruction", {"similar_instruction": "Say bye."}, seed=0)
        winner = pair.response_a if pair.label == "A" else pair.response_b
        assert winner == "Hi!"
        labels.add(pair.label)
        assert pair_from_dict(json.loads(json.dumps(pair.to_dict()))) == pair
    assert labels == {"A", "B"}


# --- annotation: rejection sampling and balancing ---------------------------------------------


def test_judge_samples_maps_swapped_verdicts_back_before_checking_the_winner():
    pair = _pair("A")
    given = judge_samples(pair, "given", ["B wins.\nFinal verdict: [[B]]", "A is right.\nFinal verdict: [[A]]", "hmm"], "t")
    assert (given["valid"], given["correct"], given["shown_verdict"]) == (2, 1, "A")
    assert given["rejected"].endswith("[[B]]")
    swapped = judge_samples(pair, "swapped", ["Final verdict: [[A]]", "The second is right.\nFinal verdict: [[B]]"], "t")
    assert (swapped["correct"], swapped["shown_verdict"]) == (1, "B")
    none = judge_samples(pair, "given", ["no verdict here", ""], "t")
    assert none["kept"] is None and none["rejected"] == "no verdict here"


def test_trim_after_verdict_drops_trailing_chatter_but_keeps_the_verdict():
    text = "A is correct.\nFinal verdict: [[A]]\nThanks for asking!\nHave a nice day."
    assert trim_after_verdict(text) == "A is correct.\nFinal verdict: [[A]]"
    assert trim_after_verdict("Final verdict: [[B]]") == "Final verdict: [[B]]"


def _example(verdict: str, n: int) -> Example:
    return Example(f"p{n}", "given", [{"role": "user", "content": "x"}], f"Final verdict: [[{verdict}]]", verdict)


def test_balance_examples_equalizes_a_and_b():
    examples = [_example("A", n) for n in range(5)] + [_example("B", n) for n in range(5, 7)]
    balanced = balance_examples(examples, seed=1)
    assert sorted(e.shown_verdict for e in balanced) == ["A", "A", "B", "B"]
    assert balance_examples([_example("A", 0)], seed=1) == []


def test_select_examples_drops_pairs_without_a_kept_judgment_and_counts():
    pairs = [_pair("A", "p1"), _pair("B", "p2")]
    rows = [
        {"key": "p1", "orders": [judge_samples(pairs[0], "given", ["Final verdict: [[A]]"], "t"),
                                 judge_samples(pairs[0], "swapped", ["Final verdict: [[B]]"], "t")]},
        {"key": "p2", "orders": [judge_samples(pairs[1], "given", ["nothing"], "t"),
                                 judge_samples(pairs[1], "swapped", ["Final verdict: [[B]]"], "t")]},
    ]
    examples, stats = select_examples(rows, pairs, template="pairwise-short-v1", balance=True, seed=0)
    assert stats["pairs_kept"] == 1 and stats["pair_orders_kept"] == 2
    assert {e.pair_id for e in examples} == {"p1"}
    assert stats["examples_A"] == stats["examples_B"] == 1
    row = examples[0].sft_row()
    assert row["prompt"][-1]["role"] == "user" and row["completion"][0]["role"] == "assistant"


# --- config validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "bogus": 1}, "field 'bogus' is not a recipe field"),
        ({"name": "x", "selection": {"categories": ["poetry"]}}, "field 'selection.categories[0]'"),
        ({"name": "x", "train": {"method": "qlora"}}, "field 'train.method' must be one of lora, full"),
        ({"name": "x", "annotation": {"samples": 0}}, "field 'annotation.samples' must be >= 1"),
        ({"name": "x", "annotation": {"samples": "many"}}, "field 'annotation.samples' must be int"),
        ({"name": "x", "evaluation": {"select_on": "llmbar"}}, "field 'evaluation.select_on'"),
        ({"name": "x", "pool": {"sources": [{"kind": "file"}]}}, "field 'pool.sources[0].path' is required"),
        ({"name": "x", "template": "no-such-template"}, "field 'template'"),
        ({}, "field 'name' is required"),
    ],
)
def test_recipe_validation_names_the_field(data, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        recipe_from_dict(data)


def test_exponent_floats_read_as_floats_in_yaml_and_a_runs_recipe_json(tmp_path):
    """PyYAML reads ``1e-4`` (no dot) as a string, and json.dumps writes 5e-06 so: both are floats."""
    import json

    path = tmp_path / "r.yaml"
    path.write_text("name: r\ntrain: {learning_rate: 1e-4}\ndpo: {learning_rate: 5E-6}\n")
    recipe = load_recipe(path)
    assert recipe.train.learning_rate == 1e-4 and recipe.dpo.learning_rate == 5e-6
    stored = tmp_path / "recipe.json"
    stored.write_text(json.dumps(recipe.to_dict()))
    assert load_recipe(stored).dpo.learning_rate == 5e-6
    with pytest.raises(InputError, match="field 'train.learning_rate' must be float, got 'fast'"):
        recipe_from_dict({"name": "r", "train": {"learning_rate": "fast"}})


@pytest.mark.parametrize("path", sorted((REPO / "training" / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    if recipe.train.launcher == "accelerate":
        assert Path(recipe.train.accelerate_config).exists()


# --- pool ---------------------------------------------------------------------------------------


def test_builtin_pool_has_a_few_hundred_unique_instructions_over_the_categories():
    items = builtin_instructions()
    assert len(items) >= 200
    assert len({i.text for i in items}) == len(items)
    assert len({i.tags["source_category"] for i in items}) >= 12


def test_pool_deduplicates_sources_and_applies_limits(tmp_path):
    file = tmp_path / "mine.jsonl"
    builtin = builtin_instructions()[0].text
    file.write_text(
        "\n".join(json.dumps({"prompt": t}) for t in [builtin.upper(), "  A brand new   request?  ", "a brand new request?", "hi"]) + "\n"
    )
    recipe = recipe_from_dict({"name": "x", "pool": {"sources": [{"kind": "file", "path": str(file), "field": "prompt"}, "builtin"]}})
    pool, stats = build_pool(recipe)
    assert stats["duplicates"] == 2 and stats["too_short"] == 1
    assert stats["kept"] == len(pool) == len(builtin_instructions()) + 1
    recipe.pool.limit = 5
    assert len(build_pool(recipe)[0]) == 5


def test_pool_reads_mt_bench_questions(shared_data, monkeypatch):
    monkeypatch.setenv("ST_EVAL_SHARED_DATA", str(shared_data))
    recipe = recipe_from_dict({"name": "x", "pool": {"sources": [{"kind": "mt_bench"}]}})
    pool, stats = build_pool(recipe)
    assert stats["read"] == 80 and pool[0].source == "mt_bench"


def test_llmbar_benchmark_loads_as_labelled_pairs(shared_data, monkeypatch):
    from st_eval.training.evaluation import load_benchmark

    monkeypatch.setenv("ST_EVAL_SHARED_DATA", str(shared_data))
    recipe = recipe_from_dict({"name": "x", "evaluation": {"benchmarks": [{"name": "n", "path": "llmbar/natural.json", "limit": 5}]}})
    pairs = load_benchmark(recipe, recipe.evaluation.benchmarks[0])
    assert len(pairs) == 5 and {p.label for p in pairs} <= {"A", "B"}


def test_an_absent_optional_benchmark_is_skipped_and_an_absent_required_one_fails(tmp_path, monkeypatch):
    from st_eval.errors import InputError
    from st_eval.training.evaluation import load_benchmarks

    monkeypatch.setenv("ST_EVAL_SHARED_DATA", str(tmp_path))  # a data folder without the file
    present = tmp_path / "pairs.jsonl"
    present.write_text('{"id": "1", "instruction": "2+2?", "response_a": "4", "response_b": "5", "label": "A"}\n')
    specs = [{"name": "here", "path": str(present)}, {"name": "gone", "path": "llmbar/natural.json", "required": False}]
    recipe = recipe_from_dict({"name": "x", "evaluation": {"benchmarks": specs}})
    loaded, skipped = load_benchmarks(recipe)
    assert list(loaded) == ["here"] and len(loaded["here"]) == 1
    assert list(skipped) == ["gone"] and "llmbar/natural.json: file not found" in skipped["gone"]
    recipe.evaluation.benchmarks[1].required = True
    with pytest.raises(InputError, match="llmbar/natural.json: file not found"):
        load_benchmarks(recipe)


# --- resume -------------------------------------------------------------------------------------


def test_resumable_chunks_skips_finished_items_and_ignores_a_torn_line(tmp_path):
    partial = tmp_path / "stage.partial.jsonl"
    calls: list[list[int]] = []

    def work(chunk):
        calls.append(list(chunk))
        return [{"key": str(i), "value": i * i} for i in chunk]

    def crash_after_first_chunk(chunk):
        if calls:
            raise KeyboardInterrupt
        return work(chunk)

    with pytest.raises(KeyboardInterrupt):
        resumable_chunks(list(range(6)), str, crash_after_first_chunk, partial, chunk_size=2, desc="t")
    with partial.open("a") as handle:
        handle.write('{"key": "2", "val')  # a crash in the middle of a line
    rows = resumable_chunks(list(range(6)), str, work, partial, chunk_size=2, desc="t")
    assert [r["value"] for r in rows] == [0, 1, 4, 9, 16, 25]
    assert calls == [[0, 1], [2, 3], [4, 5]]
    assert len(read_jsonl(partial)) == 6


def test_run_dir_refuses_to_overwrite_or_resume_with_another_recipe(tmp_path):
    from st_eval.training.loop import prepare_run_dir

    recipe = recipe_from_dict({"name": "x"})
    prepare_run_dir(recipe, tmp_path, resume=False)
    with pytest.raises(InputError, match="--resume"):
        prepare_run_dir(recipe, tmp_path, resume=False)
    recipe.iterations = 3  # more iterations may be added on resume
    prepare_run_dir(recipe, tmp_path, resume=True)
    other = recipe_from_dict({"name": "x", "template": "pairwise-short-v1"})
    with pytest.raises(InputError, match="'template' differs"):
        prepare_run_dir(other, tmp_path, resume=True)


def test_report_writes_table_and_plot(tmp_path):
    from st_eval.training.report import write_report

    evals = {"synthetic": {"order_averaged": 0.6, "accuracy": 0.5, "consistency": 0.4, "invalid_rate": 0.9}, "llmbar": {"accuracy": 0.25, "consistency": None, "invalid_rate": 1.0}}
    summary = {
        "recipe": "x", "seed_model": "m", "template": "t", "select_on": "synthetic", "benchmarks": ["llmbar"],
        "stages": {"pool": {"kept": 10}}, "timings": {"pool": 1.0},
        "best": {"iteration": 1, "path": "/j"},
        "iterations": [
            {"iteration": 0, "eval": evals, "judge": None, "trained": None},
            {"iteration": 1, "eval": evals, "judge": "/j", "trained": True, "annotation": {"pairs": 4, "pair_orders_kept": 2, "examples": 2}},
        ],
        "recipe_changes": [{"from_iteration": 2, "changed": {"train.init": ["seed", "previous"]}}],
    }
    paths = write_report(tmp_path, summary)
    text = paths["md"].read_text()
    assert "| 1 | /j | 0.600 | 0.500 |" in text and "kept yield" in text
    assert "from iteration 2 on: `train.init` 'seed' -> 'previous'" in text
    assert paths["png"].stat().st_size > 1000


def test_selection_counts_reasons_and_agreement_with_known_categories(tmp_path):
    from st_eval.training.instruction_pool import Instruction
    from st_eval.training.selection import select_instructions

    class Scripted:
        """Stands in for an engine: returns fixed tag answers (this test is about the bookkeeping)."""

        name, model = "scripted", "scripted"

        def generate(self, prompts, n=1, sampling=None):
            answers = ["Category: coding\nComplexity: 4\nLength: short", "Category: advice\nComplexity: 9\nLength: long", "whatever"]
            return [[answers[i % 3]] for i in range(len(prompts))]

    pool = [Instruction(f"i{n}", "text", "builtin", {"source_category": "coding"}) for n in range(3)]
    kept, stats = select_instructions(pool, Scripted(), SelectionConfig(max_complexity=8), seed=0, partial=tmp_path / "p.jsonl")
    assert [i.id for i in kept] == ["i0"] and kept[0].tags["category"] == "coding"
    assert stats == {"tagged": 2, "untagged": 1, "untagged_extra_text": 1, "known_category": 2, "agrees_with_known": 1, "kept": 1}


def test_best_iteration_breaks_accuracy_ties_on_consistency_then_forced_rate():
    from st_eval.training.loop import _select_best

    recipe = recipe_from_dict({"name": "x"})

    def it(k, acc, consistency, forced):
        return {"iteration": k, "judge": f"/j{k}" if k else None,
                "eval": {"synthetic": {"accuracy": acc, "consistency": consistency, "forced_rate": forced}}}

    assert _select_best(recipe, [it(0, 0.0, 0.0, 1.0), it(1, 0.0, 0.0, 0.6), it(2, 0.0, 0.0, 0.6)], "/seed")["path"] == "/j1"
    assert _select_best(recipe, [it(0, 0.0, 0.5, 1.0), it(1, 0.0, 0.25, 0.0)], "/seed")["path"] == "/seed"
    assert _select_best(recipe, [it(0, 0.5, 0.0, 1.0), it(1, 0.25, 1.0, 0.0)], "/seed")["iteration"] == 0
    assert _select_best(recipe, [it(0, None, None, None), it(1, 0.0, None, None)], "/seed")["iteration"] == 1


def test_train_table_has_a_row_per_iteration_and_set(capsys):
    from st_eval.training.command import _print_table

    m = {"accuracy": 0.25, "order_accuracy": {"given": 0.75, "swapped": 0.125}, "consistency": 0.5, "invalid_rate": 0.0, "forced_rate": 0.625}
    _print_table({"recipe": "x", "benchmarks": ["llmbar"], "iterations": [
        {"iteration": 0, "eval": {"synthetic": m, "llmbar": m}, "trained": None},
        {"iteration": 1, "eval": {"synthetic": m, "llmbar": m}, "trained": True, "annotation": {"pairs": 16, "pair_orders_kept": 26}},
    ]})
    out = capsys.readouterr().out
    assert out.count("llmbar") == 2 and out.count("synthetic") == 2
    assert "0.62" in out and "0.75/0.12" in out and "26/32" in out


def test_a_rating_runs_report_plots_sets_with_intervals_and_the_loss_and_gives_the_terminal_its_gains(tmp_path):
    from st_eval.training.report import write_report

    def evals(right: int) -> dict:
        scores = {f"p{i}": [float(i < right), int(i < right)] for i in range(10)}
        figures = {"order_averaged": right / 10, "accuracy": right / 10, "scores": scores}
        return {"synthetic": {**figures, "subsets": {"degraded": figures}}, "llmbar": figures}

    summary = {
        "recipe": "x", "seed_model": "m", "template": "rating-yesno-v1", "select_on": "synthetic", "benchmarks": ["llmbar"],
        "stages": {"pool": {"kept": 10}}, "timings": {"pool": 1.0}, "best": {"iteration": 1, "path": "/j"},
        "iterations": [
            {"iteration": 0, "eval": evals(4), "judge": None, "trained": None},
            {"iteration": 1, "eval": evals(8), "judge": "/j", "trained": True, "annotation": {"pairs": 4, "examples": 4},
             "training": {"reward": {"losses": [0.69, 0.5, 0.3]}}},
        ],
    }
    paths = write_report(tmp_path, summary)
    assert paths["png"].stat().st_size > 1000
    assert summary["gains_over_seed"]["1"]["llmbar"]["order_averaged"]["gain"] == pytest.approx(0.4)
    assert summary["table"][1]["llmbar ord-avg"] == 0.8


def test_a_resumed_run_may_change_how_later_iterations_train_and_records_it(tmp_path):
    """annotation / train / dpo / grpo shape only the iterations run under them: once every started
    iteration is finished they may change, from the next iteration on (recipe.changes.json);
    while one is half done, or where synthesis made fewer candidates than hard_negatives asks, not."""
    from st_eval.training.loop import prepare_run_dir

    base = {"name": "x", "template": "rating-yesno-v1", "synthesis": {"method": "pair_sources", "neighbours": 1, "sources": [{"kind": "neighbour"}]}}
    prepare_run_dir(recipe_from_dict(base), tmp_path, resume=False)
    (tmp_path / "iter-01").mkdir()
    later = recipe_from_dict({**base, "train": {"init": "previous", "learning_rate": 5e-5}})
    with pytest.raises(InputError, match="iteration 1 was started under the old values"):
        prepare_run_dir(later, tmp_path, resume=True)
    (tmp_path / "iter-01" / "eval.json").write_text("{}")
    prepare_run_dir(later, tmp_path, resume=True)
    history = json.loads((tmp_path / "recipe.changes.json").read_text())
    assert history == [{"from_iteration": 2, "changed": {"train.init": ["seed", "previous"], "train.learning_rate": [0.0002, 5e-05]}}]
    assert json.loads((tmp_path / "recipe.json").read_text())["train"]["init"] == "previous"
    prepare_run_dir(later, tmp_path, resume=True)  # the same recipe again: nothing new to record
    assert len(json.loads((tmp_path / "recipe.changes.json").read_text())) == 1
    (tmp_path / "synthesis.json").write_text("{}")
    mining = recipe_from_dict({**base, "train": {"init": "previous", "learning_rate": 5e-5}, "annotation": {"hard_negatives": 3}})
    with pytest.raises(InputError, match="'annotation.hard_negatives' .*made 1"):
        prepare_run_dir(mining, tmp_path, resume=True)
    with pytest.raises(InputError, match="'seed' differs"):  # what every iteration shares still may not change
        prepare_run_dir(recipe_from_dict({**base, "seed": 4}), tmp_path, resume=True)
