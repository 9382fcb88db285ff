"""Stage 5: supervised fine-tuning with trl on (judge prompt -> kept judgment).

Rows are conversational prompt/completion pairs, so trl renders them with the model's own chat
template (the same rendering the engines use at annotation and evaluation time) and computes
the loss on the judgment tokens only. LoRA adapters are merged into the saved judge, so the
output is a plain transformers folder that ``st-eval judge --model`` and every engine load.
On CPU, batches go padding-free and the output head scores the judgment tokens only
(:mod:`st_eval.training.cpu_speed`: same loss, about half the time).

A row longer than ``train.max_length`` is dropped and counted, not truncated: trl keeps a
sequence's start, which would cut a judgment's verdict off its end.

This module trains in the process that calls it; :mod:`st_eval.training.jobs` decides where
that process runs (the loop's, its own, or every rank of ``accelerate launch``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from st_eval.errors import InputError
from st_eval.jsonl import write_json
from st_eval.training.artifacts import replace_folder, staging_folder
from st_eval.training.checkpoints import checkpoint_args, train_resuming
from st_eval.training.config import TrainConfig
from st_eval.training.cpu_speed import loss_positions_only, padding_free_collator
from st_eval.training.run_log import quiet_trainer

if TYPE_CHECKING:
    from st_eval.training.jobs import TrainJob


def shared_trainer_args(work_dir: Path, train: TrainConfig, seed: int) -> dict[str, Any]:
    """Trainer arguments every st-eval training run shares (SFT, DPO, reward, GRPO): a log entry
    per step, no trackers, checkpoints by the clock only (``train.checkpoint_minutes``,
    :mod:`st_eval.training.checkpoints`), and the recipe's precision (:func:`trains_in_bfloat16`)
    and device. Explicit because trl's defaults (bf16, gradient checkpointing) cost 3x on a CPU
    without bf16 units."""
    import torch

    return dict(
        output_dir=str(work_dir),
        logging_steps=1,
        save_strategy="no",  # the clock decides (checkpoints.timed_checkpoints)
        **checkpoint_args(train.checkpoint_minutes),
        report_to=[],
        seed=seed,
        bf16=trains_in_bfloat16(train),
        gradient_checkpointing=train.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
    )


def run_job(job: TrainJob) -> dict[str, Any]:
    """Train, then write the merged model folder and ``training.json`` (loss, steps, seconds).

    The trainer's arguments exist before the model loads: only then does transformers load it
    sharded (DeepSpeed ZeRO-3's ``zero.Init``, FSDP's low-memory loading) instead of a full copy
    per process."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from st_eval.embedded import resolve_model

    start = time.time()
    cfg = job.train
    base = resolve_model(job.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset, too_long = drop_too_long(load_dataset("json", data_files=job.data, split="train"), tokenizer, cfg.max_length, job.data)
    output = Path(job.output)
    work_dir = output.parent / f"{output.name}-trainer"
    common: dict[str, Any] = dict(
        **shared_trainer_args(work_dir, cfg, job.seed),
        num_train_epochs=cfg.epochs if job.kind == "sft" else job.dpo.epochs,  # type: ignore[union-attr]
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate if job.kind == "sft" else job.dpo.learning_rate,  # type: ignore[union-attr]
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        max_length=cfg.max_length,
        disable_tqdm=False,
    )
    if job.kind == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, completion_only_loss=True)
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=job.dpo.beta)  # type: ignore[union-attr]
    set_up_processes(args)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=weights_dtype(cfg))
    peft_config = collator = None
    if cfg.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM",
        )
    if job.kind == "sft":
        collator = padding_free_collator(model, tokenizer) if cfg.padding_free and not torch.cuda.is_available() else None
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config, data_collator=collator,
        )
    else:
        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    quiet_trainer(trainer, f"training ({job.kind})")
    with loss_positions_only():
        result, resumed = train_resuming(trainer, job, work_dir)
    metrics = {
        "kind": job.kind,
        "examples": len(dataset),
        "dropped_too_long": too_long,
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "losses": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        "train_seconds": round(result.metrics["train_runtime"], 1),
        "resumed_from_step": resumed,  # train_seconds counts the steps after it only
        "examples_per_second": round(result.metrics["train_samples_per_second"], 4),
        "padding_free": bool(collator),
        "method": cfg.method,
        "base_model": job.base_model,
    }
    trainer.accelerator.wait_for_everyone()
    adapter_dir = work_dir / "final"
    trainer.save_model(str(adapter_dir))
    if trainer.accelerator.is_main_process:
        write_model(adapter_dir, base, output, lora=cfg.method == "lora", dtype=saved_dtype(cfg), tokenizer=tokenizer)
        metrics["seconds"] = round(time.time() - start, 1)
        write_json(output / "training.json", metrics)  # last and atomic: a resumed run reuses this judge
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoint copies; the merged folder is the result
    return metrics


