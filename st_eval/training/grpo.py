"""Optional stage 5c: online RL of the judge with GRPO (trl's ``GRPOTrainer``), J1-style.

The judge samples ``num_generations`` judgments per prompt; each is rewarded by what the known
winner of the synthetic pair says about it, through the core's one verdict parser under the
template's declared form (no rejection sampling, no human labels):

* ``correct``: 1 when the verdict names the known winner, else 0 (no verdict: 0);
* ``consistent``: 1 only when this judgment and the judgment with the same index in the pair's
  other order are both right (J1's position-consistency reward). Both orders of a pair are
  adjacent rows of an unshuffled dataset and a generation batch holds whole pairs, so the two
  orders are always scored together; a batch that splits a pair is an error, not a guess;
* ``format``: 1 when a verdict was written at all.

Rewards are weighted by the recipe's ``grpo.reward_weights``. LoRA via peft; the adapter is
merged into the saved judge like SFT's. On GPU, ``use_vllm`` generates with vLLM colocated.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from st_eval.judge import build_prompt, unswap
from st_eval.prompt import load_template
from st_eval.records import Pair
from st_eval.training.cpu_speed import loss_positions_only
from st_eval.training.config import GRPOSettings, TrainConfig
from st_eval.training.run_log import quiet_trainer

REWARDS = ("correct", "consistent", "format")
_OTHER = {"given": "swapped", "swapped": "given"}


def grpo_rows(pairs: Sequence[Pair], template: str) -> list[dict[str, Any]]:
    """Two rows per labelled pair, given then swapped, adjacent: the judge prompt (chat
    messages), the winner's letter as shown, the pair id and the order."""
    rows = []
    for pair in pairs:
        if pair.label not in ("A", "B"):
            continue
        for order in ("given", "swapped"):
            rows.append({"prompt": build_prompt(pair, order, template), "label": unswap(pair.label, order), "pair_id": pair.id, "order": order})
    return rows


def _text(completion: Any) -> str:
    """A completion as text (conversational completions are lists of messages)."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def reward_functions(template: str) -> dict[str, Callable[..., list[float]]]:
    """The three rewards, named for trl's logs (``rewards/<name>/mean``)."""
    form = load_template(template).verdict

    def verdicts(completions: Sequence[Any]) -> list[str | None]:
        return [form.parse(_text(c)).verdict for c in completions]

    def correct(completions, label, **_: Any) -> list[float]:
        return [float(v == l) for v, l in zip(verdicts(completions), label)]

    def consistent(completions, label, pair_id, order, **_: Any) -> list[float]:
        right = [v == l for v, l in zip(verdicts(completions), label)]
        seen: Counter[tuple[str, str]] = Counter()
        index = []
        for p, o in zip(pair_id, order):
            index.append(seen[(p, o)])
            seen[(p, o)] += 1
        by_key = {(p, o, i): r for p, o, i, r in zip(pair_id, order, index, right)}
        rewards = []
        for p, o, i, r in zip(pair_id, order, index, right):
            other = by_key.get((p, _OTHER[o], i))
            if other is None:
                raise RuntimeError(f"pair {p!r}: its {_OTHER[o]} order is not in this generation batch; both orders must be judged together")
            rewards.append(float(r and other))
        return rewards

    def format_(completions, **_: Any) -> list[float]:
        return [float(v is not None) for v in verdicts(completions)]

    correct.__name__, consistent.__name__, format_.__name__ = "correct", "consistent", "format"
    return {"correct": correct, "consistent": consistent, "format": format_}


def train_grpo(
    base_model: str, pairs: Sequence[Pair], template: str, output: Path, settings: GRPOSettings, train: TrainConfig, *, seed: int = 0
) -> dict[str, Any]:
    """GRPO from ``base_model`` on ``pairs`` (both orders) into the judge folder ``output``."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from st_eval.embedded import resolve_model
    from st_eval.training.sft import shared_trainer_args, write_model

    start = time.time()
    chosen = list(pairs)[: settings.pairs] if settings.pairs else list(pairs)
    rows = grpo_rows(chosen, template)
    if not rows:
        raise ValueError("GRPO needs labelled pairs")
    base = resolve_model(base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if train.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    functions = reward_functions(template)
    weights = {name: float(settings.reward_weights.get(name, 0.0)) for name in REWARDS}
    used = list(REWARDS)  # a zero weight still logs the reward: format's mean is the valid-verdict rate
    output = Path(output)
    work_dir = output.parent / f"{output.name}-trainer"
    args = GRPOConfig(
        **shared_trainer_args(work_dir, train, seed),
        learning_rate=settings.learning_rate,
        max_steps=settings.steps,
        beta=settings.beta,
        temperature=settings.temperature,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        # one generation batch = whole pairs, both orders, num_generations judgments each
        per_device_train_batch_size=2 * settings.pairs_per_step * settings.num_generations,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        shuffle_dataset=False,
        reward_weights=[weights[name] for name in used],
        use_vllm=settings.use_vllm,
        vllm_mode="colocate",
    )
    peft_config = None
    if train.method == "lora":
        peft_config = LoraConfig(
            r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
            target_modules=train.lora.target_modules, task_type="CAUSAL_LM",
        )
    trainer = GRPOTrainer(
        model=model, reward_funcs=[functions[name] for name in used], args=args,
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=peft_config,
    )
    quiet_trainer(trainer, "training (grpo)")
    with loss_positions_only():  # the policy and reference passes score completions only, on CPU too
        result = trainer.train()
    history = [h for h in trainer.state.log_history if "reward" in h]
    metrics = {
        "kind": "grpo",
        "pairs": len(chosen),
        "rows": len(rows),
        "examples": len(rows),
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "reward_weights": weights,
        "reward": [round(float(h["reward"]), 4) for h in history],
        **{f"reward_{name}": [round(float(h[f"rewards/{name}/mean"]), 4) for h in history if f"rewards/{name}/mean" in h] for name in used},
        "invalid_rate": [round(1.0 - float(h["rewards/format/mean"]), 4) for h in history if "rewards/format/mean" in h],
        "method": train.method,
        "base_model": base_model,
    }
    adapter_dir = work_dir / "final"
    trainer.save_model(str(adapter_dir))
    write_model(adapter_dir, base, output, lora=train.method == "lora", dtype=dtype, tokenizer=tokenizer)
    metrics["seconds"] = round(time.time() - start, 1)
    (output / "training.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


__all__ = ["REWARDS", "grpo_rows", "reward_functions", "train_grpo"]
