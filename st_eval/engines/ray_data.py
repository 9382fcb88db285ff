"""Any engine on a Ray cluster: each call runs as a Ray Data job over replicas that hold the engine.

The prompts of a call become a dataset of blocks (``ClusterConfig.block_size`` prompts each);
``replicas`` actors each build the engine the command asked for (``make_engine``: a CPU cluster
runs the embedded judge on the hf engine, a GPU cluster hf or vLLM) and generate block after
block. Finished blocks stream back to the driver as they land (``generate_blocks``), so the
generation cache stores each at once and a killed driver loses only the blocks in flight.
Parsing, voting and order swapping stay in the judge core on the driver: this engine only moves
prompts and texts, and reports the wrapped engine's name, model and identity as its own, so
judgments, cache keys and resumable outputs are those of the same engine in one process.

Ray Data restarts a replica that dies (its engine is built again) and retries the block it held.
Each job starts its replicas afresh, so its weights load once per call: callers hand this engine
whole waves of work (:attr:`RayEngine.call_size`). A vLLM engine on GPUs runs through
``ray.data.llm``'s vLLM processor instead of st-eval's own replicas (``ray_vllm.py``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from st_eval import errors
from st_eval.cluster import ClusterConfig, check_engine, check_model_folder, connect, replica_nodes
from st_eval.embedded import DEFAULT_MODEL, resolve_model
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.engines.ray_jobs import cluster_error, stream
from st_eval.errors import EngineError, StEvalError
from st_eval.progress import sample_done

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """The engine each replica builds: ``make_engine(name, model, **options)``."""

    name: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path | None:
        """The model as a local folder named by path (an embedded judge's name or a hub id: None)."""
        path = Path(self.model).expanduser() if self.model is not None else None
        return path.resolve() if path is not None and path.is_dir() else None

    def for_workers(self) -> EngineSpec:
        """The spec with a local model folder as an absolute path: a worker's current folder is not ours."""
        return replace(self, model=str(self.folder)) if self.folder is not None else self

    def build(self) -> Engine:
        from st_eval.engines import make_engine

        return make_engine(self.name, self.model, **self.options)


def describe(spec: EngineSpec) -> dict[str, Any]:
    """What the driver needs to know of the engine, asked of one built on a worker with a
    replica's resources (an hf engine's dtype, and so its identity, follows the device), so the
    driver never loads the weights."""
    engine = spec.build()
    try:
        return {
            "name": engine.name, "model": engine.model, "identity": engine.identity, "context_window": engine.context_window,
            "dtype": engine.dtype, "reads_any_token": engine.reads_any_token,
        }
    finally:
        engine.close()


class Replica:
    """One replica (a Ray Data actor): the engine, built once, generating each block it is handed.

    An st-eval error (a model the worker cannot load, a prompt the engine refuses) comes back as
    the block's result instead of an exception: it is no fault a retry mends, and Ray Data keeps
    only the text of a task's exception, so the driver re-raises it as it was.
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.engine: Engine | None = None
        self.error: StEvalError | None = None
        try:
            self.engine = spec.build()
        except StEvalError as exc:
            self.error = exc

    def __call__(self, batch: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        count = len(batch["index"])
        try:
            if self.error is not None:
                raise self.error
            assert self.engine is not None
            prompts = [json.loads(text) for text in batch["prompt"]]
            if request["kind"] == "logprobs":
                results: list[Any] = self.engine.next_token_logprobs(prompts, request["top_k"], request.get("include", ()))
            else:
                results = self.engine.generate(prompts, request["n"], SamplingConfig(**request["sampling"]))
        except StEvalError as exc:
            return {"index": batch["index"], "result": [""] * count, "error": [f"{type(exc).__name__}:{exc}"] * count}
        return {"index": batch["index"], "result": [json.dumps(r, ensure_ascii=False) for r in results], "error": [""] * count}


class RayEngine(Engine):
    """The engine ``spec`` describes, run by ``cluster.replicas`` replicas of it on a Ray cluster."""

    def __init__(self, spec: EngineSpec, cluster: ClusterConfig) -> None:
        from st_eval.engines import ray_vllm

        check_engine(spec.name, "cluster")
        self.cluster = cluster
        self._ray = connect(cluster)
        self._spec = spec.for_workers()
        if self._spec.folder is not None:  # replicas load it by path: every replica node must see it
            check_model_folder(self._spec.folder, cluster, "judge folder")
        self._warn_if_short()
        self._vllm = ray_vllm.fits(self._spec, cluster)
        described = ray_vllm.describe(self._spec) if self._vllm else self._describe_on_worker()
        super().__init__(spec.model or described["model"])
        self.name = described["name"]
        self._identity = described["identity"]
        self._context_window = described["context_window"]
        self._dtype = described["dtype"]
        self.reads_any_token = bool(described.get("reads_any_token", False))
        self._tokenizer: Any = None

    def _describe_on_worker(self) -> dict[str, Any]:
        task = self._ray.remote(describe).options(num_cpus=self.cluster.cpus_per_replica, num_gpus=self.cluster.gpus_per_replica)
        try:
            return self._ray.get(task.remote(self._spec))
        except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's error; st-eval's own is re-raised as it is
            raise cluster_error(exc) from exc

    def _warn_if_short(self) -> None:
        """Say so when the cluster has no room for every replica now: the job then waits for
        nodes (an autoscaler adds them) instead of failing."""
        nodes = replica_nodes(self.cluster)
        room = sum(
            int(min(
                node["Resources"].get("CPU", 0) // self.cluster.cpus_per_replica if self.cluster.cpus_per_replica else 1 << 30,
                node["Resources"].get("GPU", 0) // self.cluster.gpus_per_replica if self.cluster.gpus_per_replica else 1 << 30,
            ))
            for node in nodes
        )
        if room < self.cluster.replicas:
            log.warning(
                "the cluster has room for %d of the %d replicas (%s CPUs and %s GPUs each) now; the jobs wait for more nodes",
                room, self.cluster.replicas, self.cluster.cpus_per_replica, self.cluster.gpus_per_replica,
            )

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_window(self) -> int | None:
        return self._context_window

    @property
    def dtype(self) -> str | None:
        return self._dtype

    @property
    def call_size(self) -> int:  # type: ignore[override]
        return self.cluster.prompts_per_job

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, on the driver: the judge counts prompt tokens before sending them."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(self._spec.model or DEFAULT_MODEL))
        return self._tokenizer

    def prompt_tokens(self, prompts: Sequence[ChatPrompt]) -> list[int]:
        """Token counts as the replicas' engine counts them (the hf and vllm engines render chats alike)."""
        from st_eval.engines.hf import render_chat

        tokenizer = self.tokenizer
        return [len(tokenizer(render_chat(tokenizer, p), add_special_tokens=False).input_ids) for p in prompts]

    def generate(self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None) -> list[list[str]]:
        outputs: list[list[str]] = [[] for _ in prompts]
        for indices, texts in self.generate_blocks(prompts, n, sampling):
            for index, samples in zip(indices, texts):
                outputs[index] = samples
        return outputs

    def generate_blocks(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> Iterator[tuple[list[int], list[list[str]]]]:
        sampling = sampling or SamplingConfig()
        if not prompts:
            return
        if self._vllm:
            from st_eval.engines import ray_vllm

            blocks = ray_vllm.generate_blocks(self._ray, self._spec, self.cluster, prompts, n, sampling)
        else:
            blocks = ((i, [json.loads(r) for r in results]) for i, results in self._job(prompts, {"kind": "generate", "n": n, "sampling": sampling.to_dict()}))
        for indices, texts in blocks:
            sample_done(len(indices) * n)
            yield indices, texts

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        tops: list[dict[str, float]] = [{} for _ in prompts]
        for indices, found in self.logprob_blocks(prompts, top_k, include):
            for index, top in zip(indices, found):
                tops[index] = top
        return tops

    def logprob_blocks(
        self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()
    ) -> Iterator[tuple[list[int], list[dict[str, float]]]]:
        if not prompts:
            return
        if self._vllm:
            from st_eval.engines import ray_vllm

            blocks = ray_vllm.logprob_blocks(self._ray, self._spec, self.cluster, prompts, top_k)
        else:
            request = {"kind": "logprobs", "top_k": top_k, "include": list(include)}
            blocks = ((i, [json.loads(r) for r in results]) for i, results in self._job(prompts, request))
        for indices, tops in blocks:
            sample_done(len(indices))
            yield indices, tops

    def _job(self, prompts: Sequence[ChatPrompt], request: dict[str, Any]) -> Iterator[tuple[list[int], list[str]]]:
        rows = [{"index": i, "prompt": json.dumps(p, ensure_ascii=False)} for i, p in enumerate(prompts)]
        return stream(self._ray, functools.partial(replica_job, rows, self._spec, request, self.cluster))


def replica_job(rows: list[dict[str, Any]], spec: EngineSpec, request: dict[str, Any], cluster: ClusterConfig) -> Iterator[tuple[list[int], list[str]]]:
    """One Ray Data job (run inside the cluster: ``ray_jobs.stream``): the prompts as blocks,
    ``replicas`` actors holding the engine (no more than there are blocks), each finished block
    (indices, JSON results) as it lands; a replica's st-eval error raised as it was."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    blocks = -(-len(rows) // cluster.block_for(len(rows)))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        Replica,
        fn_constructor_kwargs={"spec": spec},
        fn_kwargs={"request": request},
        batch_size=None,  # one block, one call: the block is the unit of retry and of cache writes
        compute=ray.data.ActorPoolStrategy(size=min(cluster.replicas, blocks)),
        num_cpus=cluster.cpus_per_replica,
        num_gpus=cluster.gpus_per_replica or None,
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        failed = next((str(e) for e in batch["error"] if e), None)
        if failed:
            name, _, message = failed.partition(":")
            raise getattr(errors, name, EngineError)(message)
        yield [int(i) for i in batch["index"]], [str(r) for r in batch["result"]]


__all__ = ["EngineSpec", "RayEngine", "Replica", "describe", "replica_job"]