def set_up_processes(args: Any) -> None:
    """Start the trainer's distributed state now, from its arguments, before any weights load:
    transformers' low-memory FSDP loading reads it (DeepSpeed's ``zero.Init`` reads the
    arguments themselves, which must stay alive until the model is loaded). And seed every random
    generator with the job's seed here: a LoRA adapter's random initialization is drawn before
    the trainer seeds them, so without this two runs of one job trained different adapters."""
    from transformers import set_seed

    args.world_size  # noqa: B018 - the property sets the distributed state up
    set_seed(args.seed)


def weights_dtype(train: TrainConfig) -> Any:
    """The dtype trained weights are loaded in.

    bfloat16 when training in bf16 with LoRA (the base stays frozen; peft keeps the adapters in
    float32) or under FSDP or DeepSpeed (FSDP upcasts to float32 master weights, DeepSpeed keeps
    them in its optimizer). Full fine-tuning in bf16 on one device or under DDP loads float32 and
    trains under bf16 autocast instead: an optimizer updating bfloat16 weights rounds small steps
    away."""
    import torch

    if not trains_in_bfloat16(train):
        return torch.float32
    if train.method == "lora" or sharded_launch():
        return torch.bfloat16
    return torch.float32


def saved_dtype(train: TrainConfig) -> Any:
    """The dtype of the saved judge: bfloat16 when trained in bf16, else float32."""
    import torch

    return torch.bfloat16 if trains_in_bfloat16(train) else torch.float32


def trains_in_bfloat16(train: TrainConfig) -> bool:
    """Whether training here computes in bfloat16: the recipe's ``train.dtype`` (or ``bf16``) on
    this machine's training device, so ``auto`` is bfloat16 on GPUs and on CPUs with AVX512-BF16
    or AMX, float32 on CPUs that would emulate it."""
    from st_eval.native_dtype import default_device

    return train.computes_in_bfloat16(default_device())


def sharded_launch() -> bool:
    """Whether this process was started by ``accelerate launch`` with FSDP or DeepSpeed."""
    return any(os.environ.get(name, "false").lower() == "true" for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"))


def drop_too_long(dataset: Any, tokenizer: Any, max_length: int, source: str) -> tuple[Any, int]:
    """The rows whose every conversation (prompt with completion, or with chosen and rejected)
    fits ``max_length`` tokens of the model's chat template, and how many were dropped."""

    def length(messages: list[dict[str, str]]) -> int:
        return len(tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False).input_ids)

    def fits(row: dict[str, Any]) -> bool:
        answers = [row[key] for key in ("completion", "chosen", "rejected") if row.get(key)]
        return all(length(list(row["prompt"]) + list(answer)) <= max_length for answer in answers)

    kept = dataset.filter(fits)
    if len(kept) == 0:
        raise InputError(f"{source}: every row is longer than train.max_length ({max_length} tokens); raise train.max_length")
    return kept, len(dataset) - len(kept)


def write_model(saved: Path, base: str, output: Path, *, lora: bool, dtype, tokenizer) -> None:
    """Write a plain, loadable model folder (LoRA merged into the base weights) atomically."""
    from transformers import AutoModelForCausalLM

    staging = staging_folder(output)
    if lora:
        from st_eval.native_dtype import write_merged

        write_merged(base, saved, staging)
    else:
        AutoModelForCausalLM.from_pretrained(saved, dtype=dtype).save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    replace_folder(staging, output)
