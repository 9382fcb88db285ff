"""Fine-tuning on CPU without wasted arithmetic (st_eval.training.cpu_speed): the same loss and
gradients as trl's padded batches and its every-position output head.

The real embedded judge with a LoRA adapter, the collators trl's SFTTrainer uses (padded, and
padding-free through st-eval's CPU attention), on sequences of different lengths.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

#: How far two float32 computations of the same tensor may drift apart when they add the same
#: terms in another order: padded against packed rows, every position against the loss's, and
#: any x86-64 kernel (AVX2, AVX-512, VNNI) at any thread count. Compared relative to the tensor's
#: norm, not entry by entry: an entry near zero can differ by more than itself (measured on an
#: AVX-512 CPU: a LoRA gradient's max abs difference 8.5e-4 on entries up to 142, norm-relative
#: 7e-6, i.e. float32 precision). float32's epsilon is 1.2e-7 and a 30-layer backward pass chains
#: ~100 roundings (~1e-5), so 1e-4 leaves a 10x margin, while a real mistake (a sequence
#: attending to another, a reward read at the wrong position) moves the loss or the gradients by
#: 1e-3 or more (test_without_boundaries_a_packed_row_would_attend_across_sequences).
NORM_RELATIVE = 1e-4


def assert_close_in_norm(actual: "torch.Tensor", expected: "torch.Tensor", name: str, bound: float = NORM_RELATIVE) -> None:
    """||actual - expected|| / ||expected|| <= bound (see :data:`NORM_RELATIVE`)."""
    scale = max(expected.double().norm().item(), 1e-30)
    drift = (actual.double() - expected.double()).norm().item() / scale
    assert drift <= bound, f"{name}: ||a - b|| / ||b|| = {drift:.2e} > {bound:.0e}"


def test_norm_relative_comparison_accepts_float32_reordering_and_catches_real_drift():
    """The AVX-512 case in numbers: entries up to 142, one near-zero entry 8.5e-4 off. The old
    elementwise check (rtol 1e-3, atol 1e-5) failed it; the norm-relative one passes it and still
    fails a gradient 1% off."""
    expected = torch.linspace(-142.0, 142.0, 4096)
    expected[7] = 1e-4
    reordered = expected.clone()
    reordered[7] += 8.5e-4
    with pytest.raises(AssertionError):
        torch.testing.assert_close(reordered, expected, rtol=1e-3, atol=1e-5)
    assert_close_in_norm(reordered, expected, "lora_A")
    with pytest.raises(AssertionError, match="lora_B"):
        assert_close_in_norm(expected * 1.01, expected, "lora_B")


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

    assert flat_loss == pytest.approx(padded_loss, rel=NORM_RELATIVE)  # a scalar: its own norm
    for name, grad in padded_grads.items():
        assert_close_in_norm(flat_grads[name], grad, name)


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
    assert only[0] == pytest.approx(every[0], rel=NORM_RELATIVE)
    for name, grad in every[1].items():
        assert_close_in_norm(only[1][name], grad, name)


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
    # nothing shared here: each pair is its chosen then its rejected sequence, end to end
    lengths = [n for e in examples for n in (len(e["chosen_ids"]), len(e["rejected_ids"]))]
    ends = [sum(lengths[: i + 1]) - 1 for i in range(4)]
    assert packed["input_ids"].shape == (1, sum(lengths))
    assert packed["sequence_ends"].tolist() == [ends[0], ends[2], ends[1], ends[3]]  # chosen rewards first, as trl splits them
    packed_rewards, packed_loss, packed_grads = _reward_loss_and_grads(model, packed)

    assert_close_in_norm(packed_rewards, padded_rewards, "rewards")
    assert packed_loss == pytest.approx(padded_loss, rel=NORM_RELATIVE)
    for name, grad in padded_grads.items():
        assert_close_in_norm(packed_grads[name], grad, name)
    # without sequence_ends the view is the classifier it was (what the engines' check reads):
    # one reward, compared relative to the rewards' scale (a reward near 0 has no scale of its own)
    single = model(input_ids=torch.tensor([examples[0]["chosen_ids"]])).logits[0, 0].item()
    assert abs(single - padded_rewards[0].item()) <= NORM_RELATIVE * max(padded_rewards.abs().max().item(), 1.0)


def test_packing_is_refused_where_st_evals_attention_does_not_apply(embedded_model):
    """An eager-attention model would attend across a packed row's sequences: it stays padded."""
    from transformers import AutoModelForSequenceClassification

    from st_eval.training.cpu_speed import read_rewards_at_sequence_ends

    view = AutoModelForSequenceClassification.from_pretrained(embedded_model, num_labels=1, attn_implementation="eager")
    forward = view.forward
    assert read_rewards_at_sequence_ends(view) is False
    assert view.forward == forward and view.config._attn_implementation == "eager"


def test_a_pairs_shared_prefix_is_computed_once_with_the_padded_batchs_rewards_loss_and_gradients(embedded_model):
    """Chosen and rejected rating prompts begin alike (system prompt, request, often the answer's
    start): laid out once as [prefix][chosen rest][rejected rest], each rest attending to the
    prefix and itself, the batch gives trl's padded batch's rewards, loss and gradients."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from st_eval.training.cpu_speed import PackedPreferenceCollator, read_rewards_at_sequence_ends, shared_prefix_length

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    request = "Request: name the capital of France and say one thing about it.\nAnswer: "
    texts = [
        (request + "Paris. It lies on the Seine.", request + "Paris. It lies on the"),  # a cut copy: long shared prefix
        (request + "Paris, home of the Louvre.", request + "Berlin is the capital of Germany, which borders France."),
        ("Four.", "Five, I think."),  # nothing shared
    ]
    examples = [{"chosen_ids": tokenizer(c).input_ids, "rejected_ids": tokenizer(r).input_ids, "length": 0} for c, r in texts]
    shared = [shared_prefix_length(e["chosen_ids"], e["rejected_ids"]) for e in examples]
    assert shared[0] > shared[1] > 10 and shared[2] == 0
    torch.manual_seed(0)
    view = AutoModelForSequenceClassification.from_pretrained(embedded_model, num_labels=1, dtype=torch.float32)
    view.config.pad_token_id = tokenizer.eos_token_id
    model = get_peft_model(view, LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, exclude_modules=["score"]))
    padded_rewards, padded_loss, padded_grads = _reward_loss_and_grads(model, DataCollatorForPreference(pad_token_id=tokenizer.eos_token_id)(examples))

    assert read_rewards_at_sequence_ends(view)
    batch = PackedPreferenceCollator()(examples)
    total = sum(len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)
    assert batch["input_ids"].shape == (1, total - sum(shared))  # each prefix once
    assert batch["prefix_groups"][:, 1].tolist() == shared
    rewards, loss, grads = _reward_loss_and_grads(model, batch)
    assert_close_in_norm(rewards, padded_rewards, "rewards")
    assert loss == pytest.approx(padded_loss, rel=NORM_RELATIVE)
    for name, grad in padded_grads.items():
        assert_close_in_norm(grads[name], grad, name)
