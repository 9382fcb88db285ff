"""``st-eval train --plan``: what a recipe will run where, and whether it fits, before any GPU.

For each stage: the engine or trainer, its processes and GPUs, and the memory of one GPU
(``memory.py``) from the model's config (only ``config.json`` is read; ``--model-config``
names one) and the recipe's lengths, against the GPUs the user states; then the exact commands
for the main machine and each worker machine, the installed libraries against the versions
that work, and one refusal line, naming the recipe field, per combination known to fail
(``preflight.recipe_problems`` plus those that depend on the cluster).
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from st_eval.embedded import resolve_model
from st_eval.errors import InputError
from st_eval.prompt import load_template
from st_eval.records import Message, Pair
from st_eval.training.config import Recipe
from st_eval.training.launch_config import LaunchConfig
from st_eval.training.memory import (
    GIB, GpuMemory, ModelDims, TrainingShape, hf_generation_memory, model_dims, offloaded_cpu_bytes, read_model_config,
    training_memory, vllm_memory,
)
from st_eval.training.preflight import launch_config, recipe_problems
from st_eval.training.versions import SUPPORTED, installed, trl_vllm_range, within

#: characters per token assumed where the recipe bounds text in characters (instructions): English
#: under the Llama-3 and SmolLM tokenizers runs near 4; 3 leaves a margin
CHARS_PER_TOKEN = 3
#: tokens of chat-template markup per message (role headers, separators)
MARKUP_TOKENS = 8
#: vLLM's default share of a GPU (``gpu_memory_utilization``)
VLLM_DEFAULT_UTILIZATION = 0.9
#: the hf engine's default prompts per batch on CUDA (``HFEngine.batch_size``)
HF_GPU_BATCH = 8
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(TiB|GiB|MiB|TB|GB|MB)\s*$", re.IGNORECASE)
_UNITS = {"tib": 2**40, "gib": 2**30, "mib": 2**20, "tb": 1e12, "gb": 1e9, "mb": 1e6}


@dataclass(frozen=True)
class Cluster:
    """The GPUs a run gets: ``nodes`` machines of ``gpus_per_node`` GPUs of ``gpu_bytes`` each."""

    gpu_bytes: float
    gpus_per_node: int
    nodes: int

    def describe(self) -> str:
        return f"{self.nodes} node(s) x {self.gpus_per_node} GPUs of {self.gpu_bytes / GIB:.1f} GiB"


def parse_size(text: str) -> float:
    """``80GiB`` / ``141GB`` / ``81920MiB`` -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise InputError(f"--gpu-memory {text!r}: give a size with its unit, e.g. 80GiB or 141GB")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


@dataclass
class Stage:
    """One stage of the plan: what runs, where, and one GPU's memory."""

    title: str
    lines: list[str]
    memory: GpuMemory | None = None


@dataclass
class Plan:
    """A recipe's stages, commands, refusals and libraries, rendered as Markdown."""

    header: list[str]
    stages: list[Stage]
    commands: list[str]
    refusals: list[str]
    libraries: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def markdown(self, *, libraries: bool = True) -> str:
        out = [*self.header, ""]
        for number, stage in enumerate(self.stages, 1):
            out += [f"### {number}. {stage.title}", "", *(f"- {line}" for line in stage.lines), ""]
        out += ["## Commands", "", *self.commands, "", "## Refusals", ""]
        out += [f"- {line}" for line in self.refusals] or ["None: no combination known to fail."]
        if libraries:
            out += ["", LIBRARIES_HEADING, "", "| library | installed here | works with | needed by this recipe | |", "|---|---|---|---|---|"]
            out += [f"| {' | '.join(row)} |" for row in self.libraries]
        return "\n".join(out).rstrip() + "\n"


#: the section that depends on the machine the plan runs on (left out where plans are compared)
LIBRARIES_HEADING = "## Libraries"


