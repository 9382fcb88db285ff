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


def shared_prefix_length(first: list[int], second: list[int]) -> int:
    """How many leading tokens two sequences share, leaving each at least its last token (where
    its reward is read)."""
    limit = min(len(first), len(second)) - 1
    length = 0
    while length < limit and first[length] == second[length]:
        length += 1
    return length


class PackedPreferenceCollator:
    """Preference batches without padding and without computing a pair's shared prefix twice.

    A pair's chosen and rejected prompts begin alike (the template's system prompt and the request,
    and a damaged copy of an answer shares the answer's start too). Each pair is laid out once in
    one row as ``[shared prefix][rest of chosen][rest of rejected]``: the prefix attends causally
    to itself, each rest to the prefix and causally to itself, never to the other rest
    (``prefix_groups``: per pair, its start, prefix, chosen-rest and rejected-rest lengths, for
    st-eval's CPU attention); positions continue from the prefix in both rests. So every token
    sees exactly what it sees in its own sequence: the same rewards, loss and gradients as two
    separate sequences, with the prefix's work done once. ``sequence_ends`` lists where each
    chosen, then each rejected reward is read (trl's loss splits them in that order);
    ``attention_mask`` (all ones) is there for trl's token count only.
    """

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        tokens: list[int] = []
        positions: list[int] = []
        groups, chosen_ends, rejected_ends = [], [], []
        for example in examples:
            chosen, rejected = example["chosen_ids"], example["rejected_ids"]
            shared = shared_prefix_length(chosen, rejected)
            start = len(tokens)
            tokens += chosen + rejected[shared:]
            positions += list(range(len(chosen))) + list(range(shared, len(rejected)))
            groups.append((start, shared, len(chosen) - shared, len(rejected) - shared))
            chosen_ends.append(start + len(chosen) - 1)
            rejected_ends.append(len(tokens) - 1)
        input_ids = torch.tensor([tokens])
        batch = {
            "input_ids": input_ids,
            "position_ids": torch.tensor([positions]),
            "attention_mask": torch.ones_like(input_ids),
            "prefix_groups": torch.tensor(groups, dtype=torch.long),
            "sequence_ends": torch.tensor(chosen_ends + rejected_ends),
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
