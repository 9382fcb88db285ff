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