def judge_prompt_tokens(recipe: Recipe) -> tuple[int, str]:
    """An upper estimate of a judge prompt's tokens, and how it was reached: the template's own
    text, the longest instruction the pool keeps and the responses' budgets."""
    template = load_template(recipe.template)
    empty = Pair("plan", [Message("user", "")], "", "")
    messages = template.render_rating(empty, "A") if template.one_answer else template.render(empty)
    own = math.ceil(sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN) + MARKUP_TOKENS * (len(messages) + 1)
    instruction_chars = min(filter(None, (template.max_instruction_chars, recipe.pool.max_chars)))
    instruction = math.ceil(instruction_chars / CHARS_PER_TOKEN)
    count = 1 if template.one_answer else 2
    if template.max_response_chars:
        responses = count * math.ceil(template.max_response_chars / CHARS_PER_TOKEN)
        answers = "one answer" if count == 1 else f"{count} answers of at most {template.max_response_chars} chars"
    else:
        responses, answers = count * recipe.synthesis.max_new_tokens, f"{count} x synthesis.max_new_tokens"
    total = own + instruction + responses
    return total, (
        f"template {own} + instruction {instruction} ({instruction_chars} chars at {CHARS_PER_TOKEN} per token) + {answers} {responses}"
    )


def make_plan(
    recipe: Recipe, recipe_path: str | Path, cluster: Cluster, *, model_config: str | Path | None = None, run_dir: str | Path | None = None,
) -> Plan:
    """The plan of ``recipe`` on ``cluster`` (see the module docstring)."""
    launch = launch_config(recipe)
    dims = dims_of(str(model_config or resolve_model(recipe.seed_model)))
    run = str(run_dir or Path("runs") / recipe.name)
    prompt, prompt_how = judge_prompt_tokens(recipe)
    refusals = [f"field {name!r} {problem}" for name, problem in recipe_problems(recipe)]
    header = [
        f"# Plan: {recipe.name}",
        "",
        f"`st-eval train --recipe {_shown(recipe_path)} --plan{_cluster_flags(cluster)}"
        + (f" --model-config {_shown(model_config)}" if model_config else "") + (f" --run-dir {run_dir}" if run_dir else "") + "`",
        "",
        f"Cluster: {cluster.describe()}. Model: `{recipe.seed_model}`, {dims.params / 1e9:.2f} B parameters, {dims.layers} layers, "
        f"hidden {dims.hidden}, {dims.kv_heads} KV heads, vocabulary {dims.vocab}, context {dims.context or 'unknown'}; "
        f"KV cache {dims.kv_bytes_per_token() / 2**10:.0f} KiB per token in bf16.",
        "",
        f"Longest judge prompt (estimate): {prompt:,} tokens ({prompt_how}).",
        "",
        f"## Stages ({recipe.iterations} iteration(s); memory per GPU in GiB, estimates: `st_eval/training/memory.py`)",
    ]
    stages = [_generation_stage(recipe, dims, cluster, prompt, refusals)]
    if launch is not None:
        refusals += _cluster_problems(launch, cluster)
    stages += _training_stages(recipe, dims, cluster, launch, prompt, run, refusals)
    return Plan(header, stages, _commands(recipe, recipe_path, launch, run), refusals, _libraries(recipe, launch))


@functools.lru_cache(maxsize=8)
def dims_of(source: str) -> ModelDims:
    """The dimensions of the model whose config is at ``source`` (a 70B skeleton takes seconds)."""
    return model_dims(read_model_config(source))


