"""transformers engine: length-sorted batches, one prefill per prompt, early stop at the verdict.

Two decoding paths, same results (greedy outputs equal those of plain ``generate``):

* **shrinking loop** (default on CPU): our own decode loop over a ``DynamicCache``. Finished
  rows (EOS, a stop string, the verdict written, the token budget) are dropped from the batch
  and the cache at once, so a batch costs the sum of its rows' lengths, not rows x longest.
  ``n`` samples of a prompt share one prefill: the prompt's KV cache is computed once and
  repeated ``n`` times.
* **static cache** (default on CUDA): ``generate`` with a static KV cache, which transformers
  compiles into CUDA-graph decoding; plain eager decoding of a small model is launch-overhead
  bound on GPU. Early stop at the verdict is a per-row stopping criterion there.

The model stays loaded across calls and engines (``load_model_and_tokenizer`` keeps it).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from st_eval.embedded import DEFAULT_MODEL, resolve_model
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig, continues, cut_at_stop
from st_eval.errors import EngineError, ModelNotFoundError
from st_eval.verdict import asks_for_verdict, verdict_written

_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()
#: tokens decoded from the end of a sample to look for a stop string.
_STOP_TAIL_TOKENS = 24


def load_model_and_tokenizer(model: str, device: str | None = None, dtype: str = "auto"):
    """Load (and keep) a causal LM and its tokenizer; repeated calls reuse the same weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    key = (path, device, dtype)
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                weights = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
            except OSError as exc:
                raise ModelNotFoundError(f"cannot load model {model!r}: {exc}") from exc
            weights.to(device).eval()
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            _LOADED[key] = (weights, tokenizer)
        return _LOADED[key]


class HFEngine(Engine):
    """Generation with transformers, prompts sorted by length and batched with left padding.

    batch_size: prompts per batch (each expands to ``n`` rows when sampling).
    stop_at_verdict: end a sample as soon as its verdict line is complete, for prompts that ask
        for a ``[[X]]`` verdict (the templates ask for it on the last line, so the parse is the
        same and the tokens after it are saved).
    static_cache: decode with ``generate`` and a compiled static cache (default: on CUDA only).

    Greedy decoding computes one sample per prompt and repeats it ``n`` times.
    """

    name = "hf"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        progress: bool = False,
        stop_at_verdict: bool = True,
        static_cache: bool | None = None,
    ) -> None:
        super().__init__(model or DEFAULT_MODEL)
        if batch_size < 1:
            raise EngineError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.progress = progress
        self.stop_at_verdict = stop_at_verdict
        self._model, self._tokenizer = load_model_and_tokenizer(self.model, device, dtype)
        self.static_cache = self._model.device.type == "cuda" if static_cache is None else static_cache
        self._identity: str | None = None
        config = self._model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self._tokenizer.eos_token_id
        self._eos_ids = sorted({eos} if isinstance(eos, int) else set(eos or []))
        self._closing_ids: Any = None

    @property
    def identity(self) -> str:
        """``hf:<model>@<revision>:<dtype>[:verdict-stop]``: what shapes this engine's outputs."""
        if self._identity is None:
            from st_eval.cache import model_revision

            revision = model_revision(self._model.name_or_path)
            dtype = str(self._model.dtype).removeprefix("torch.")
            suffix = ":verdict-stop" if self.stop_at_verdict else ""
            self._identity = f"{self.name}:{self.model}@{revision}:{dtype}{suffix}"
        return self._identity

    @property
    def tokenizer(self):
        return self._tokenizer

    def close(self) -> None:
        """Forget this engine's weights in the shared cache, so dropping the engine frees them
        (training calls this before it needs the memory)."""
        with _LOAD_LOCK:
            for key, (weights, _) in list(_LOADED.items()):
                if weights is self._model:
                    del _LOADED[key]

    def render(self, prompt: ChatPrompt) -> str:
        """The exact text the model sees for a chat prompt (a final assistant message is continued)."""
        if continues(prompt):
            return self._tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True)
        return self._tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def generate(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> list[list[str]]:
        import torch

        sampling = sampling or SamplingConfig()
        token_ids = [
            self._tokenizer(self.render(p), add_special_tokens=False).input_ids for p in prompts
        ]
        verdict_rows = [self.stop_at_verdict and asks_for_verdict(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(token_ids[i]), reverse=True)
        per_prompt = 1 if sampling.greedy else n
        outputs: list[list[str]] = [[] for _ in prompts]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        generator = torch.Generator(device=self._model.device).manual_seed(sampling.seed)
        torch.manual_seed(sampling.seed)
        decode = self._generate_static if self.static_cache else self._generate_shrinking
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not self.progress):
            decoded = decode(
                [token_ids[i] for i in batch], [verdict_rows[i] for i in batch], per_prompt, sampling, generator
            )
            for j, index in enumerate(batch):
                samples = decoded[j * per_prompt : (j + 1) * per_prompt]
                outputs[index] = samples * n if sampling.greedy else samples
        return outputs

    # -- shared helpers -------------------------------------------------------------------

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

    # -- CPU path: our own loop, finished rows leave the batch ----------------------------

    def _generate_shrinking(
        self, rows: list[list[int]], verdict_rows: list[bool], per_prompt: int, sampling: SamplingConfig, generator
    ) -> list[str]:
        import torch
        from transformers import DynamicCache

        model = self._model
        ids, mask = self._left_pad(rows)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1
            ).logits[:, -1, :]
            if per_prompt > 1:  # n samples share one prefill
                cache.batch_repeat_interleave(per_prompt)
                mask = mask.repeat_interleave(per_prompt, dim=0)
                logits = logits.repeat_interleave(per_prompt, dim=0)
            total = len(rows) * per_prompt
            check_verdict = [verdict_rows[r // per_prompt] for r in range(total)]
            generated: list[list[int]] = [[] for _ in range(total)]
            active = list(range(total))  # batch row -> output index
            eos = torch.tensor(self._eos_ids or [-1], device=model.device)
            closing = self._closing_token_ids() if any(check_verdict) else None
            for step in range(sampling.max_new_tokens):
                next_tokens = self._pick(logits, sampling, generator)
                done = torch.isin(next_tokens, eos)
                candidates = closing[next_tokens] & ~done if closing is not None else None
                tokens = next_tokens.tolist()
                finished = done.tolist()
                flags = candidates.tolist() if candidates is not None else None
                for row, out in enumerate(active):
                    if finished[row]:
                        continue
                    generated[out].append(tokens[row])
                    if step + 1 == sampling.max_new_tokens:
                        finished[row] = True
                    elif flags is not None and flags[row] and check_verdict[out]:
                        finished[row] = verdict_written(self._tokenizer.decode(generated[out], skip_special_tokens=True))
                    if sampling.stop and not finished[row]:
                        tail = self._tokenizer.decode(generated[out][-_STOP_TAIL_TOKENS:], skip_special_tokens=True)
                        finished[row] = any(s and s in tail for s in sampling.stop)
                keep = [row for row, end in enumerate(finished) if not end]
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=model.device)
                    cache.batch_select_indices(index)
                    mask = mask[index]
                    next_tokens = next_tokens[index]
                    active = [active[row] for row in keep]
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                logits = model(
                    input_ids=next_tokens[:, None],
                    attention_mask=mask,
                    position_ids=mask.sum(-1, keepdim=True) - 1,
                    past_key_values=cache,
                    use_cache=True,
                ).logits[:, -1, :]
        return [self._finish(tokens, sampling) for tokens in generated]

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
