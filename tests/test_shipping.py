"""Shipping a trained judge: the adapter that ships, and a card whose figures are its report's."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

from st_eval.embedded import SEED_MODEL  # noqa: E402
from st_eval.prompt import load_template  # noqa: E402
from st_eval.records import Message, Pair  # noqa: E402
from st_eval.training.shipping import card_markdown, check_seed_templates, default_decision, shipped_card, write_adapter  # noqa: E402


def _run_adapter(folder):
    adapter = folder / "judge" / "adapter"
    adapter.mkdir(parents=True)
    tensors = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(4, 8),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.randn(8, 4),
        "base_model.model.score.lora_A.weight": torch.randn(4, 8),
        "base_model.model.score.lora_B.weight": torch.randn(1, 4),
    }
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    config = {
        "base_model_name_or_path": "/somewhere/on/a/training/machine", "target_modules": ["q_proj", "score"], "r": 4, "task_type": None,
        "auto_mapping": {"base_model_class": "LlamaForSequenceClassification", "parent_library": "transformers.models.llama.modeling_llama"},
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    return tensors


def test_the_shipped_adapter_is_float16_on_the_seed_without_the_views_head(tmp_path):
    tensors = _run_adapter(tmp_path)
    write_adapter(tmp_path / "judge", tmp_path / "shipped")
    shipped = load_file(str(tmp_path / "shipped" / "adapter_model.safetensors"))
    assert sorted(shipped) == sorted(k for k in tensors if ".score." not in k)
    for name, tensor in shipped.items():
        assert tensor.dtype == torch.float16
        assert torch.allclose(tensor.float(), tensors[name], atol=1e-2)
    config = json.loads((tmp_path / "shipped" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == SEED_MODEL
    assert config["target_modules"] == ["q_proj"] and config["r"] == 4
    assert config["task_type"] == "CAUSAL_LM" and "auto_mapping" not in config  # AutoPeftModel builds the causal judge


def _figure(n, avg, both):
    interval = {"low": avg - 0.05, "high": avg + 0.05}
    return {
        "n": n, "order_averaged": avg, "order_averaged_ci": interval, "consistent": both,
        "consistent_ci": {"low": both - 0.05, "high": both + 0.05}, "invalid_rate": 0.0, "forced_rate": 0.0,
        "shortened_rate": 0.1, "prefers_longer": 0.4, "better_is_longer": {"n": 3, "order_averaged": 0.5},
        "better_is_shorter": {"n": 2, "order_averaged": 0.75}, "longer_wins": 0.55, "something_else": 1,
    }


def _comparison(low: float, high: float) -> dict:
    return {
        "order_averaged": {"n": 5, "baseline": 0.5, "candidate": 0.6, "gain": 0.1, "gain_ci": {"low": low, "high": high}, "mcnemar_p": None},
        "consistent": {"n": 5, "baseline": 0.2, "candidate": 0.4, "gain": 0.2, "gain_ci": {"low": 0.0, "high": 0.4}, "mcnemar_p": 0.5},
    }


def _report(gains: dict) -> dict:
    return {
        "template": "rating-yesno-v1", "rows": [{}] * 5,
        "figures": {"all": _figure(5, 0.6, 0.4), "Natural": _figure(5, 0.6, 0.4)},
        "baseline": {"model": SEED_MODEL, "template": "rating-yesno-v1"},
        "gain_over_baseline": gains,
    }


def test_the_card_carries_each_reports_figures_and_the_runs_provenance():
    reports = {"llmbar": _report({"all": _comparison(-0.1, 0.3)}), "pandalm": {**_report({"all": _comparison(0.05, 0.2)}), "published": {"PandaLM-7B": 0.729}}}
    training = {"recipe": "smollm2-cpu-full", "commit": "abc1234", "iteration": 2, "human_labels": "none", "template": "rating-yesno-v1"}
    run = {"best": {"iteration": 2}, "timings": {"total": 10.0}}
    card = shipped_card("smollm2-135m-st", training, reports, run)
    assert card["base_model"] == SEED_MODEL and card["commit"] == "abc1234" and card["selection"]["selected_iteration"] == 2
    for bench, report in reports.items():
        for group, figure in report["figures"].items():
            assert card["benchmarks"][bench]["evaluation"][group] == {k: v for k, v in figure.items() if k != "something_else"}
        assert card["benchmarks"][bench]["gain_over_seed"] == report["gain_over_baseline"]
        assert card["benchmarks"][bench]["report"] == f"report-{bench}.json"
    assert card["benchmarks"]["pandalm"]["published"] == {"PandaLM-7B": 0.729}
    text = card_markdown(card)
    assert "| all | 5 | 60.0 [55.0, 65.0] | 40.0 [35.0, 45.0] | 55.0 |" in text
    assert "+20.0 [+0.0, +40.0], p=0.5" in text and "PandaLM-7B (published, one order): 72.9" in text
    # one benchmark's order-averaged gain reaches below zero: the default is not earned
    assert card["default"]["earned"] is False and "[-10.0, +30.0]" in card["default"]["why"]
    assert "**Default judge: no.**" in text


def test_the_default_is_earned_only_by_intervals_above_zero_everywhere_and_no_set_worse():
    def gains(low, subset_high=0.1):
        return {"all": {"order_averaged": {"n": 419, "gain": 0.12, "gain_ci": {"low": low, "high": 0.2}}},
                "GPTOut": {"order_averaged": {"n": 47, "gain": -0.1, "gain_ci": {"low": -0.3, "high": subset_high}}}}

    assert default_decision({"llmbar": gains(0.01), "pandalm": gains(0.02)})["earned"] is True
    assert default_decision({"llmbar": gains(0.01), "pandalm": gains(0.0)})["earned"] is False
    worse = default_decision({"llmbar": gains(0.01, subset_high=-0.01), "pandalm": gains(0.02)})
    assert worse["earned"] is False and "worse than the seed on GPTOut" in worse["why"]
    assert default_decision({})["earned"] is False


def test_a_judge_served_under_another_template_than_it_was_trained_under_says_so():
    reports = {"llmbar": {**_report({"all": _comparison(0.01, 0.3)}), "template": "rating-yesno-long-v1"}}
    training = {"recipe": "r", "commit": "abc1234", "iteration": 1, "template": "rating-yesno-v1"}
    card = shipped_card("smollm2-135m-st", training, reports, {"best": {"iteration": 1}})
    assert (card["template"], card["trained_template"]) == ("rating-yesno-long-v1", "rating-yesno-v1")
    assert "trained under template `rating-yesno-v1`, served and measured under `rating-yesno-long-v1`" in card_markdown(card)
    same = shipped_card("smollm2-135m-st", {**training, "template": "rating-yesno-long-v1"}, reports, {"best": {"iteration": 1}})
    assert "trained under template" not in card_markdown(same)


def test_seed_reports_under_another_template_are_refused_naming_the_file(tmp_path):
    seed = tmp_path / "seed-llmbar.json"
    seed.write_text(json.dumps({"template": "rating-yesno-v1"}))
    check_seed_templates({"llmbar": seed}, "rating-yesno-v1")
    with pytest.raises(SystemExit, match=r"seed-llmbar.json: the seed's llmbar report was measured under template 'rating-yesno-v1'.*'rating-yesno-long-v1'"):
        check_seed_templates({"llmbar": seed}, "rating-yesno-long-v1")


def test_the_long_reading_template_asks_the_same_question_and_reads_three_times_as_much():
    short, long = load_template("rating-yesno-v1"), load_template("rating-yesno-long-v1")
    assert (long.kind, long.choices, long.max_instruction_chars) == (short.kind, short.choices, short.max_instruction_chars)
    assert (short.max_response_chars, long.max_response_chars) == (800, 2400)
    brief = Pair("p", [Message("user", "Name a prime.")], "7", "8")
    assert long.render_rating(brief, "A") == short.render_rating(brief, "A")
    middle = "The middle of the answer. " * 60  # 1,560 characters: cut at 800, read whole at 2,400
    lengthy = Pair("q", [Message("user", "Explain.")], middle, "x")
    assert middle.strip() in long.render_rating(lengthy, "A")[-1]["content"]
    assert middle.strip() not in short.render_rating(lengthy, "A")[-1]["content"]