def _generation_stage(recipe: Recipe, dims: ModelDims, cluster: Cluster, prompt: int, refusals: list[str]) -> Stage:
    options = recipe.engine_options
    judgment = max(recipe.annotation.max_new_tokens, recipe.evaluation.max_new_tokens)
    title = "Generation: selection, synthesis, annotation, evaluation of each judge (main node)"
    if recipe.engine == "openai":
        return Stage(title, ["engine `openai`: generated by servers elsewhere (refused below)"])
    lines = [f"chunks of {recipe.prompts_per_call} prompts per engine call (`chunk_size`); judge prompt + judgment: {prompt:,} + {judgment:,} tokens"]
    if not load_template(recipe.template).reads_probabilities:
        limit = (recipe.selection.limit if recipe.selection.enabled else 0) or recipe.pool.limit
        samples = recipe.annotation.samples
        volume = (
            f"up to {max(0, limit - recipe.synthesis.heldout):,} pairs x 2 orders x {samples} samples = "
            f"{max(0, limit - recipe.synthesis.heldout) * 2 * samples:,} judgments" if limit else f"every training pair x 2 orders x {samples} samples"
        )
        lines.append(f"annotation: {volume} of up to {recipe.annotation.max_new_tokens:,} tokens per iteration")
    if recipe.cluster is not None:
        return _ray_generation_stage(recipe, dims, cluster, prompt + judgment, lines, refusals)
    if cluster.nodes > 1:
        lines.append(f"runs on the main node only: the other {cluster.nodes - 1} node(s) wait until the first training job")
    if recipe.engine == "hf":
        rows = _hf_rows(recipe)
        memory = hf_generation_memory(dims, gpus=cluster.gpus_per_node, rows=rows, tokens=prompt + judgment)
        lines += [
            f"engine `hf` on CUDA: the model spread over the node's {cluster.gpus_per_node} GPUs (device map), "
            f"static cache of {rows} rows x {prompt + judgment} tokens",
            f"per GPU: {memory.describe()} of {cluster.gpu_bytes / GIB:.1f}",
        ]
        if memory.total > cluster.gpu_bytes:
            refusals.append(f"field 'engine_options.batch_size' gives the hf engine's static cache {rows} rows: {memory.describe()} per GPU, over {cluster.gpu_bytes / GIB:.1f}; lower it or engine_options.max_rows")
        return Stage(title, lines, memory)
    tp = int(options.get("tensor_parallel_size", 1))
    dp = int(options.get("data_parallel_size", 1))
    utilization = float(options.get("gpu_memory_utilization", VLLM_DEFAULT_UTILIZATION))
    window = int(options.get("max_model_len") or dims.context or 0)
    memory, kv_tokens = vllm_memory(dims, tensor_parallel=tp, utilization=utilization, gpu_bytes=cluster.gpu_bytes)
    lines += [
        f"engine `vllm`: {dp} replica(s) x tensor parallel {tp} = {tp * dp} of the main node's {cluster.gpus_per_node} GPUs",
        f"per GPU: {memory.describe()} (gpu_memory_utilization {utilization} of {cluster.gpu_bytes / GIB:.1f}); "
        f"KV cache {kv_tokens:,} tokens = {kv_tokens // max(1, window)} sequence(s) of max_model_len {window:,}",
    ]
    if tp * dp < cluster.gpus_per_node:
        lines.append(f"{cluster.gpus_per_node - tp * dp} GPU(s) of the main node idle: engine_options.data_parallel_size: {cluster.gpus_per_node // tp} would use them")
    if prompt + judgment > window:
        lines.append("pairs whose prompt and judgment exceed max_model_len are shortened from the middle (counted)")
    if tp * dp > cluster.gpus_per_node:
        name = "engine_options.data_parallel_size" if dp > 1 else "engine_options.tensor_parallel_size"
        refusals.append(f"field {name!r} asks for {tp * dp} GPUs; generation runs on one node of {cluster.gpus_per_node}")
    elif dims.params * 2 / tp + GIB > utilization * cluster.gpu_bytes:
        refusals.append(
            f"field 'engine_options.tensor_parallel_size' ({tp}) leaves {dims.params * 2 / tp / GIB:.1f} GiB of weights per GPU, "
            f"more than vLLM's share ({utilization} x {cluster.gpu_bytes / GIB:.1f} GiB): raise it or gpu_memory_utilization"
        )
    elif kv_tokens < window:
        refusals.append(
            f"field 'engine_options.max_model_len' ({window:,}) is more than the KV cache holds ({kv_tokens:,} tokens); "
            "vLLM refuses to start: lower it, or raise gpu_memory_utilization or tensor_parallel_size"
        )
    return Stage(title, lines, memory)


