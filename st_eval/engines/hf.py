"""transformers engine: continuous batching on CPU, one prefill per prompt, early stop at the verdict.

Two decoding paths, same results (greedy outputs equal those of plain ``generate``):

* **continuous batching** (default on CPU, ``hf_batching``): every prompt is prefilled on its
  own after the prefix all prompts share (the template's system prompt) is computed once; its
  keys/values go into a free slot of a preallocated cache; a decode step appends in place and
  each row attends only to its own tokens; a finished row (EOS, a stop string, the verdict
  written, the token budget) frees its slot for the next waiting prompt at once. ``n`` samples
  of a prompt share one prefill.
* **static cache** (default on CUDA): ``generate`` with a static KV cache, which transformers
  compiles into CUDA-graph decoding; plain eager decoding of a small model is launch-overhead
  bound on GPU. Early stop at the verdict is a per-row stopping criterion there.

The model stays loaded across calls and engines (``load_model_and_tokenizer`` keeps it).
"""

from __future__ import annotations

import copy
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

from st_eval.embedded import DEFAULT_MODEL, resolve_model
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig, add_token_logprob, continues, cut_at_stop
from st_eval.errors import EngineError, ModelNotFoundError
from st_eval.native_dtype import default_device, folder_dtype, resolve_dtype
from st_eval.progress import sample_done
from st_eval.verdict import asks_for_verdict, verdict_written

_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()
#: tokens decoded from the end of a sample to look for a stop string.
_STOP_TAIL_TOKENS = 24
#: tokens per forward pass when rating on a GPU (padded batches)
TOKEN_BUDGET = 8192
#: tokens per packed row when rating on CPU: the MLP's activations of a row stay small enough for
#: the caches, measured on a 2-core AVX512-BF16 CPU with 2 threads: float32 rates 96 PandaLM pairs
#: 23-28% faster than with 8,192-token rows, bfloat16 4-6% faster (docs/scale.md)
CPU_TOKEN_BUDGET = 2048
#: seconds a measured thread choice stands before the engine looks at the machine again; the
#: measurement sleeps 0.1 s, too long to pay on every call of a server's small batches.
_THREAD_CHOICE_TTL = 10.0


