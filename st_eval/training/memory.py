"""Memory per GPU of a run's stages, from the model's shape and the recipe's lengths.

Estimates for planning a run before it spends GPU hours (``st-eval train --plan``), each term
stated so it can be checked:

* weights: 2 bytes per parameter in bfloat16, 4 in float32; split over the processes under
  FSDP or ZeRO-3 (``1/N``), over the GPUs of a replica under vLLM's tensor parallelism;
* optimizer and gradients: Adam's two float32 moments (8 bytes per trained parameter), the
  gradients (4 bytes, 2 under DeepSpeed's bf16) and the float32 master weights where the
  weights themselves are bfloat16 (DeepSpeed: 4 more); on the CPU when DeepSpeed offloads them;
  LoRA trains its adapters only (float32, 16 bytes per adapter parameter);
* activations: with gradient checkpointing, each layer's input (2 bytes x hidden per token)
  plus one layer's recomputed intermediates; the logits in bfloat16, their float32 copy for
  the loss and its gradient (10 bytes x vocabulary per scored token);
* KV cache: 2 (keys, values) x layers x KV heads x head size x 2 bytes per token;
* fixed costs: a CUDA context, NCCL buffers and the caching allocator's slack per training
  process; vLLM's profiling activations and CUDA graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 2**30
#: per training process: CUDA context, NCCL buffers, the caching allocator's fragmentation
TRAINING_RUNTIME = 3 * GIB
#: per vLLM GPU, inside its memory share: profiling activations and CUDA graphs
VLLM_RUNTIME = 3 * GIB


@dataclass(frozen=True)
class ModelDims:
    """What sets a decoder's memory: parameters, layers, widths, vocabulary, context."""

    params: int
    layers: int
    hidden: int
    intermediate: int
    kv_heads: int
    head_dim: int
    vocab: int
    context: int | None
    layer_params: int
    #: (module name, in features, out features) of one decoder layer's linear modules
    linears: tuple[tuple[str, int, int], ...]

    def kv_bytes_per_token(self, tensor_parallel: int = 1, element_bytes: int = 2) -> int:
        """Keys and values of one token on one GPU (KV heads split over tensor parallelism,
        replicated when there are fewer heads than GPUs)."""
        return 2 * self.layers * math.ceil(self.kv_heads / tensor_parallel) * self.head_dim * element_bytes

    def lora_params(self, rank: int, targets: str | list[str]) -> int:
        """Adapter parameters of LoRA rank ``rank`` on ``targets`` (``all-linear``: every linear
        layer of the decoder, not the output head, as peft reads it)."""
        chosen = [
            (n_in, n_out) for name, n_in, n_out in self.linears
            if targets == "all-linear" or name.rsplit(".", 1)[-1] in targets
        ]
        return self.layers * sum(rank * (n_in + n_out) for n_in, n_out in chosen)