def _hf_rows(recipe: Recipe) -> int:
    """Rows of the hf engine's static cache on CUDA: its batch of prompts times their samples."""
    from st_eval.engines.hf import static_batch_prompts

    samples = max(recipe.annotation.samples, recipe.evaluation.samples)
    batch = int(recipe.engine_options.get("batch_size", HF_GPU_BATCH))
    return static_batch_prompts(batch, int(recipe.engine_options.get("max_rows", batch)), samples) * samples


def _ray_generation_stage(recipe: Recipe, dims: ModelDims, cluster: Cluster, tokens: int, lines: list[str], refusals: list[str]) -> Stage:
    """Generation on the recipe's Ray cluster: Ray Data jobs over replicas, one GPU's memory in a replica."""
    ray = recipe.cluster
    assert ray is not None
    gpus = ray.gpus_per_replica
    through = "vLLM through ray.data.llm" if recipe.engine == "vllm" and gpus >= 1 else f"st-eval's `{recipe.engine}` engine in each replica"
    lines = [
        *lines,
        f"Ray Data jobs on `{ray.address}`: {ray.replicas} replica(s) x {gpus:g} GPU(s) and {ray.cpus_per_replica:g} CPU(s), {through}; "
        f"blocks of {ray.block_size} prompts (the unit of retry and of cache writes)",
        "each job loads the judge on every replica; the run folder must be mounted at the same path on every node (checked when the run starts)",
    ]
    memory = None
    if gpus >= 1 and recipe.engine == "vllm":
        tp = int(recipe.engine_options.get("tensor_parallel_size", gpus))
        utilization = float(recipe.engine_options.get("gpu_memory_utilization", VLLM_DEFAULT_UTILIZATION))
        memory, kv_tokens = vllm_memory(dims, tensor_parallel=tp, utilization=utilization, gpu_bytes=cluster.gpu_bytes)
        lines.append(f"per GPU: {memory.describe()} (gpu_memory_utilization {utilization} of {cluster.gpu_bytes / GIB:.1f}); KV cache {kv_tokens:,} tokens per replica")
    elif gpus >= 1:
        memory = hf_generation_memory(dims, gpus=int(gpus), rows=_hf_rows(recipe), tokens=tokens)
        lines.append(f"per GPU: {memory.describe()} of {cluster.gpu_bytes / GIB:.1f}")
    if gpus > cluster.gpus_per_node:
        refusals.append(f"field 'cluster.gpus_per_replica' ({gpus:g}) is more than a node's {cluster.gpus_per_node} GPUs: a replica never fits one node")
    elif memory is not None and memory.total > cluster.gpu_bytes:
        refusals.append(f"field 'cluster.gpus_per_replica' ({gpus:g}) leaves {memory.describe()} per GPU, over {cluster.gpu_bytes / GIB:.1f}: give each replica more GPUs")
    return Stage(f"Generation: selection, synthesis, annotation, evaluation of each judge (Ray cluster, {ray.replicas} replicas)", lines, memory)


