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
reading a 256 MiB tensor (best of 5), the arithmetic rate by a matrix product of the judge's own
MLP shape (best of 5), in float32 and in bfloat16: a CPU with AVX512-BF16 or AMX multiplies
bfloat16 faster than float32, one without them emulates it far slower. A row's bounds take the
rate, and the weight and key/value widths, of the dtype the row computed in. The CPU's kind and
instruction-set flags (``st_eval.native_dtype``) are recorded beside the rates.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MachineLimits:
    """What this machine's cores can read and compute, measured; ``gflops`` is float32's rate.
    The bfloat16 rate and the CPU's kind are absent (None, "") from reports older than them."""

    bandwidth_gb_s: float
    gflops: float
    threads: int
    bf16_gflops: float | None = None
    cpu_kind: str = ""
    isa: str = ""

    def gflops_in(self, dtype: str) -> float:
        """The measured matrix-multiply rate in ``dtype`` (float32 or bfloat16)."""
        if dtype == "float32":
            return self.gflops
        if dtype == "bfloat16" and self.bf16_gflops is not None:
            return self.bf16_gflops
        raise ValueError(f"no measured rate for dtype {dtype!r} (measured: float32{', bfloat16' if self.bf16_gflops else ''})")


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder that set its per-token bytes and FLOPs."""

    weight_bytes: int  # every parameter once in float32 (a tied embedding counts once: it is read as the output head)
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


#: bytes per element of the dtypes a row can compute in
ELEMENT_BYTES = {"float32": 4, "bfloat16": 2}


def measure_machine(threads: int | None = None, repeats: int = 5, shape: ModelShape | None = None) -> MachineLimits:
    """Bandwidth (GB/s, reading) and float32 and bfloat16 matrix-multiply rates (GFLOP/s) with
    ``threads`` torch threads, and the CPU's kind and flags."""
    import torch

    from st_eval.native_dtype import cpu_kind, isa_names

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        data = torch.ones(64 * 2**20)  # 256 MiB of float32
        data.sum()
        best = min(_timed(data.sum) for _ in range(repeats))
        bandwidth = data.numel() * 4 / best / 1e9
        hidden, inner = (shape.hidden, shape.intermediate) if shape else (576, 1536)
        rates = {}
        for dtype in ELEMENT_BYTES:
            x, w = torch.randn(512, hidden, dtype=getattr(torch, dtype)), torch.randn(hidden, inner, dtype=getattr(torch, dtype))
            x @ w
            best = min(_timed(lambda: x @ w) for _ in range(repeats))
            rates[dtype] = round(2 * 512 * hidden * inner / best / 1e9, 2)
        return MachineLimits(
            round(bandwidth, 2), rates["float32"], torch.get_num_threads(), bf16_gflops=rates["bfloat16"],
            cpu_kind=cpu_kind(), isa=", ".join(isa_names()) or "none of AVX2, AVX-512, AVX512-BF16, AMX",
        )
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
            weight_bytes += parameter.numel() * ELEMENT_BYTES["float32"]
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
    *, dtype: str = "float32",
) -> dict[str, float]:
    """The decode and run bounds (tok/s) for one row's run, and their parts, with weights, keys
    and values ``dtype``-wide and arithmetic at ``dtype``'s measured rate."""
    rows = max(1, min(batch, len(prompt_lengths)))
    gen_total = sum(generated)
    context = sum(prompt_lengths) / len(prompt_lengths) + gen_total / len(generated) / 2
    width = ELEMENT_BYTES[dtype]
    step_bytes = shape.weight_bytes * width / ELEMENT_BYTES["float32"] + rows * context * shape.kv_bytes_per_token(width)
    bandwidth = limits.bandwidth_gb_s * 1e9
    peak = limits.gflops_in(dtype) * 1e9
    decode_bound = rows * bandwidth / step_bytes
    prefill_flops = _prefill_flops(shape, prompt_lengths, shared_prefix)
    step_flops = rows * (2 * (shape.body_params + shape.head_params) + _attention_per_key(shape) * context)
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


