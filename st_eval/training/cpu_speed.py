"""Fine-tuning on CPU without wasted arithmetic: no padding tokens, no output head on the prompt.

Measured on the embedded judge (benchmarks/finetune.py), an SFT step of trl's trainer spent a
third of its time in the output head over every position of the batch and most of another
third on padding and on masked attention. Both fixes keep the loss and gradients the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def padding_free_collator(model: Any, tokenizer: Any) -> Any:
    """trl's collator in padding-free mode, with the model switched to st-eval's CPU attention.

    The batch becomes one row of its sequences end to end, with their boundaries
    (``cu_seq_lens_q``), and each sequence attends only to itself, by its own causal call: no
    padding tokens through the layers, no mask over the row. Why not ``SFTConfig(padding_free=True)``:
    trl then refuses ``max_length`` (it would not truncate); passed as the collator, the trainer
    still truncates to ``max_length`` when it tokenizes.
    """
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from st_eval.engines.hf_batching import use_cpu_attention

    use_cpu_attention(model)
    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)


class PackedPreferenceCollator:
    """Preference batches without padding: every chosen, then every rejected sequence, end to end
    in one row, with their boundaries (``cu_seq_lens_q``) and restarting positions, so each
    sequence attends only to itself (st-eval's CPU attention), and ``sequence_ends``, where each
    sequence's reward is read. The order is trl's (chosen first), so trl's loss splits the rewards
    the same way; ``attention_mask`` (all ones) is there for trl's token count only."""

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        sequences = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        lengths = torch.tensor([len(s) for s in sequences])
        bounds = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to(torch.int32)
        input_ids = torch.tensor([[token for s in sequences for token in s]])
        batch = {
            "input_ids": input_ids,
            "position_ids": torch.cat([torch.arange(n) for n in lengths.tolist()]).unsqueeze(0),
            "attention_mask": torch.ones_like(input_ids),
            "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds,
            "max_length_q": int(lengths.max()), "max_length_k": int(lengths.max()),
            "sequence_ends": bounds[1:].long() - 1,
        }
        if "margin" in examples[0]:
            batch["margin"] = torch.tensor([e["margin"] for e in examples], dtype=torch.float)
        return batch


def read_rewards_at_sequence_ends(view: Any) -> bool:
    """Let a sequence-classification view read one reward per packed sequence.

    transformers' classifiers pool each row at its last non-padding token: one reward for a
    packed row. Given ``sequence_ends`` (a :class:`PackedPreferenceCollator` batch), this
    instance's forward runs the transformer over the row and applies the head at each
    sequence's last token instead (the head on those positions only), returning logits of
    shape (sequences, 1) as trl's reward loss expects. Without ``sequence_ends`` it is the
    classifier's own forward. Returns False, changing nothing, where st-eval's CPU attention does
    not apply (not on CPU, or not an ``sdpa`` model): there a packed row would attend across its
    sequences, so batches stay padded.
    """
    from transformers.modeling_outputs import SequenceClassifierOutputWithPast

    from st_eval.engines.hf_batching import CPU_ATTENTION, use_cpu_attention

    use_cpu_attention(view)
    if view.config._attn_implementation != CPU_ATTENTION:
        return False
    classify = view.forward

    def forward(*args: Any, sequence_ends: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
        if sequence_ends is None:
            return classify(*args, attention_mask=attention_mask, **kwargs)
        for unused in ("labels", "return_dict"):  # peft passes them on; the transformer takes neither
            kwargs.pop(unused, None)
        hidden = view.model(*args, **kwargs).last_hidden_state  # no mask: the row holds no padding
        return SequenceClassifierOutputWithPast(logits=view.score(hidden[0, sequence_ends]))

    view.forward = forward
    return True


@contextmanager
def loss_positions_only() -> Iterator[None]:
    """While training, trl's fused output head scores only the positions the loss reads, on CPU too.

    trl scores every position on devices without its Triton kernels (so that compilers such as
    Neuron's see one tile shape per batch size) and zeroes the prompt's positions afterwards; on
    a CPU that is the 49k-word head, forward and backward, over every prompt token. On the loss's
    positions only (trl's own path on GPUs) the loss and gradients are the same. A trl without
    this switch trains as before.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original