def _training_stages(
    recipe: Recipe, dims: ModelDims, cluster: Cluster, launch: LaunchConfig | None, prompt: int, run: str, refusals: list[str],
) -> list[Stage]:
    train = recipe.train
    rating = load_template(recipe.template).reads_probabilities
    grpo_alone = recipe.grpo.enabled and not recipe.grpo.after_sft
    kinds = ["reward"] if rating else [k for k, on in (
        ("sft", not grpo_alone), ("dpo", recipe.dpo.enabled and not grpo_alone), ("grpo", recipe.grpo.enabled),
    ) if on]
    processes = launch.processes if launch else 1
    sharding = _sharding(launch)
    trainable = dims.lora_params(train.lora.r, train.lora.target_modules) if train.method == "lora" else dims.params
    how = (
        f"LoRA r {train.lora.r} on {train.lora.target_modules} ({trainable / 1e6:.1f} M trained of {dims.params / 1e9:.2f} B)"
        if train.method == "lora" else f"full fine-tuning ({dims.params / 1e9:.2f} B trained)"
    )
    where = (
        f"{processes} process(es) on {launch.machines} node(s), {launch.distributed_type}"
        + (f" ZeRO-{launch.zero_stage}, optimizer offload {launch.offload_optimizer}" if launch.distributed_type == "DEEPSPEED" else "")
        + f" (`{_shown(launch.path)}`)"
        if launch else "1 process, 1 GPU (train.launcher: inprocess)"
    )
    bf16 = train.computes_in_bfloat16("cuda")  # the plan is for GPUs
    stages = []
    for kind in kinds:
        lines = [f"{_TRAINERS[kind]}, {how}, {'bf16' if bf16 else 'float32'}", where]
        sequences, tokens, scored, vllm = _micro_batch(kind, recipe, dims, cluster, processes, prompt, lines, refusals)
        colocated = vllm.total if vllm is not None and not recipe.grpo.vllm_sleep else 0.0
        reference = train.method == "full" and (kind == "dpo" or (kind == "grpo" and recipe.grpo.beta > 0))
        memory = training_memory(dims, TrainingShape(
            trainable=trainable, lora=train.method == "lora", bf16=bf16, processes=processes, sharding=sharding,
            offload_optimizer=bool(launch and launch.offload_optimizer != "none"), sequences=sequences, tokens=tokens,
            scored_tokens=scored, checkpointing=train.gradient_checkpointing, reference=reference, colocated=colocated,
        ))
        phases = [("", memory)]
        if vllm is not None and recipe.grpo.vllm_sleep:  # generating: vLLM awake, the trainer's activations freed
            generating = GpuMemory({
                name: value for name, value in memory.parts.items() if name not in ("activations", "logits", "gathered layers")
            } | {"colocated vLLM": vllm.total})
            phases = [(" while generating", generating), (" while training", memory)]
        peak = max((m for _, m in phases), key=lambda m: m.total)
        fits = peak.total <= cluster.gpu_bytes
        for label, phase in phases:
            verdict = "fits" if phase.total <= cluster.gpu_bytes else "does not fit"
            lines.append(f"per GPU{label}: {phase.describe()} of {cluster.gpu_bytes / GIB:.1f}: {verdict}")
        if launch and launch.offload_optimizer != "none" and train.method == "full":
            lines.append(
                f"CPU memory per node for the offloaded optimizer: {offloaded_cpu_bytes(dims, launch.machines) / GIB:.0f} GiB "
                "(float32 master weights and Adam's moments)"
            )
        lines.append(f"launched by the main node: `{_job_command(launch, f'{run}/iter-NN/{kind}_job.json')}`")
        if not fits:
            refusals.append(_memory_refusal(kind, recipe, launch, peak, cluster))
        stages.append(Stage(f"{_TITLES[kind]} (each iteration)", lines, peak))
    return stages


_TRAINERS = {"sft": "trl SFTTrainer", "dpo": "trl DPOTrainer", "grpo": "trl GRPOTrainer", "reward": "trl RewardTrainer (the judge's verdict log-odds)"}
_TITLES = {"sft": "SFT", "dpo": "DPO", "grpo": "GRPO", "reward": "Reward training (rating judge)"}


