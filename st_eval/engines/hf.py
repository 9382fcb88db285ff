"""transformers engine: batched ``generate`` with left padding, on CPU or CUDA (bf16 on GPU)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from st_eval.embedded import resolve_model
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig, cut_at_stop
from st_eval.errors import EngineError, ModelNotFoundError

_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


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

    Greedy decoding computes one sample per prompt and repeats it ``n`` times; sampling draws
    ``n`` sequences from one prompt with ``num_return_sequences``.
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
    ) -> None:
        super().__init__(model or "smollm2-135m")
        if batch_size < 1:
            raise EngineError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.progress = progress
        self._model, self._tokenizer = load_model_and_tokenizer(self.model, device, dtype)
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """``hf:<model>@<revision>:<dtype>``: the weights' fingerprint and the compute dtype."""
        if self._identity is None:
            from st_eval.cache import model_revision

            revision = model_revision(self._model.name_or_path)
            dtype = str(self._model.dtype).removeprefix("torch.")
            self._identity = f"{self.name}:{self.model}@{revision}:{dtype}"
        return self._identity

    @property
    def tokenizer(self):
        return self._tokenizer

    def render(self, prompt: ChatPrompt) -> str:
        """The exact text the model sees for a chat prompt."""
        return self._tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def generate(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> list[list[str]]:
        import torch

        sampling = sampling or SamplingConfig()
        texts = [self.render(p) for p in prompts]
        lengths = [len(self._tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        per_prompt = 1 if sampling.greedy else n
        outputs: list[list[str]] = [[] for _ in texts]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        torch.manual_seed(sampling.seed)
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not self.progress):
            decoded = self._generate_batch([texts[i] for i in batch], per_prompt, sampling)
            for j, index in enumerate(batch):
                samples = decoded[j * per_prompt : (j + 1) * per_prompt]
                outputs[index] = samples * n if sampling.greedy else samples
        return outputs

    def _generate_batch(self, texts: list[str], per_prompt: int, sampling: SamplingConfig) -> list[str]:
        import torch

        encoded = self._tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self._model.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self._tokenizer.pad_token_id,
            "num_return_sequences": per_prompt,
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self._tokenizer)
        with torch.inference_mode():
            generated = self._model.generate(**encoded, **kwargs)
        new_tokens = generated[:, encoded["input_ids"].shape[1] :]
        texts_out = self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(t, sampling.stop) for t in texts_out]
