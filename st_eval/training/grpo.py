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
merged into the saved judge like SFT's. On GPU, ``use_vllm`` generates with vLLM colocated in
each training process, sized by the recipe: its context is the longest prompt plus
``max_completion_length`` (not the model's whole window, 131,072 tokens for Llama-3.1, which does
not fit beside the trainer) and its share of the GPU is ``vllm_gpu_memory_utilization``.

Batches: a generation batch holds ``pairs_per_step`` whole pairs in both orders, split evenly
over the training processes (each process scores whole pairs); the trainer then steps through it
in micro-batches of ``num_generations`` judgments (one prompt's group), accumulating gradients
over the generation batch, so one optimizer step still sees every pair of the step.

The stage runs as a training job (:mod:`st_eval.training.jobs`): with a colocated vLLM always
in a process of its own, whose vLLM and CUDA state end with it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from st_eval.errors import InputError
from st_eval.jsonl import read_jsonl, write_json, write_jsonl
from st_eval.judge import build_prompt, unswap
from st_eval.prompt import load_template
from st_eval.records import Pair
from st_eval.training.checkpoints import train_resuming
from st_eval.training.config import GRPOSettings, TrainConfig
from st_eval.training.cpu_speed import loss_positions_only
from st_eval.training.run_log import quiet_trainer
from st_eval.training.sft import saved_dtype, set_up_processes, shared_trainer_args, weights_dtype, write_model

if TYPE_CHECKING:
    from st_eval.training.jobs import TrainJob

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
    """GRPO from ``base_model`` on ``pairs`` (both orders) into the judge folder ``output``.

    Writes the rows (``grpo_data.jsonl`` beside ``output``) and runs the training job where
    :func:`st_eval.training.jobs.launch` says; returns what ``training.json`` holds."""
    from st_eval.training.jobs import TrainJob, launch

    chosen = list(pairs)[: settings.pairs] if settings.pairs else list(pairs)
    rows = grpo_rows(chosen, template)
    if not rows:
        raise ValueError("GRPO needs labelled pairs")
    output = Path(output)
    data = write_jsonl(output.parent / "grpo_data.jsonl", rows)
    job = TrainJob("grpo", base_model, str(data), str(output), train, seed=seed, grpo=settings, template=template)
    return launch(job, output.parent / "grpo_job.json")


def grpo_arguments(
    settings: GRPOSettings, train: TrainConfig, work_dir: Path, seed: int, *, processes: int, longest_prompt: int,
    context_window: int | None,
) -> dict[str, Any]:
    """The ``GRPOConfig`` arguments of a job on ``processes`` training processes.

    Each process generates for ``2 * pairs_per_step / processes`` prompts (whole pairs, both
    orders) and trains on them in micro-batches of ``num_generations`` judgments, accumulating
    over its whole generation batch: one optimizer step per generation batch, as J1 steps. With
    ``use_vllm``, the colocated vLLM gets the recipe's share of the GPU and a context of the
    longest prompt plus the judgment budget."""
    if settings.pairs_per_step % processes:
        raise InputError(
            f"field 'grpo.pairs_per_step' ({settings.pairs_per_step}) must be a multiple of the training processes ({processes}): "
            "each process scores whole pairs, both orders together"
        )
    prompts_per_process = 2 * settings.pairs_per_step // processes
    weights = {name: float(settings.reward_weights.get(name, 0.0)) for name in REWARDS}
    arguments: dict[str, Any] = dict(
        **shared_trainer_args(work_dir, train, seed),
        learning_rate=settings.learning_rate,
        max_steps=settings.steps,
        beta=settings.beta,
        temperature=settings.temperature,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        per_device_train_batch_size=settings.num_generations,  # a micro-batch: one prompt's group
        gradient_accumulation_steps=prompts_per_process,
        steps_per_generation=prompts_per_process,  # one generation batch per optimizer step
        shuffle_dataset=False,  # both orders of a pair stay adjacent rows
        reward_weights=[weights[name] for name in REWARDS],  # a zero weight still logs the reward
        use_vllm=settings.use_vllm,
    )
    if settings.use_vllm:
        window = longest_prompt + settings.max_completion_length
        arguments.update(
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
            vllm_enable_sleep_mode=settings.vllm_sleep,
            vllm_max_model_length=min(window, context_window) if context_window else window,
        )
    return arguments


def run_grpo_job(job: TrainJob) -> dict[str, Any]:
    """Train a GRPO job in this process (every rank of a launched job runs this)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from st_eval.embedded import resolve_model

    settings, train, template = job.grpo, job.train, job.template
    assert settings is not None and template is not None, "a GRPO job names its settings and template"
    start = time.time()
    rows = list(read_jsonl(job.data))
    base = resolve_model(job.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    output = Path(job.output)
    work_dir = output.parent / f"{output.name}-trainer"
    window = getattr(AutoConfig.from_pretrained(base).get_text_config(), "max_position_embeddings", None)
    args = GRPOConfig(**grpo_arguments(
        settings, train, work_dir, job.seed, processes=int(os.environ.get("WORLD_SIZE", "1")),
        longest_prompt=longest_prompt(tokenizer, rows), context_window=window if isinstance(window, int) else None,
    ))
    set_up_processes(args)  # before loading: sharded loading needs the arguments (sft.run_job)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=weights_dtype(train))
    functions = reward_functions(template)
    peft_config = None
    if train.method == "lora":
        peft_config = LoraConfig(
            r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
            target_modules=train.lora.target_modules, task_type="CAUSAL_LM",
        )
    trainer = GRPOTrainer(
        model=model, reward_funcs=[functions[name] for name in REWARDS], args=args,
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=peft_config,
    )
    quiet_trainer(trainer, "training (grpo)")
    with loss_positions_only():  # the policy and reference passes score completions only, on CPU too
        result, resumed = train_resuming(trainer, job, work_dir)
    history = [h for h in trainer.state.log_history if "reward" in h]
    metrics = {
        "kind": "grpo",
        "pairs": len(rows) // 2,
        "rows": len(rows),
        "examples": len(rows),
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "reward_weights": {name: float(settings.reward_weights.get(name, 0.0)) for name in REWARDS},
        "reward": [round(float(h["reward"]), 4) for h in history],
        **{f"reward_{name}": [round(float(h[f"rewards/{name}/mean"]), 4) for h in history if f"rewards/{name}/mean" in h] for name in REWARDS},
        "invalid_rate": [round(1.0 - float(h["rewards/format/mean"]), 4) for h in history if "rewards/format/mean" in h],
        "method": train.method,
        "base_model": job.base_model,
        "resumed_from_step": resumed,
        "processes": args.world_size,
        "vllm_max_model_length": args.vllm_max_model_length if settings.use_vllm else None,
    }
    trainer.accelerator.wait_for_everyone()
    adapter_dir = work_dir / "final"
    trainer.save_model(str(adapter_dir))
    if trainer.accelerator.is_main_process:
        write_model(adapter_dir, base, output, lora=train.method == "lora", dtype=saved_dtype(train), tokenizer=tokenizer)
        metrics["seconds"] = round(time.time() - start, 1)
        write_json(output / "training.json", metrics)
        shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def longest_prompt(tokenizer: Any, rows: Sequence[dict[str, Any]]) -> int:
    """Tokens of the longest judge prompt as the model sees it (chat template, generation prompt)."""
    return max(
        len(tokenizer(tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True), add_special_tokens=False).input_ids)
        for row in rows
    )


__all__ = ["REWARDS", "grpo_arguments", "grpo_rows", "longest_prompt", "reward_functions", "run_grpo_job", "train_grpo"]