def _micro_batch(
    kind: str, recipe: Recipe, dims: ModelDims, cluster: Cluster, processes: int, prompt: int, lines: list[str], refusals: list[str],
) -> tuple[int, int, int, GpuMemory | None]:
    """A training stage's micro-batch: sequences, tokens per sequence, tokens scored by the output
    head, and GRPO's colocated vLLM (None without); says so in ``lines``, refusing what fails."""
    train, grpo = recipe.train, recipe.grpo
    if kind == "reward":
        sequences = 2 * train.batch_size
        lines.append(f"micro-batches of {train.batch_size} pairs (chosen and rejected: {sequences} sequences) of up to {train.max_length:,} tokens")
        return sequences, train.max_length, 0, None
    if kind in ("sft", "dpo"):
        sequences = train.batch_size * (2 if kind == "dpo" else 1)
        needed = prompt + recipe.annotation.max_new_tokens
        lines.append(
            f"micro-batches of {train.batch_size} row(s) ({sequences} sequences) of up to {train.max_length:,} tokens (train.max_length), "
            f"gradient accumulation {train.gradient_accumulation_steps}; a row needs up to {needed:,} (prompt + annotation.max_new_tokens); "
            "longer rows are dropped, counted"
        )
        if kind == "sft" and needed > train.max_length:
            refusals.append(
                f"field 'train.max_length' ({train.max_length:,}) is under the longest row (~{needed:,} tokens: prompt ~{prompt:,} + "
                f"judgment {recipe.annotation.max_new_tokens:,}): the longest judgments, verdict at their end, could not be trained on (dropped); raise it"
            )
        return sequences, train.max_length, train.max_length, None
    tokens = prompt + grpo.max_completion_length
    lines.append(
        f"each optimizer step: {grpo.pairs_per_step} pair(s) x 2 orders x {grpo.num_generations} judgments, "
        f"{2 * grpo.pairs_per_step / processes:g} prompt(s) per process, micro-batches of {grpo.num_generations} sequences of up to {tokens:,} tokens"
    )
    if not grpo.use_vllm:
        lines.append("rollouts by trl's own generation (transformers)")
        return grpo.num_generations, tokens, grpo.max_completion_length, None
    window = min(tokens, dims.context or tokens)
    vllm, kv_tokens = vllm_memory(dims, tensor_parallel=1, utilization=grpo.vllm_gpu_memory_utilization, gpu_bytes=cluster.gpu_bytes)
    lines.append(
        f"colocated vLLM per process: {vllm.describe()}, context {window:,} tokens (longest prompt + max_completion_length; "
        f"trl's default, the model's {dims.context or 0:,}, would not fit), KV cache {kv_tokens:,} tokens"
        + ("; asleep while the trainer computes (grpo.vllm_sleep)" if grpo.vllm_sleep else "")
    )
    if kv_tokens < window:
        refusals.append(
            f"field 'grpo.vllm_gpu_memory_utilization' ({grpo.vllm_gpu_memory_utilization}) leaves the colocated vLLM "
            f"{kv_tokens:,} tokens of KV cache, under one {window:,}-token sequence: vLLM refuses to start"
        )
    return grpo.num_generations, tokens, grpo.max_completion_length, vllm


def _sharding(launch: LaunchConfig | None) -> str:
    if launch is None:
        return "none"
    if launch.distributed_type == "FSDP":
        return "fsdp"
    if launch.distributed_type == "DEEPSPEED":
        return f"zero{launch.zero_stage or 0}"
    return "none"


def _memory_refusal(kind: str, recipe: Recipe, launch: LaunchConfig | None, memory: GpuMemory, cluster: Cluster) -> str:
    """One line naming the field to change when a training stage does not fit a GPU."""
    need = f"needs ~{memory.total / GIB:.1f} GiB per GPU for {_TITLES[kind]} ({memory.describe()}), over the {cluster.gpu_bytes / GIB:.1f} GiB of a GPU"
    if kind == "grpo" and recipe.grpo.use_vllm:
        return f"field 'grpo.vllm_gpu_memory_utilization' ({recipe.grpo.vllm_gpu_memory_utilization}) {need}: give vLLM less or train fewer tokens"
    if recipe.train.method == "full" and (launch is None or not launch.sharded):
        return f"field 'train.method' (full) {need}: one process keeps float32 weights, gradients and Adam (16 bytes per parameter); use LoRA or an FSDP / DeepSpeed accelerate config"
    if recipe.train.method == "full" and launch is not None and launch.distributed_type == "DEEPSPEED" and launch.offload_optimizer == "none":
        return f"field 'train.accelerate_config' ({launch.path.name}) {need}: offload the optimizer (offload_optimizer_device: cpu) or use more GPUs"
    return f"field 'train.batch_size' ({recipe.train.batch_size}) {need}: lower it (and raise gradient_accumulation_steps) or train.max_length"