def load_model_and_tokenizer(model: str, device: str | None = None, dtype: str = "auto"):
    """Load (and keep) a causal LM and its tokenizer; repeated calls reuse the same weights.

    ``dtype="auto"`` is the fastest dtype the device computes natively (``native_dtype``):
    bfloat16 on CUDA and on a CPU with AVX512-BF16 or AMX, float32 on other CPUs and for a
    folder with a merged LoRA on any CPU.

    On CUDA the weights load straight onto the GPU (``cuda``: spread over every visible GPU by
    accelerate's device map, so a judge larger than one GPU loads; ``cuda:N``: that GPU), never
    as a full copy in CPU memory first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model)
    device = device or default_device()
    dtype = resolve_dtype(dtype, device, pinned=folder_dtype(path))
    key = (path, device, dtype)
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                weights = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **_placement(device))
            except OSError as exc:
                raise ModelNotFoundError(f"cannot load model {model!r}: {exc}") from exc
            if not device.startswith("cuda"):
                weights.to(device)
            weights.eval()
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            _LOADED[key] = (weights, tokenizer)
        return _LOADED[key]


def _placement(device: str) -> dict[str, Any]:
    """``from_pretrained`` arguments that load onto ``device``: a device map on CUDA."""
    if device == "cuda":
        return {"device_map": "auto"}
    if device.startswith("cuda"):
        return {"device_map": {"": device}}
    return {}


def _idle_cores(window: float = 0.1) -> int:
    """Cores that processes other than this one leave idle, measured over ``window`` seconds."""
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    own = psutil.Process()
    own.cpu_percent(None)
    psutil.cpu_percent(None)
    time.sleep(window)
    own_cores = own.cpu_percent(None) / 100
    busy_cores = psutil.cpu_percent(None) / 100 * (os.cpu_count() or cores)
    return cores - round(max(0.0, busy_cores - own_cores))


class HFEngine(Engine):
    """Generation with transformers, many prompts decoded together.

    dtype: ``auto`` (default: bfloat16 on CUDA and on a CPU with AVX512-BF16 or AMX, float32 on
        other CPUs, where bfloat16 is emulated and ~50x slower), ``float32``, ``bfloat16``, ``float16``.
    batch_size: prompts decoded together (each expands to ``n`` rows when sampling); default
        32 with continuous batching (CPU), 8 with the static cache (GPU). On CPU, measured on the
        embedded judge: 32 gave 4.5x the naive loop, 16 gave 3.5x, 8 gave 2.7x (docs/scale.md),
        at ~3.2 / 2.2 / 1.7 GiB peak memory.
    stop_at_verdict: end a sample as soon as its verdict line is complete, for prompts that ask
        for a ``[[X]]`` verdict (the templates ask for it on the last line, so the parse is the
        same and the tokens after it are saved).
    static_cache: decode with ``generate`` and a compiled static cache (default: on CUDA only).
        Without it (CPU): continuous batching over a slot cache (``hf_batching``), where
        ``batch_size`` prompts are decoded together and a finished one's slot is refilled at once.
    threads: torch CPU threads while generating (default: see :meth:`cpu_threads`).
    token_budget: tokens per forward pass when rating (``next_token_logprobs``; padded tokens
        where st-eval's CPU attention does not apply). Default: :data:`CPU_TOKEN_BUDGET` packed on
        CPU, :data:`TOKEN_BUDGET` elsewhere.
    first_prompts: with continuous batching, the shortest prompts decoded alone until a first
        sample ends, so a first judgment comes out in seconds (0: fill every slot at once).
    max_rows: with the static cache, at most this many rows (prompts x samples per prompt) are
        decoded together (default ``batch_size``; at least one prompt's samples): the cache
        reserves keys and values for every row up to the longest prompt plus the token budget,
        and 8 prompts x 15 samples x 4k tokens would reserve ~60 GiB for an 8B judge.
    max_context: a context window smaller than the model's (prompt and generation together).
        On CPU a prompt of the embedded judge's full 8,192 tokens takes minutes to read; a
        smaller window makes long pairs shortened (or skipped) instead.

    Greedy decoding computes one sample per prompt and repeats it ``n`` times.
    """

    name = "hf"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | None = None,
        progress: bool = False,
        stop_at_verdict: bool = True,
        static_cache: bool | None = None,
        threads: int | None = None,
        token_budget: int | None = None,
        max_context: int | None = None,
        first_prompts: int = 4,
        max_rows: int | None = None,
        rating_dtype: str | None = None,
    ) -> None:
        super().__init__(model or DEFAULT_MODEL)
        if batch_size is not None and batch_size < 1:
            raise EngineError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise EngineError(f"threads must be >= 1, got {threads}")
        if token_budget is not None and token_budget < 1:
            raise EngineError(f"token_budget must be >= 1, got {token_budget}")
        if max_context is not None and max_context < 1:
            raise EngineError(f"max_context must be >= 1, got {max_context}")
        if first_prompts < 0:
            raise EngineError(f"first_prompts must be >= 0, got {first_prompts}")
        if max_rows is not None and max_rows < 1:
            raise EngineError(f"max_rows must be >= 1, got {max_rows}")
        self.max_context = max_context
        self.first_prompts = first_prompts
        self.threads = threads
        self.token_budget = token_budget
        self.progress = progress
        self.stop_at_verdict = stop_at_verdict
        self._model, self._tokenizer = load_model_and_tokenizer(self.model, device, dtype)
        self._choice_tokens: dict[frozenset[str], dict[int, str]] = {}
        self.rating_autocast = _rating_autocast(rating_dtype, self.weights_dtype)
        self.static_cache = self._model.device.type == "cuda" if static_cache is None else static_cache
        self.batch_size = batch_size or (8 if self.static_cache else 32)
        self.max_rows = max_rows or self.batch_size
        if not self.static_cache:
            from st_eval.engines.hf_batching import use_cpu_attention

            use_cpu_attention(self._model)
        self._identity: str | None = None
        config = self._model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self._tokenizer.eos_token_id
        self._eos_ids = sorted({eos} if isinstance(eos, int) else set(eos or []))
        self._closing_ids: Any = None
        self._closing_set: frozenset[int] | None = None
        self._idle_measured: tuple[float, int] | None = None  # (monotonic time, idle cores)
        self._counter: Any = None
        self._counter_lock = threading.Lock()

    @property
    def identity(self) -> str:
        """``hf:<model>@<revision>:<dtype>[:verdict-stop][:head-float32]``: what shapes this engine's outputs."""
        if self._identity is None:
            from st_eval.cache import model_revision
            from st_eval.engines.hf_rating import has_linear_head

            revision = model_revision(self._model.name_or_path)
            suffix = ":verdict-stop" if self.stop_at_verdict else ""
            if self._packed_rating and (self.rating_autocast or self.weights_dtype != "float32") and has_linear_head(self._model):
                suffix += ":head-float32"  # its ratings differ from those of earlier versions (hf_rating.float32_head)
            self._identity = f"{self.name}:{self.model}@{revision}:{self.dtype}{suffix}"
        return self._identity

    @property
    def _packed_rating(self) -> bool:
        """Whether ratings take the packed CPU path (``hf_rating``), under st-eval's CPU attention."""
        from st_eval.engines.hf_batching import CPU_ATTENTION

        return self._model.config._attn_implementation == CPU_ATTENTION

    @property
    def weights_dtype(self) -> str:
        """The dtype the weights compute in (``float32``, ``bfloat16``, ...)."""
        return str(self._model.dtype).removeprefix("torch.")

    @property
    def dtype(self) -> str:
        """:attr:`weights_dtype`, and the rating's where ``rating_dtype`` differs
        (``float32 (rating: bfloat16)``)."""
        return f"{self.weights_dtype} (rating: bfloat16)" if self.rating_autocast else self.weights_dtype

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def context_window(self) -> int | None:
        """The model's trained length (``max_position_embeddings``), or ``max_context`` when smaller."""
        value = getattr(self._model.config, "max_position_embeddings", None)
        trained = int(value) if isinstance(value, int) and value > 0 else None
        if self.max_context is None:
            return trained
        return min(trained, self.max_context) if trained else self.max_context

    def prompt_tokens(self, prompts: Sequence[ChatPrompt]) -> list[int]:
        """Token counts, from a copy of the tokenizer behind a lock: a server counts prompts in
        other threads while this engine generates, and a fast tokenizer must not be used from
        two threads at once."""
        with self._counter_lock:
            if self._counter is None:
                self._counter = copy.deepcopy(self._tokenizer)
            return [len(self._counter(render_chat(self._counter, p), add_special_tokens=False).input_ids) for p in prompts]

    def close(self) -> None:
        """Forget this engine's weights in the shared cache, so dropping the engine frees them
        (training calls this before it needs the memory)."""
        with _LOAD_LOCK:
            for key, (weights, _) in list(_LOADED.items()):
                if weights is self._model:
                    del _LOADED[key]

    def render(self, prompt: ChatPrompt) -> str:
        """The exact text the model sees for a chat prompt (a final assistant message is continued)."""
        return render_chat(self._tokenizer, prompt)

    def generate(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> list[list[str]]:
        import torch

        sampling = sampling or SamplingConfig()
        token_ids = [
            self._tokenizer(self.render(p), add_special_tokens=False).input_ids for p in prompts
        ]
        self.check_fits([len(ids) for ids in token_ids], sampling.max_new_tokens)
        verdict_rows = [self.stop_at_verdict and asks_for_verdict(p) for p in prompts]
        per_prompt = 1 if sampling.greedy else n
        generator = torch.Generator(device=self._model.device).manual_seed(sampling.seed)
        torch.manual_seed(sampling.seed)
        with self._thread_limit():
            if self.static_cache:
                decoded = self._generate_batches(token_ids, verdict_rows, per_prompt, sampling, generator)
            else:
                decoded = self._generate_continuous(token_ids, verdict_rows, per_prompt, sampling, generator)
        return [samples * n if sampling.greedy else samples for samples in decoded]

    def _generate_batches(
        self, token_ids: list[list[int]], verdict_rows: list[bool], per_prompt: int, sampling: SamplingConfig, generator
    ) -> list[list[str]]:
        """Length-sorted batches through ``_generate_static`` (the CUDA path)."""
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]), reverse=True)
        outputs: list[list[str]] = [[] for _ in token_ids]
        size = static_batch_prompts(self.batch_size, self.max_rows, per_prompt)
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not self.progress):
            decoded = self._generate_static(
                [token_ids[i] for i in batch], [verdict_rows[i] for i in batch], per_prompt, sampling, generator
            )
            for j, index in enumerate(batch):
                outputs[index] = decoded[j * per_prompt : (j + 1) * per_prompt]
            sample_done(len(batch) * per_prompt)
        return outputs

    #: the whole next-token distribution is here: ``include``'s tokens come with their own probabilities
    reads_any_token = True

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        """Top-``top_k`` first answer tokens per prompt, from one forward pass each (no decoding),
        and every token whose text is one of ``include`` (ignoring surrounding whitespace and case)
        wherever it ranks: a trained rating judge sure of "Yes" can push "No" out of the top 20,
        and its rating would then read 1.0 for every answer it likes (ties).

        On CPU (st-eval's CPU attention) the prompts are laid out end to end in rows of up to
        ``token_budget`` tokens, each shared start computed once, the output head in float32 whatever
        the dtype (``hf_rating``). Elsewhere they are sorted by length
        and batched up to ``token_budget`` padded tokens, so padding stays small. Either way only
        the last position's logits are computed."""
        import torch

        token_ids = [self._tokenizer(self.render(p), add_special_tokens=False).input_ids for p in prompts]
        self.check_fits([len(ids) for ids in token_ids], 1)
        results: list[dict[str, float]] = [{} for _ in prompts]
        read = functools.partial(self._read_tokens, top_k=top_k, extra=self._tokens_of(include))
        autocast = torch.autocast(self._model.device.type, dtype=torch.bfloat16, enabled=self.rating_autocast)
        with self._thread_limit(), torch.inference_mode(), autocast, tqdm(
            total=len(prompts), desc="rate", unit="prompt", disable=not self.progress
        ) as bar:
            if self._packed_rating:
                self._packed_logprobs(token_ids, read, results, bar)
                return results
            order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
            batches = _token_batches([len(token_ids[i]) for i in order], self.token_budget or TOKEN_BUDGET, self.batch_size)
            start = 0
            for size in batches:
                batch = order[start : start + size]
                start += size
                ids, mask = self._left_pad([token_ids[i] for i in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
                for index, top in zip(batch, read(logits[:, -1].float().log_softmax(-1))):
                    results[index] = top
                bar.update(len(batch))
                sample_done(len(batch))
        return results

    def _packed_logprobs(self, token_ids: list[list[int]], read: Callable[[Any], list[dict[str, float]]], results: list[dict[str, float]], bar: Any) -> None:
        """Fill ``results`` from packed rows (``hf_rating``)."""
        from st_eval.engines.hf_rating import packed_last_logits

        def on_row(logits, row) -> None:
            for index, top in zip(row.prompts, read(logits.log_softmax(-1))):
                results[index] = top
            bar.update(len(row.prompts))
            sample_done(len(row.prompts))

        packed_last_logits(self._model, token_ids, self.token_budget or CPU_TOKEN_BUDGET, on_row)

    def _read_tokens(self, logprobs: Any, top_k: int, extra: dict[int, str]) -> list[dict[str, float]]:
        """Per row of ``logprobs`` (prompts x vocabulary): token text -> log-probability for the
        top ``top_k`` tokens and the ``extra`` tokens (id -> text) outside them."""
        values, indices = logprobs.topk(top_k)
        extra_ids = list(extra)
        extra_values = logprobs[:, extra_ids].tolist() if extra_ids else [[] for _ in range(len(logprobs))]
        tops = []
        for row_ids, row_values, row_extra in zip(indices.tolist(), values.tolist(), extra_values):
            top: dict[str, float] = {}
            for token, logprob in zip(row_ids, row_values):
                add_token_logprob(top, self._tokenizer.decode([token]), logprob)
            shown = set(row_ids)
            for token, logprob in zip(extra_ids, row_extra):
                if token not in shown:
                    add_token_logprob(top, extra[token], logprob)
            tops.append(top)
        return tops

    def _tokens_of(self, texts: Sequence[str]) -> dict[int, str]:
        """Every vocabulary token (id -> text) matching one of ``texts`` as a rating matches them
        (:func:`st_eval.rating.choice_key`: ``Yes``, `` yes``, ``YES``), found once per set of texts."""
        from st_eval.rating import choice_key

        wanted = frozenset(choice_key(text) for text in texts)
        if not wanted:
            return {}
        if wanted not in self._choice_tokens:
            decoded = self._tokenizer.batch_decode([[i] for i in range(len(self._tokenizer))])
            self._choice_tokens[wanted] = {i: text for i, text in enumerate(decoded) if choice_key(text) in wanted}
        return self._choice_tokens[wanted]

    # -- shared helpers -------------------------------------------------------------------

    def cpu_threads(self) -> int:
        """Torch threads for a CPU ``generate``: ``threads`` if given; torch's setting if the
        user chose one through ``OMP_NUM_THREADS``; otherwise torch's setting lowered to the
        cores other processes leave idle (measured over 0.1 s at most every 10 s, at least 1).

        Why: torch's OpenMP threads wait for each other at every operation, so a thread on a
        core that another process keeps busy stalls all of them. Measured on a 2-core machine
        with the other core busy, 2 threads were 10-35x slower than 1 thread; with it idle,
        2 threads were 1.7x faster (docs/scale.md). The load average is no guide: it lags by
        minutes and counts this process's own threads."""
        import torch

        if self.threads is not None:
            return self.threads
        current = torch.get_num_threads()
        if os.environ.get("OMP_NUM_THREADS"):
            return current
        now = time.monotonic()
        if self._idle_measured is None or now - self._idle_measured[0] > _THREAD_CHOICE_TTL:
            self._idle_measured = (now, _idle_cores())
        return max(1, min(current, self._idle_measured[1]))

    @contextmanager
    def _thread_limit(self):
        """Run with :meth:`cpu_threads` torch threads, restoring the process's setting afterwards."""
        import torch

        if self._model.device.type != "cpu":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.cpu_threads())
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _left_pad(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        pad = self._tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self._model.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self._model.device)
        return ids, mask

    def _finish(self, tokens: list[int], sampling: SamplingConfig) -> str:
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        return cut_at_stop(text, sampling.stop)

    def _closing_token_set(self) -> frozenset[int]:
        """The ids of :meth:`_closing_token_ids` as a set, for per-token checks in Python."""
        if self._closing_set is None:
            self._closing_set = frozenset(self._closing_token_ids().nonzero().flatten().tolist())
        return self._closing_set

    def _closing_token_ids(self):
        """Bool mask over the vocabulary: tokens whose text contains ``]``, which can close a
        verdict marker. Only rows that just produced one are decoded and checked."""
        import torch

        if self._closing_ids is None:
            vocab = len(self._tokenizer)
            texts = self._tokenizer.convert_ids_to_tokens(list(range(vocab)))
            flags = [t is not None and "]" in self._tokenizer.convert_tokens_to_string([t]) for t in texts]
            self._closing_ids = torch.tensor(flags, device=self._model.device)
        return self._closing_ids

    # -- CPU path: continuous batching over a slot cache (hf_batching) --------------------

    def _generate_continuous(
        self, token_ids: list[list[int]], verdict_rows: list[bool], per_prompt: int, sampling: SamplingConfig, generator
    ) -> list[list[str]]:
        from st_eval.engines.hf_batching import ContinuousBatcher

        closing = self._closing_token_set() if any(verdict_rows) else frozenset()
        decode = self._tokenizer.decode

        def finished(prompt: int, tokens: list[int], token: int) -> bool:
            if verdict_rows[prompt] and token in closing and verdict_written(decode(tokens, skip_special_tokens=True)):
                return True
            if sampling.stop:
                tail = decode(tokens[-_STOP_TAIL_TOKENS:], skip_special_tokens=True)
                return any(s and s in tail for s in sampling.stop)
            return False

        batcher = ContinuousBatcher(
            self._model,
            slots=self.batch_size * per_prompt,
            pick=lambda logits: self._pick(logits, sampling, generator),
            finished=finished,
            eos_ids=self._eos_ids,
            first_prompts=self.first_prompts,
        )
        with tqdm(total=len(token_ids) * per_prompt, desc="generate", unit="sample", disable=not self.progress) as bar:
            samples = batcher.run(token_ids, per_prompt, sampling.max_new_tokens, on_done=lambda: (bar.update(1), sample_done(1)))
        return [[self._finish(tokens, sampling) for tokens in prompt] for prompt in samples]

    @staticmethod
    def _pick(logits, sampling: SamplingConfig, generator):
        """Next token per row: argmax, or a temperature / top-p sample as ``generate`` draws it."""
        import torch

        if sampling.greedy:
            return logits.argmax(dim=-1)
        scores = logits.float() / sampling.temperature
        if sampling.top_p < 1.0:
            sorted_scores, sorted_index = torch.sort(scores, descending=False)
            cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - sampling.top_p)
            remove[..., -1:] = False  # always keep the most likely token
            scores = scores.masked_fill(remove.scatter(1, sorted_index, remove), float("-inf"))
        probs = scores.softmax(dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)

    # -- GPU path: generate() with a static cache (compiled decoding) ---------------------

    def _generate_static(
        self, rows: list[list[int]], verdict_rows: list[bool], per_prompt: int, sampling: SamplingConfig, generator
    ) -> list[str]:
        import torch

        ids, mask = self._left_pad(rows)
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self._tokenizer.pad_token_id,
            "num_return_sequences": per_prompt,
            "cache_implementation": "static",
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self._tokenizer)
        if any(verdict_rows):
            flags = [verdict_rows[r // per_prompt] for r in range(len(rows) * per_prompt)]
            kwargs["stopping_criteria"] = [_VerdictStop(self, ids.shape[1], flags)]
        with torch.inference_mode():
            generated = self._model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new_tokens = generated[:, ids.shape[1] :].tolist()
        pad = self._tokenizer.pad_token_id
        return [self._finish([t for t in row if t != pad], sampling) for row in new_tokens]


def static_batch_prompts(batch_size: int, max_rows: int, per_prompt: int) -> int:
    """Prompts per static-cache batch: at most ``batch_size``, and at most ``max_rows`` rows of
    ``per_prompt`` samples each, but always one prompt's samples at least."""
    return max(1, min(batch_size, max_rows // per_prompt))


def _rating_autocast(rating_dtype: str | None, weights: str) -> bool:
    """Whether ratings compute under bfloat16 autocast: asked for with float32 weights. Decoding
    stays in float32 then, one weight copy serving both: on a CPU with AVX512-BF16 and no AMX the
    embedded judge rates 1.9x faster in bfloat16 and decodes faster in float32 (docs/scale.md)."""
    if rating_dtype in (None, weights):
        return False
    if rating_dtype != "bfloat16" or weights != "float32":
        raise EngineError(f"rating_dtype={rating_dtype} needs float32 weights and is bfloat16 or the weights' dtype (weights: {weights})")
    return True


def render_chat(tokenizer: Any, prompt: ChatPrompt) -> str:
    """The text a chat model sees for ``prompt``: a final assistant message is continued (the
    verdict step), otherwise the assistant's turn is opened. Benchmarks count tokens with it too."""
    if continues(prompt):
        return tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def _token_batches(lengths: list[int], budget: int, max_rows: int) -> list[int]:
    """Sizes of consecutive batches over length-sorted prompts: each batch's rows times its
    longest prompt stay within ``budget`` (a longer prompt goes alone), at most ``max_rows`` rows."""
    sizes: list[int] = []
    count = longest = 0
    for length in lengths:
        wider = max(longest, length)
        if count and (wider * (count + 1) > budget or count >= max_rows):
            sizes.append(count)
            count, wider = 0, length
        count += 1
        longest = wider
    if count:
        sizes.append(count)
    return sizes


class _VerdictStop:
    """A per-row ``StoppingCriteria`` for ``generate``: true once a row's verdict is written."""

    def __init__(self, engine: HFEngine, prompt_width: int, rows: list[bool]) -> None:
        self.engine = engine
        self.prompt_width = prompt_width
        self.rows = rows

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        closing = self.engine._closing_token_ids()[input_ids[:, -1]].tolist()
        tokenizer = self.engine.tokenizer
        done = [
            bool(check and close and verdict_written(tokenizer.decode(row[self.prompt_width :], skip_special_tokens=True)))
            for row, check, close in zip(input_ids, self.rows, closing)
        ]
        return torch.tensor(done, device=input_ids.device)
