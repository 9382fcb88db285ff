"""Fine-tuning on CPU without wasted arithmetic (st_eval.training.cpu_speed): the same loss and
gradients as trl's padded batches and its every-position output head.

The real embedded judge with a LoRA adapter, the collators trl's SFTTrainer uses (padded, and
padding-free through st-eval's CPU attention), on sequences of different lengths.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")


def _model(embedded_model: str):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    return get_peft_model(model, config)


def _examples(tokenizer) -> list[dict]:
    texts = [
        ("Which answer is better?", "Answer A, because it is correct and complete. [[A]]"),
        ("Compare the two responses to the question about the capital of France, then decide.", "[[B]]"),
        ("Pick one.", "The second response follows the instruction while the first does not, so [[B]]"),
    ]
    rows = []
    for prompt, completion in texts:
        p, c = tokenizer(prompt)["input_ids"], tokenizer(" " + completion)["input_ids"]
        rows.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    return rows


def _loss_and_grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    labels = batch.pop("labels")
    logits = model(**batch).logits.float()
    vocab = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads


def test_padding_free_batch_matches_the_padded_batch(embedded_model):
    from transformers import AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from st_eval.engines.hf_batching import CPU_ATTENTION
    from st_eval.training.cpu_speed import padding_free_collator

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    examples = _examples(tokenizer)
    model = _model(embedded_model)
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.eos_token_id)(examples)
    assert padded["input_ids"].shape[0] == 3 and (padded["attention_mask"] == 0).any()  # really padded
    padded_loss, padded_grads = _loss_and_grads(model, padded)

    flat = padding_free_collator(model, tokenizer)(examples)
    assert model.config._attn_implementation == CPU_ATTENTION
    assert flat["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    assert flat["cu_seq_lens_q"].tolist()[-1] == flat["input_ids"].shape[1] and len(flat["cu_seq_lens_q"]) == 4
    flat_loss, flat_grads = _loss_and_grads(model, flat)

    assert flat_loss == pytest.approx(padded_loss, rel=1e-4)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(flat_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_without_boundaries_a_packed_row_would_attend_across_sequences(embedded_model):
    """The boundaries are what keeps sequences apart: drop them and the loss changes."""
    from transformers import AutoTokenizer

    from st_eval.training.cpu_speed import padding_free_collator

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    model = _model(embedded_model)
    flat = padding_free_collator(model, tokenizer)(_examples(tokenizer))
    with_bounds, _ = _loss_and_grads(model, dict(flat))
    plain = {"input_ids": flat["input_ids"], "labels": flat["labels"]}
    across, _ = _loss_and_grads(model, plain)
    assert abs(across - with_bounds) > 1e-3 * abs(with_bounds)


def test_fused_head_on_the_loss_positions_only_gives_the_same_loss_and_gradients(embedded_model, monkeypatch):
    import trl.trainer.utils as trl_utils
    from transformers import AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from trl.trainer.utils import add_fused_lm_head

    from st_eval.training.cpu_speed import loss_positions_only

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    model = _model(embedded_model)
    add_fused_lm_head(model.get_base_model())
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.eos_token_id)(_examples(tokenizer))

    real = trl_utils._ChunkedLogProbFunction

    def fused(scored_rows: list[int]):
        """Loss and gradients, counting the rows the output head scores."""
        model.zero_grad()

        def counting(hidden, *rest):
            scored_rows.append(hidden.shape[0])
            return real.apply(hidden, *rest)

        monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", SimpleNamespace(apply=counting))
        loss = model(**batch, fused_lm_head=True).loss
        monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", real)
        loss.backward()
        return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    every, every_rows = fused(rows := []), rows
    with loss_positions_only():
        only, only_rows = fused(rows := []), rows
    assert not trl_utils._use_triton(torch.device("cpu"))  # restored
    in_loss = int((batch["labels"][:, 1:] != -100).sum())
    assert every_rows == [batch["input_ids"].numel() - batch["input_ids"].shape[0]] and only_rows == [in_loss]
    assert only[0] == pytest.approx(every[0], rel=1e-5)
    for name, grad in every[1].items():
        torch.testing.assert_close(only[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _reward_loss_and_grads(model, batch) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
    """trl's reward loss: chosen rewards first, rejected second, Bradley-Terry."""
    model.zero_grad()
    rewards = model(**batch, use_cache=False).logits.squeeze(-1)
    chosen, rejected = torch.chunk(rewards, 2)
    loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return rewards.detach(), loss.item(), grads


def test_packed_preference_batch_gives_the_padded_batchs_rewards_loss_and_gradients(embedded_model):
    """Rating judges train as a reward model: chosen and rejected sequences of different lengths
    end to end in one row, each reward read at its own sequence's end, equal trl's padded batch."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from st_eval.training.cpu_speed import PackedPreferenceCollator, read_rewards_at_sequence_ends

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    texts = [("Paris is the capital of France.", "Berlin, the guide said loudly, is the capital of France."), ("Four.", "Five, I think.")]
    examples = [{"chosen_ids": tokenizer(c).input_ids, "rejected_ids": tokenizer(r).input_ids, "length": 0} for c, r in texts]
    torch.manual_seed(0)
    view = AutoModelForSequenceClassification.from_pretrained(embedded_model, num_labels=1, dtype=torch.float32)
    view.config.pad_token_id = tokenizer.eos_token_id
    model = get_peft_model(view, LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, exclude_modules=["score"]))

    padded = DataCollatorForPreference(pad_token_id=tokenizer.eos_token_id)(examples)
    assert (padded["attention_mask"] == 0).any()  # really padded
    padded_rewards, padded_loss, padded_grads = _reward_loss_and_grads(model, padded)

    assert read_rewards_at_sequence_ends(view)
    packed = PackedPreferenceCollator()(examples)
    lengths = [len(e["chosen_ids"]) for e in examples] + [len(e["rejected_ids"]) for e in examples]
    assert packed["input_ids"].shape == (1, sum(lengths))
    assert packed["sequence_ends"].tolist() == [sum(lengths[: i + 1]) - 1 for i in range(4)]
    packed_rewards, packed_loss, packed_grads = _reward_loss_and_grads(model, packed)

    torch.testing.assert_close(packed_rewards, padded_rewards, rtol=1e-4, atol=1e-5)
    assert packed_loss == pytest.approx(padded_loss, rel=1e-4)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
    # without sequence_ends the view is the classifier it was (what the engines' check reads)
    single = model(input_ids=torch.tensor([examples[0]["chosen_ids"]])).logits[0, 0].item()
    assert single == pytest.approx(padded_rewards[0].item(), abs=1e-4)


def test_packing_is_refused_where_st_evals_attention_does_not_apply(embedded_model):
    """An eager-attention model would attend across a packed row's sequences: it stays padded."""
    from transformers import AutoModelForSequenceClassification

    from st_eval.training.cpu_speed import read_rewards_at_sequence_ends

    view = AutoModelForSequenceClassification.from_pretrained(embedded_model, num_labels=1, attn_implementation="eager")
    forward = view.forward
    assert read_rewards_at_sequence_ends(view) is False
    assert view.forward == forward and view.config._attn_implementation == "eager"