def _cluster_problems(launch: LaunchConfig, cluster: Cluster) -> list[str]:
    problems = []
    if launch.machines != cluster.nodes:
        problems.append(f"field 'train.accelerate_config' ({launch.path.name}) is for {launch.machines} machine(s); the cluster has {cluster.nodes} (--nodes)")
    if launch.processes > cluster.nodes * cluster.gpus_per_node:
        problems.append(
            f"field 'train.accelerate_config' ({launch.path.name}) starts {launch.processes} processes; the cluster has "
            f"{cluster.nodes * cluster.gpus_per_node} GPUs"
        )
    return problems


def _job_command(launch: LaunchConfig | None, job_file: str) -> str:
    if launch is None:
        return f"python -m st_eval.training.jobs {job_file}"
    return f"accelerate launch --config_file {_shown(launch.path)} -m st_eval.training.jobs {job_file}"


def _commands(recipe: Recipe, recipe_path: str | Path, launch: LaunchConfig | None, run: str) -> list[str]:
    lines = ["Main node:", "", "```bash", f"st-eval train --recipe {_shown(recipe_path)} --run-dir {run}   # add --resume to continue", "```"]
    if launch is not None and launch.machines > 1:
        lines += [
            "",
            f"Each worker node (any time; it waits for the main node), with the run dir at the same path on a shared file system, "
            f"and `main_process_ip` in `{_shown(launch.path)}` set to the main node's address (or `--main-process-ip`):",
            "",
            "```bash",
            *(f"st-eval train-worker --run-dir {run} --machine-rank {rank}" for rank in range(1, launch.machines)),
            "```",
            "",
            "Each worker runs every training job the main node publishes (SFT, then DPO, every iteration) with its machine rank, "
            "and exits when the run ends.",
        ]
    return lines


def _libraries(recipe: Recipe, launch: LaunchConfig | None) -> list[tuple[str, str, str, str, str]]:
    needs = {name: "every stage" for name in ("torch", "transformers", "accelerate", "trl", "peft")}
    spec = dict(SUPPORTED)
    if recipe.engine == "vllm":
        needs["vllm"] = "engine `vllm`"
    if recipe.cluster is not None:
        needs["ray"] = "cluster"
    if recipe.grpo.enabled and recipe.grpo.use_vllm:
        needs["vllm"] = ", ".join(filter(None, [needs.get("vllm"), "grpo.use_vllm"]))
        spec["vllm"] = trl_vllm_range() or spec["vllm"]
    if launch and launch.distributed_type == "DEEPSPEED":
        needs["deepspeed"] = "train.accelerate_config"
    rows = []
    for name, works in spec.items():
        version = installed(name)
        if version is None:
            status = "missing: the run refuses to start" if name in needs else "-"
        else:
            status = "ok" if within(version, works) else "outside the range"
        rows.append((name, version or "not installed", works, needs.get(name, "-"), status))
    return rows


def _cluster_flags(cluster: Cluster) -> str:
    return f" --gpu-memory {cluster.gpu_bytes / GIB:g}GiB --gpus-per-node {cluster.gpus_per_node} --nodes {cluster.nodes}"


def _shown(path: Any) -> str:
    """A path relative to the current folder when it lies inside it (plans stay the same on every checkout)."""
    text = str(path)
    absolute = os.path.abspath(text)
    here = os.getcwd()
    return os.path.relpath(absolute, here) if absolute.startswith(here + os.sep) else text


__all__ = ["Cluster", "LIBRARIES_HEADING", "Plan", "Stage", "judge_prompt_tokens", "make_plan", "parse_size"]
