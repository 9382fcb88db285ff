"""How fast a judge run could go on this machine: the bounds printed beside measured throughput.

Decoding one step of a batch reads every weight once and every row's keys/values once, so on a
CPU it cannot beat the machine's memory bandwidth:

    decode bound (tok/s) = batch x bandwidth / (weight bytes + batch x context x KV bytes per token)

with the context averaged over the run (prompt + half the generated tokens). A whole run also
reads its prompts (prefill), which is arithmetic-bound, so the run bound adds the prefill at the
machine's measured matrix-multiply rate, counting the prefix shared by all prompts once, and
takes each decode step at the slower of its bandwidth and arithmetic limits:

    run bound (tok/s) = generated tokens / (prefill FLOPs / peak + decode steps x max(bytes / bandwidth, FLOPs / peak))

Both limits are measured here, in the benchmark's process, with its thread count: bandwidth by
reading a 256 MiB tensor (best of 5), the arithmetic rate by a float32 matrix product of the
judge's own MLP shape (best of 5). Float32 weights; keys and values float32 unless
``kv_element_bytes`` says otherwise.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MachineLimits:
    """What this machine's cores can read and compute, measured."""

    bandwidth_gb_s: float
    gflops: float
    threads: int


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder that set its per-token bytes and FLOPs."""

    weight_bytes: int  # every parameter once (a tied embedding counts once: it is read as the output head)
    body_params: int  # parameters used per token except the output head and the embedding lookup
    head_params: int  # output head (vocabulary x hidden)
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int

    def kv_bytes_per_token(self, element_bytes: int = 4) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * element_bytes


def measure_machine(threads: int | None = None, repeats: int = 5, shape: ModelShape | None = None) -> MachineLimits:
    """Bandwidth (GB/s, reading) and float32 matrix-multiply rate (GFLOP/s) with ``threads`` torch threads."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        data = torch.ones(64 * 2**20)  # 256 MiB of float32
        data.sum()
        best = min(_timed(data.sum) for _ in range(repeats))
        bandwidth = data.numel() * 4 / best / 1e9
        hidden, inner = (shape.hidden, shape.intermediate) if shape else (576, 1536)
        x, w = torch.randn(512, hidden), torch.randn(hidden, inner)
        x @ w
        best = min(_timed(lambda: x @ w) for _ in range(repeats))
        gflops = 2 * 512 * hidden * inner / best / 1e9
        return MachineLimits(round(bandwidth, 2), round(gflops, 2), torch.get_num_threads())
    finally:
        torch.set_num_threads(before)


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def model_shape(model: Any) -> ModelShape:
    """The shape of a loaded transformers causal LM."""
    config = model.config.get_text_config(decoder=True)
    seen: set[int] = set()
    weight_bytes = 0
    for parameter in model.parameters():  # tied weights are one tensor
        if id(parameter) not in seen:
            seen.add(id(parameter))
            weight_bytes += parameter.numel() * parameter.element_size()
    head_weight = model.get_output_embeddings().weight
    embedding_weight = model.get_input_embeddings().weight
    outer = {id(head_weight), id(embedding_weight)}  # one id when tied
    body = sum(p.numel() for p in model.parameters() if id(p) not in outer)  # parameters() lists a tied matrix once
    head = head_weight.numel()
    heads = config.num_attention_heads
    return ModelShape(
        weight_bytes=weight_bytes, body_params=body, head_params=head, layers=config.num_hidden_layers, heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", heads), head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        hidden=config.hidden_size, intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
    )


def model_shape_of(model: str) -> ModelShape:
    """The shape of the causal LM saved at ``model``, from a skeleton on the meta device: its
    parameters counted without reading or holding its weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model), dtype=torch.float32)
    return model_shape(skeleton)


def run_bounds(
    shape: ModelShape, limits: MachineLimits, prompt_lengths: list[int], shared_prefix: int, generated: list[int], batch: int,
    *, kv_element_bytes: int = 4,
) -> dict[str, float]:
    """The decode and run bounds (tok/s) for one row's run, and their parts."""
    rows = max(1, min(batch, len(prompt_lengths)))
    gen_total = sum(generated)
    context = sum(prompt_lengths) / len(prompt_lengths) + gen_total / len(generated) / 2
    step_bytes = shape.weight_bytes + rows * context * shape.kv_bytes_per_token(kv_element_bytes)
    bandwidth = limits.bandwidth_gb_s * 1e9
    peak = limits.gflops * 1e9
    decode_bound = rows * bandwidth / step_bytes
    prefill_tokens = shared_prefix + sum(n - shared_prefix for n in prompt_lengths)
    attention_per_token = 4 * shape.layers * shape.heads * shape.head_dim  # q.k and p.v, 2 FLOPs each, per key
    prefill_flops = 2 * shape.body_params * prefill_tokens + sum(attention_per_token * n * n / 2 for n in prompt_lengths)
    step_flops = rows * (2 * (shape.body_params + shape.head_params) + attention_per_token * context)
    steps = gen_total / rows
    seconds = prefill_flops / peak + steps * max(step_bytes / bandwidth, step_flops / peak)
    return {
        "decode_bound_tok_s": round(decode_bound, 1),
        "run_bound_tok_s": round(gen_total / seconds, 1) if seconds else 0.0,
        "bytes_per_decode_step_mb": round(step_bytes / 1e6, 1),
        "prefill_bound_s": round(prefill_flops / peak, 1),
        "decode_bound_s": round(steps * max(step_bytes / bandwidth, step_flops / peak), 1),
        "decode_step_limit": "bandwidth" if step_bytes / bandwidth >= step_flops / peak else "arithmetic",
    }


def limits_dict(limits: MachineLimits) -> dict[str, Any]:
    return asdict(limits)


def training_bound_s(shape: ModelShape, limits: MachineLimits, sequence_lengths: list[int], completion_tokens: list[int], *, frozen_body: bool = True) -> float:
    """Seconds one pass of fine-tuning over these sequences needs at the measured arithmetic rate.

    Per token, the body's forward (2 FLOPs per parameter) and the backward's activation gradients
    (2 more); full fine-tuning adds the weight gradients (2 more), LoRA's adapters are too small
    to count. The output head runs on completion tokens only (the loss's positions), forward and
    backward; attention is causal (n^2 / 2 keys per sequence), forward plus twice that backward.
    """
    per_body_token = (4 if frozen_body else 6) * shape.body_params
    per_head_token = 4 * shape.head_params
    attention_per_key = 4 * shape.layers * shape.heads * shape.head_dim
    flops = sum(per_body_token * n + 3 * attention_per_key * n * n / 2 for n in sequence_lengths) + per_head_token * sum(completion_tokens)
    return flops / (limits.gflops * 1e9)


__all__ = [
    "MachineLimits", "ModelShape", "limits_dict", "measure_machine", "model_shape", "model_shape_of", "run_bounds", "training_bound_s",
]
