"""The judge shipped inside the package (``smollm2-135m-st``): its files, its card, and that the
shipped weights are the judge its committed report measured."""

from __future__ import annotations

import json

import pytest

from st_eval.embedded import DEFAULT_MODEL, SEED_MODEL, SHIPPED_JUDGES
from st_eval.training.shipping import _FIGURES

NAME = "smollm2-135m-st"
FOLDER = SHIPPED_JUDGES[NAME].folder


def _read(name: str) -> dict:
    return json.loads((FOLDER / name).read_text(encoding="utf-8"))


def test_the_card_states_the_committed_reports_figures():
    card, report = _read("card.json"), _read("report.json")
    assert card["base_model"] == SEED_MODEL and card["template"] == report["template"]
    assert card["human_labels"].startswith("none")
    assert card["benchmark"]["pairs"] == report["pairs"] == len(report["rows"]) == 419
    assert set(card["evaluation"]) == set(report["figures"])
    for group, figure in report["figures"].items():
        # the card predates the "longer wins" column; every other figure is the report's own
        stated = card["evaluation"][group]
        assert set(_FIGURES) - set(stated) <= {"longer_wins"}
        assert stated == {key: figure.get(key) for key in stated}
    assert card["gain_over_seed"] == report["gain_over_baseline"]
    assert report["baseline"]["model"] == SEED_MODEL
    # the default judge is this one exactly when its card says it earned it
    assert (DEFAULT_MODEL == NAME) is card["default"]["earned"]
    # the figures are the rows' own: order-averaged accuracy is the mean pair score
    rows = report["rows"]
    assert report["figures"]["all"]["order_averaged"] == pytest.approx(sum(r["score"] for r in rows) / len(rows))
    assert report["figures"]["all"]["consistent"] == pytest.approx(sum(r["consistent"] for r in rows) / len(rows))


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
    """Load the judge by name (adapter merged onto the embedded seed, no hub), judge a few LLMBar
    pairs, and find the ratings the committed report holds for them; the seed rates differently."""
    from st_eval import Judge, JudgeConfig
    from st_eval.benchmarks.rewardbench import load_llmbar
    from st_eval.embedded import resolve_model
    from st_eval.engines import make_engine

    report = _read("report.json")
    expected = {row["id"]: row for row in report["rows"]}
    pairs = [p for p in load_llmbar(shared_data / "llmbar") if p.id in expected][::60][:6]
    assert len(pairs) == 6
    config = JudgeConfig(template=report["template"], order="both")
    # float32 as the report was (auto is bfloat16 on CPUs with AVX512-BF16 or AMX)
    shipped = Judge(make_engine("hf", resolve_model(NAME), batch_size=8, dtype="float32"), config).judge(pairs)
    seed = Judge(make_engine("hf", embedded_model, batch_size=8, dtype="float32"), config).judge(pairs)
    for pair, judged, before in zip(pairs, shipped, seed):
        row = expected[pair.id]
        # the report's ratings came from another CPU: float32 drift ~1e-5, far inside 2e-3
        assert judged.ratings == pytest.approx(row["ratings"], abs=2e-3)
        assert {r.order: r.verdict for r in judged.orders} == row["orders"]
        assert judged.ratings != pytest.approx(before.ratings, abs=2e-3)