def _prefill_flops(shape: ModelShape, prompt_lengths: list[int], shared_prefix: int) -> float:
    """FLOPs of reading the prompts through the body, the prefix all of them share counted once;
    causal attention (n^2 / 2 keys per prompt)."""
    prefill_tokens = shared_prefix + sum(n - shared_prefix for n in prompt_lengths)
    return 2 * shape.body_params * prefill_tokens + sum(_attention_per_key(shape) * n * n / 2 for n in prompt_lengths)


def _attention_per_key(shape: ModelShape) -> int:
    """Attention FLOPs per query token per key: q.k and p.v, 2 FLOPs each, in every layer and head."""
    return 4 * shape.layers * shape.heads * shape.head_dim


def prefix_reuse(sequences: list[list[int]]) -> list[int]:
    """Per sequence, how many of its leading tokens another sequence already starts with (in
    sorted order, each sequence against the one before it): what no engine must compute twice.
    The sums of lengths minus these are the tokens of the sequences' prefix tree."""
    order = sorted(range(len(sequences)), key=lambda i: sequences[i])
    reused = [0] * len(sequences)
    for before, index in zip(order, order[1:]):
        a, b = sequences[before], sequences[index]
        length = 0
        while length < min(len(a), len(b)) and a[length] == b[length]:
            length += 1
        reused[index] = length
    return reused


def rating_bound(
    shape: ModelShape, limits: MachineLimits, prompt_lengths: list[int], reused: list[int], *, dtype: str = "float32",
) -> dict[str, float]:
    """The arithmetic bound of a rating judge, in prompts/s and pairs/s (two prompts per pair:
    each answer rated alone), at ``dtype``'s measured rate: every token of the prompts' prefix
    tree once through the body (``reused``: :func:`prefix_reuse`), each attending causally to
    the tokens before it, and the output head once per prompt, at its last token."""
    body = sum(n - r for n, r in zip(prompt_lengths, reused))
    attention = sum((n * n - r * r) / 2 for n, r in zip(prompt_lengths, reused))
    flops = 2 * shape.body_params * body + _attention_per_key(shape) * attention + 2 * shape.head_params * len(prompt_lengths)
    seconds = flops / (limits.gflops_in(dtype) * 1e9)
    return {
        "bound_s": round(seconds, 1),
        "prompts_per_s": round(len(prompt_lengths) / seconds, 3),
        "pairs_per_s": round(len(prompt_lengths) / 2 / seconds, 3),
    }


def limits_dict(limits: MachineLimits) -> dict[str, Any]:
    return asdict(limits)


def training_bound_s(
    shape: ModelShape, limits: MachineLimits, sequence_lengths: list[int], completion_tokens: list[int], *, frozen_body: bool = True,
    dtype: str = "float32",
) -> float:
    """Seconds one pass of fine-tuning over these sequences needs at ``dtype``'s measured arithmetic rate.

    Per token, the body's forward (2 FLOPs per parameter) and the backward's activation gradients
    (2 more); full fine-tuning adds the weight gradients (2 more), LoRA's adapters are too small
    to count. The output head runs on completion tokens only (the loss's positions), forward and
    backward; attention is causal (n^2 / 2 keys per sequence), forward plus twice that backward.
    """
    per_body_token = (4 if frozen_body else 6) * shape.body_params
    per_head_token = 4 * shape.head_params
    flops = sum(per_body_token * n + 3 * _attention_per_key(shape) * n * n / 2 for n in sequence_lengths) + per_head_token * sum(completion_tokens)
    return flops / (limits.gflops_in(dtype) * 1e9)


__all__ = [
    "ELEMENT_BYTES", "MachineLimits", "ModelShape", "limits_dict", "measure_machine", "model_shape", "model_shape_of", "prefix_reuse",
    "rating_bound", "run_bounds", "training_bound_s",
]
