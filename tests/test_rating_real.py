"""The rating judge on the real embedded model: probabilities, training, the trained folder in use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from st_eval import Judge, JudgeConfig, Message, Pair
from st_eval.prompt import load_template

pytestmark = pytest.mark.slow

PAIRS = [
    Pair("capital", [Message("user", "What is the capital of France?")], "Paris is the capital of France.", "Bananas are rich in potassium.", label="A"),
    Pair("haiku", [Message("user", "Write a haiku about snow.")], "Spain's GDP grew in 2019.", "Soft flakes drift down\nsilent fields beneath the moon\nwinter holds its breath", label="B"),
]


def test_hf_next_token_logprobs_match_a_plain_forward_pass_in_any_batch(hf_engine):
    import torch

    prompts = [load_template("rating-yesno-v1").render_rating(p, side) for p in PAIRS for side in ("A", "B")]
    batched = hf_engine.next_token_logprobs(prompts, 20)
    alone = [hf_engine.next_token_logprobs([p], 20)[0] for p in prompts]
    model, tokenizer = hf_engine._model, hf_engine.tokenizer
    for prompt, together, single in zip(prompts, batched, alone):
        ids = tokenizer(hf_engine.render(prompt), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            logprobs = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
        for token in ("Yes", "No"):
            expected = logprobs[tokenizer(token, add_special_tokens=False).input_ids[0]].item()
            # float32 through a padded batch or one prompt: the sums run in another order, ~1e-5 apart
            # in log-probability on any x86-64 kernel and thread count; 1e-4 is ten times that
            assert together[token] == pytest.approx(expected, abs=1e-4)
            assert single[token] == pytest.approx(expected, abs=1e-4)
        assert len(together) == 20 and max(together.values()) <= 0


def test_rating_judge_on_the_embedded_model(hf_engine):
    judgments = Judge(hf_engine, JudgeConfig(template="rating-yesno-v1", order="both")).judge(PAIRS)
    for judgment in judgments:
        assert judgment.ratings and all(0 <= r <= 1 for r in judgment.ratings.values())
        assert judgment.verdict in ("A", "B") and judgment.consistent is True
        assert judgment.template == "rating-yesno-v1"


def test_rating_training_moves_the_judge_and_its_adapter_is_the_causal_judge(tmp_path, embedded_model):
    """A real trl RewardTrainer run; then the merged folder (what engines load) gives exactly the
    log-odds the trained classifier view gives, and st-eval judge picks the card's template."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from st_eval.engines import make_engine
    from st_eval.training.config import LoraSettings, TrainConfig
    from st_eval.training.reward import train_rating_judge

    template = load_template("rating-yesno-v1")
    rows = [(template.render_rating(p, p.label), template.render_rating(p, "B" if p.label == "A" else "A")) for p in PAIRS]
    # float32 on every CPU (auto is bfloat16 on AVX512-BF16 or AMX): the float32 comparisons below hold anywhere
    config = TrainConfig(epochs=3, batch_size=2, learning_rate=3e-3, max_length=512, lora=LoraSettings(r=4, alpha=8, dropout=0.0), dtype="float32")
    out = tmp_path / "judge"
    metrics = train_rating_judge(embedded_model, rows, template.choices, out, config)
    assert metrics["steps"] == 3 and metrics["pairs"] == 2
    # the adapter holds LoRA factors only (r 4 on every linear layer: ~1.2 M numbers), never the model
    from safetensors import safe_open

    with safe_open(str(out / "adapter" / "adapter_model.safetensors"), "pt") as tensors:
        names = list(tensors.keys())
        numbers = sum(tensors.get_tensor(name).numel() for name in names)
    assert names and all("lora_" in name for name in names)
    assert numbers < 2_000_000
    # the trained judge separates its training pairs more than the seed did
    engine = make_engine("hf", str(out), dtype="float32")
    seed = make_engine("hf", embedded_model, dtype="float32")

    def margins(e):
        tops = e.next_token_logprobs([p for pair in rows for p in pair], 20)
        odds = [t["Yes"] - t["No"] for t in tops]
        return [odds[i] - odds[i + 1] for i in range(0, len(odds), 2)]

    assert all(after > before for after, before in zip(margins(engine), margins(seed)))
    # the classifier view with the adapter gives the same number as the merged causal judge
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    view = AutoModelForSequenceClassification.from_pretrained(embedded_model, num_labels=1)
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(embedded_model)
    yes, no = (tokenizer(t, add_special_tokens=False).input_ids[0] for t in ("Yes", "No"))
    with torch.no_grad():
        view.score.weight.copy_((lm.lm_head.weight[yes] - lm.lm_head.weight[no]).unsqueeze(0))
    view = PeftModel.from_pretrained(view, out / "adapter")
    ids = tokenizer(tokenizer.apply_chat_template(rows[0][0], tokenize=False, add_generation_prompt=True), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        reward = view(input_ids=ids).logits[0, 0].item()
    top = engine.next_token_logprobs([rows[0][0]], 20)[0]
    assert reward == pytest.approx(top["Yes"] - top["No"], abs=1e-3)  # two float32 paths: ~1e-5 apart
    # a folder with a card judges with its own template when none is named
    (out / "card.json").write_text(json.dumps({"template": "rating-yesno-v1"}))
    done = subprocess.run(
        [sys.executable, "-m", "st_eval.cli", "judge", "--model", str(out), "-i", "What is 2 + 2?", "-a", "4", "-b", "The sky is blue."],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rating of A" in done.stdout


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_full_fine_tuning_of_a_rating_judge_trains_the_body_and_keeps_the_tied_head(tmp_path, embedded_model, dtype):
    """``train.method: full`` for a rating judge: every body weight may move, the tied embeddings
    (the output head's rows, which the classifier view copies) stay, no adapter is written, and
    the saved causal judge separates its training pairs more than the seed did. In bfloat16 the
    trainer wraps the model's forward in autocast; the saved float32 judge must still pass the
    check against the trained weights (it once compared the autocast forward, 1.5 apart in log-odds)."""
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    from st_eval.engines import make_engine
    from st_eval.training.config import TrainConfig
    from st_eval.training.reward import train_rating_judge

    template = load_template("rating-yesno-v1")
    rows = [(template.render_rating(p, p.label), template.render_rating(p, "B" if p.label == "A" else "A")) for p in PAIRS]
    config = TrainConfig(method="full", epochs=2, batch_size=2, learning_rate=1e-4, max_length=512, dtype=dtype)
    out = tmp_path / "judge"
    metrics = train_rating_judge(embedded_model, rows, template.choices, out, config)
    assert metrics["method"] == "full" and metrics["steps"] == 2
    assert not (out / "adapter").exists()
    trained, seed = load_file(str(out / "model.safetensors")), load_file(str(Path(embedded_model) / "model.safetensors"))
    assert torch.equal(trained["model.embed_tokens.weight"], seed["model.embed_tokens.weight"].float())
    moved = [name for name in trained if name in seed and not torch.equal(trained[name], seed[name].float())]
    assert any("mlp" in name for name in moved) and any("self_attn" in name for name in moved)

    def margins(e):  # the top 500 tokens: a trained judge's "No" may fall out of the top 20
        tops = e.next_token_logprobs([p for pair in rows for p in pair], 500)
        odds = [t["Yes"] - t["No"] for t in tops]
        return [odds[i] - odds[i + 1] for i in range(0, len(odds), 2)]

    after = margins(make_engine("hf", str(out), dtype="float32"))
    before = margins(make_engine("hf", embedded_model, dtype="float32"))
    assert all(a > b for a, b in zip(after, before))


def test_hf_rating_reads_each_choice_wherever_it_ranks(hf_engine):
    """``include``: the choices' own log-probabilities come back even outside the top k, every
    token spelling them (" yes", "YES") added up, so a judge sure of "Yes" still rates by how sure."""
    import math

    import torch

    prompt = load_template("rating-yesno-v1").render_rating(PAIRS[0], "A")
    top = hf_engine.next_token_logprobs([prompt], 1, include=("Yes", "No"))[0]
    alone = hf_engine.next_token_logprobs([prompt], 1)[0]
    assert len(alone) == 1 and set(alone) <= set(top)
    tokenizer = hf_engine.tokenizer
    ids = tokenizer(hf_engine.render(prompt), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        logprobs = hf_engine._model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    for choice in ("Yes", "No"):
        spellings = {text: math.exp(value) for text, value in top.items() if text.strip().casefold() == choice.casefold()}
        assert len(spellings) >= 2  # " Yes" and "Yes" at least, each a token of its own
        expected = sum(
            math.exp(logprobs[i].item()) for i in range(len(tokenizer)) if tokenizer.decode([i]).strip().casefold() == choice.casefold()
        )
        # float32 log-softmax through the packed rows or a plain pass: ~1e-5 apart in log-probability
        assert sum(spellings.values()) == pytest.approx(expected, rel=1e-3)