def read_model_config(source: str | Path) -> Any:
    """A transformers config from a folder, a ``config.json`` file or a hub id (config only)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(source))


def model_dims(config: Any) -> ModelDims:
    """The dimensions of a causal LM, counted on a skeleton on the meta device (no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config(decoder=True)
    layers = next(m for m in skeleton.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == text.num_hidden_layers)
    layer = layers[0]
    heads = text.num_attention_heads
    context = getattr(text, "max_position_embeddings", None)
    return ModelDims(
        params=sum(p.numel() for p in skeleton.parameters()),
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
        vocab=text.vocab_size,
        context=context if isinstance(context, int) else None,
        layer_params=sum(p.numel() for p in layer.parameters()),
        linears=tuple((name, m.in_features, m.out_features) for name, m in layer.named_modules() if isinstance(m, torch.nn.Linear)),
    )


@dataclass
class GpuMemory:
    """Bytes one GPU holds, by part, in the order they are shown."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        shown = " + ".join(f"{name} {value / GIB:.1f}" for name, value in self.parts.items() if value)
        return f"{shown} = {self.total / GIB:.1f} GiB"


def vllm_memory(dims: ModelDims, *, tensor_parallel: int, utilization: float, gpu_bytes: float) -> tuple[GpuMemory, int]:
    """One vLLM GPU: its share ``utilization`` of the GPU holds the weights (1/tensor_parallel),
    its runtime, and a KV cache of whatever is left; returns the memory and the KV cache's tokens."""
    share = utilization * gpu_bytes
    weights = dims.params * 2 / tensor_parallel
    kv = max(0.0, share - weights - VLLM_RUNTIME)
    memory = GpuMemory({"weights": weights, "KV cache": kv, "vLLM runtime": min(VLLM_RUNTIME, max(0.0, share - weights))})
    return memory, int(kv // dims.kv_bytes_per_token(tensor_parallel))


def hf_generation_memory(dims: ModelDims, *, gpus: int, rows: int, tokens: int) -> GpuMemory:
    """The hf engine on CUDA: weights spread over ``gpus`` by layers (device map), and a static
    KV cache of ``rows`` x ``tokens`` spread the same way."""
    return GpuMemory({
        "weights": dims.params * 2 / gpus,
        "KV cache": rows * tokens * dims.kv_bytes_per_token() / gpus,
        "CUDA runtime": TRAINING_RUNTIME,
    })


@dataclass(frozen=True)
class TrainingShape:
    """How one training stage runs, as far as memory is concerned.

    trainable: parameters the optimizer updates (LoRA adapters, or all of them).
    processes: data-parallel processes (all machines).
    sharding: ``none`` (one process or DDP: every process a full copy), ``fsdp``, or
        ``zero1`` / ``zero2`` / ``zero3`` (DeepSpeed).
    offload_optimizer: DeepSpeed keeps master weights and Adam's moments on the CPU.
    sequences, tokens, scored_tokens: per micro-batch, sequences of up to ``tokens`` tokens, of
        which ``scored_tokens`` get logits (all of them for SFT/DPO, the completion for GRPO).
    reference: a frozen copy of the model for a KL term (full fine-tuning with DPO or GRPO's
        beta; LoRA disables its adapter instead).
    colocated: bytes a colocated vLLM takes on the same GPU (GRPO's ``use_vllm``).
    """

    trainable: int
    lora: bool
    bf16: bool
    processes: int
    sharding: str
    offload_optimizer: bool
    sequences: int
    tokens: int
    scored_tokens: int
    checkpointing: bool
    reference: bool = False
    colocated: float = 0.0


def training_memory(dims: ModelDims, shape: TrainingShape) -> GpuMemory:
    """Per GPU of one training process (see the module docstring for each term)."""
    p, n = dims.params, shape.processes
    shards = n if shape.sharding in ("fsdp", "zero3") else 1
    optimizer_shards = n if shape.sharding != "none" else 1
    if shape.lora:
        weights = p * (2 if shape.bf16 else 4) / shards
        optimizer = 16 * shape.trainable / optimizer_shards
    elif shape.sharding == "fsdp":  # FSDP upcasts bf16 parameters to float32 master weights
        weights, optimizer = 4 * p / n, 12 * p / n
    elif shape.sharding.startswith("zero"):
        weights = 2 * p / shards
        gradients = 2 * p / (n if shape.sharding in ("zero2", "zero3") else 1)
        optimizer = gradients + (0 if shape.offload_optimizer else 12 * p / n)
    else:  # one copy per process; float32 weights (sft.weights_dtype), grads and Adam
        weights, optimizer = 4 * p, 12 * p
    checkpoints = shape.sequences * shape.tokens * dims.hidden * 2 * dims.layers
    one_layer = shape.sequences * shape.tokens * (4 * dims.hidden + 4 * dims.intermediate) * 2 * 2
    stored = checkpoints + one_layer if shape.checkpointing else one_layer * dims.layers
    logits = shape.sequences * shape.scored_tokens * dims.vocab * 10
    parts = {
        "weights": weights,
        "optimizer and gradients": optimizer,
        "activations": stored,
        "logits": logits,
        "gathered layers": 2 * dims.layer_params * 2 if shards > 1 else 0.0,
        "reference model": 2 * p / shards if shape.reference else 0.0,
        "colocated vLLM": shape.colocated,
        "CUDA runtime": TRAINING_RUNTIME,
    }
    return GpuMemory(parts)


def offloaded_cpu_bytes(dims: ModelDims, machines: int) -> float:
    """CPU memory per machine that DeepSpeed's optimizer offload takes: float32 master weights
    and Adam's two moments (12 bytes per parameter), split over the machines."""
    return 12 * dims.params / machines


__all__ = [
    "GIB", "GpuMemory", "ModelDims", "TrainingShape", "hf_generation_memory", "model_dims", "offloaded_cpu_bytes",
    "read_model_config", "training_memory", "vllm_memory",
]
