"""The judge shipped inside the package (``smollm2-135m-st``): its files, its card, and that the
shipped weights are the judge its committed reports measured."""

from __future__ import annotations

import json

import pytest

from st_eval.embedded import DEFAULT_MODEL, SEED_MODEL, SHIPPED_JUDGES
from st_eval.training.shipping import _FIGURES, BENCHMARKS, default_decision

NAME = "smollm2-135m-st"
FOLDER = SHIPPED_JUDGES[NAME].folder
#: the sizes of the committed reports: LLMBar's five sets, PandaLM dev's non-tie pairs
PAIRS = {"llmbar": 419, "pandalm": 487}


def _read(name: str) -> dict:
    return json.loads((FOLDER / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("bench", sorted(BENCHMARKS))
def test_the_card_states_each_committed_reports_figures(bench):
    card = _read("card.json")
    entry = card["benchmarks"][bench]
    report = _read(entry["report"])
    assert card["base_model"] == SEED_MODEL and card["template"] == report["template"]
    assert card["human_labels"].startswith("none")
    assert entry["pairs"] == len(report["rows"]) == PAIRS[bench]
    assert entry["evaluation"] == {group: {k: f.get(k) for k in _FIGURES} for group, f in report["figures"].items()}
    assert entry["gain_over_seed"] == report["gain_over_baseline"]
    assert report["baseline"]["model"] == SEED_MODEL
    # the figures are the rows' own: order-averaged accuracy is the mean pair score
    rows = report["rows"]
    assert report["figures"]["all"]["order_averaged"] == pytest.approx(sum(r["score"] for r in rows) / len(rows))
    assert report["figures"]["all"]["consistent"] == pytest.approx(sum(r["consistent"] for r in rows) / len(rows))


def test_the_default_is_this_judge_exactly_when_its_card_says_it_earned_it():
    card = _read("card.json")
    assert card["default"] == default_decision({bench: entry["gain_over_seed"] for bench, entry in card["benchmarks"].items()})
    assert (DEFAULT_MODEL == NAME) is card["default"]["earned"]


def test_the_adapter_is_a_small_float16_lora_on_the_embedded_seed():
    from safetensors import safe_open

    config = _read("adapter_config.json")
    assert config["base_model_name_or_path"] == SEED_MODEL and "score" not in config["target_modules"]
    assert config["task_type"] == "CAUSAL_LM" and "auto_mapping" not in config
    weights = FOLDER / "adapter_model.safetensors"
    assert weights.stat().st_size < 20_000_000  # the seed itself is 270 MB in float16
    with safe_open(str(weights), "pt") as tensors:
        names = list(tensors.keys())
        assert names and all("lora_" in name for name in names)
        assert {str(tensors.get_tensor(name).dtype) for name in names} == {"torch.float16"}


@pytest.mark.slow
def test_the_shipped_weights_reproduce_the_reports_ratings(shared_data, embedded_model):
    """Load the judge by name (adapter merged onto the embedded seed, no hub), judge a few pairs of
    each benchmark, and find the ratings the committed reports hold for them; the seed rates
    differently."""
    from st_eval import Judge, JudgeConfig
    from st_eval.benchmarks.pandalm import load_pandalm
    from st_eval.benchmarks.rewardbench import load_llmbar
    from st_eval.embedded import resolve_model
    from st_eval.engines import make_engine

    card = _read("card.json")
    pairs, expected = [], {}
    for bench, load, data in (("llmbar", load_llmbar, shared_data / "llmbar"), ("pandalm", lambda d: load_pandalm(d)[0], shared_data / "pandalm")):
        rows = {row["id"]: row for row in _read(card["benchmarks"][bench]["report"])["rows"]}
        chosen = [p for p in load(data) if p.id in rows][::80][:4]
        assert len(chosen) == 4
        pairs += chosen
        expected.update((p.id, rows[p.id]) for p in chosen)
    config = JudgeConfig(template=card["template"], order="both")
    # float32 as the reports were (the merged judge is marked float32; the seed's auto would not be)
    shipped = Judge(make_engine("hf", resolve_model(NAME), batch_size=8, dtype="float32"), config).judge(pairs)
    seed = Judge(make_engine("hf", embedded_model, batch_size=8, dtype="float32"), config).judge(pairs)
    for pair, judged, before in zip(pairs, shipped, seed):
        row = expected[pair.id]
        # the reports' ratings came from another CPU: float32 drift ~1e-5, far inside 2e-3
        assert judged.ratings == pytest.approx(row["ratings"], abs=2e-3)
        assert {r.order: r.verdict for r in judged.orders} == row["orders"]
        assert judged.ratings != pytest.approx(before.ratings, abs=2e-3)
