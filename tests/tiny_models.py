"""Tiny random-weight models for the engine tests: real transformers code paths, no download."""

from __future__ import annotations


def tiny_llama(seed: int = 0):
    """A 2-layer Llama with random weights and grouped-query attention (no download)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).eval()
