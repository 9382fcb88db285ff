"""vLLM replicas on GPUs through ``ray.data.llm``, Ray's own vLLM batch processor, where it fits.

It fits the vllm engine with at least one GPU per replica: the processor places each replica's
vLLM on its GPUs (``tensor_parallel_size`` defaults to ``gpus_per_replica``) and keeps several
blocks in flight per replica, so vLLM's scheduler always has work. CPU clusters run st-eval's
own replicas instead (``ray_data.Replica``).

Prompts go in as chat messages with per-row sampling parameters (``vllm.sampling_kwargs``, the
in-process engine's own); the processor's chat-template stage renders them as ``LLM.chat`` does
in one process (a final assistant message is continued), texts come back cut at the stop
strings, and first-token probabilities are read as ``vllm._top_logprobs`` reads them. The
processor writes one output per row, so ``n`` greedy samples are one row repeated and ``n``
sampled ones are ``n`` rows seeded ``seed, seed + 1, ...``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any

from st_eval.cluster import ClusterConfig
from st_eval.embedded import DEFAULT_MODEL, resolve_model
from st_eval.engines.base import ChatPrompt, SamplingConfig, add_token_logprob, cut_at_stop
from st_eval.engines.ray_jobs import stream
from st_eval.errors import InputError


def fits(spec: Any, cluster: ClusterConfig) -> bool:
    """Whether ``spec`` (an ``EngineSpec``) runs through the processor (checking its options if so)."""
    if spec.name != "vllm" or cluster.gpus_per_replica < 1:
        return False
    engine_kwargs(spec, cluster)
    return True


def engine_kwargs(spec: Any, cluster: ClusterConfig) -> dict[str, Any]:
    """The vllm engine's options as the processor's vLLM takes them; replicas replace its own
    data parallelism, and each replica's vLLM spans exactly its GPUs."""
    options = {k: v for k, v in spec.options.items() if k != "progress"}
    if options.pop("data_parallel_size", 1) != 1:
        raise InputError("engine option data_parallel_size does not apply on a cluster: --replicas (cluster.replicas) sets how many vLLM replicas run")
    options.setdefault("tensor_parallel_size", int(cluster.gpus_per_replica))
    spans = options["tensor_parallel_size"] * options.get("pipeline_parallel_size", 1)
    if spans != cluster.gpus_per_replica:
        raise InputError(
            f"--gpus-per-replica (cluster.gpus_per_replica) is {cluster.gpus_per_replica:g}, but each vLLM replica spans "
            f"tensor_parallel_size x pipeline_parallel_size = {spans} GPUs: make them equal"
        )
    return options


def describe(spec: Any) -> dict[str, Any]:
    """The vllm engine's name, model, identity and context window, read on the driver without starting vLLM."""
    from st_eval.engines.vllm import context_window

    model = spec.model or DEFAULT_MODEL
    return {
        "name": "vllm", "model": model, "identity": f"vllm:{model}",
        "context_window": context_window(resolve_model(model), spec.options), "dtype": spec.options.get("dtype"),
    }


def generation_rows(prompts: Sequence[ChatPrompt], n: int, sampling: SamplingConfig) -> list[dict[str, Any]]:
    """One row per prompt and sample drawn (greedy: one per prompt)."""
    from st_eval.engines.vllm import sampling_kwargs

    params = sampling_kwargs(sampling, 1)
    return [
        {"index": i, "sample": s, "messages": list(prompt), "sampling_params": {**params, "seed": sampling.seed + s}}
        for i, prompt in enumerate(prompts)
        for s in range(1 if sampling.greedy else n)
    ]


def logprob_rows(prompts: Sequence[ChatPrompt], top_k: int) -> list[dict[str, Any]]:
    """One greedy token per prompt with its ``top_k`` alternatives."""
    params = {"n": 1, "temperature": 0.0, "max_tokens": 1, "logprobs": top_k}
    return [{"index": i, "sample": 0, "messages": list(prompt), "sampling_params": params} for i, prompt in enumerate(prompts)]


def output_row(row: dict[str, Any]) -> dict[str, Any]:
    """What comes back of one processed row (run on the workers): its text, and its first
    token's alternatives as JSON (``{}`` when none were asked for)."""
    top: dict[str, float] = {}
    steps = row.get("logprobs")
    if steps is not None and len(steps):
        for entry in steps[0].values():
            if entry is not None:
                add_token_logprob(top, entry.get("decoded_token") or "", float(entry["logprob"]))
    return {"index": int(row["index"]), "sample": int(row["sample"]), "text": row.get("generated_text") or "", "top": json.dumps(top, ensure_ascii=False)}


def texts_by_prompt(
    blocks: Iterator[list[dict[str, Any]]], n: int, sampling: SamplingConfig
) -> Iterator[tuple[list[int], list[list[str]]]]:
    """Each prompt's ``n`` texts, cut at the stop strings, as soon as all its rows have landed."""
    samples: dict[int, dict[int, str]] = {}
    wanted = 1 if sampling.greedy else n
    for rows in blocks:
        done = []
        for row in rows:
            got = samples.setdefault(row["index"], {})
            got[row["sample"]] = cut_at_stop(row["text"], sampling.stop)
            if len(got) == wanted:
                done.append(row["index"])
        if done:
            yield done, [[samples[i][s] for s in range(wanted)] * (n if sampling.greedy else 1) for i in done]


def generate_blocks(
    ray: Any, spec: Any, cluster: ClusterConfig, prompts: Sequence[ChatPrompt], n: int, sampling: SamplingConfig
) -> Iterator[tuple[list[int], list[list[str]]]]:
    rows = generation_rows(prompts, n, sampling)
    yield from texts_by_prompt(stream(ray, functools.partial(processor_job, rows, spec, cluster)), n, sampling)


def logprob_blocks(
    ray: Any, spec: Any, cluster: ClusterConfig, prompts: Sequence[ChatPrompt], top_k: int
) -> Iterator[tuple[list[int], list[dict[str, float]]]]:
    for rows in stream(ray, functools.partial(processor_job, logprob_rows(prompts, top_k), spec, cluster)):
        yield [row["index"] for row in rows], [json.loads(row["top"]) for row in rows]


def processor_job(rows: list[dict[str, Any]], spec: Any, cluster: ClusterConfig) -> Iterator[list[dict[str, Any]]]:
    """One job through the vLLM processor (run inside the cluster: ``ray_jobs.stream``); each
    finished block's output rows as it lands."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    ray.data.DataContext.get_current().enable_progress_bars = False
    block = cluster.block_for(len(rows))
    config = vLLMEngineProcessorConfig(
        model_source=resolve_model(spec.model or DEFAULT_MODEL), engine_kwargs=engine_kwargs(spec, cluster),
        concurrency=cluster.replicas, batch_size=block,
    )
    processor = build_processor(config, postprocess=output_row)
    dataset = processor(ray.data.from_items(rows, override_num_blocks=-(-len(rows) // block)))
    for batch in dataset.iter_batches(batch_size=None, batch_format="pandas"):
        yield batch.to_dict("records")


__all__ = [
    "describe", "engine_kwargs", "fits", "generate_blocks", "generation_rows", "logprob_blocks", "logprob_rows", "output_row", "processor_job",
    "texts_by_prompt",
]
