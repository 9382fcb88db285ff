"""Stage 5: supervised fine-tuning with trl on (judge prompt -> kept judgment).

Rows are conversational prompt/completion pairs, so trl renders them with the model's own chat
template (the same rendering the engines use at annotation and evaluation time) and computes
the loss on the judgment tokens only. LoRA adapters are merged into the saved judge, so the
output is a plain transformers folder that ``st-eval judge --model`` and every engine load.
On CPU, batches go padding-free and the output head scores the judgment tokens only
(:mod:`st_eval.training.cpu_speed`: same loss, about half the time).

Runs in-process, or under ``accelerate launch`` for multi-GPU/multi-node (FSDP, DeepSpeed):
``python -m st_eval.training.sft JOB.json`` is the entry point the loop launches.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from st_eval.jsonl import write_json
from st_eval.training.artifacts import replace_folder, staging_folder
from st_eval.training.config import DPOSettings, LoraSettings, TrainConfig
from st_eval.training.cpu_speed import loss_positions_only, padding_free_collator
from st_eval.training.run_log import quiet_trainer


@dataclass
class TrainJob:
    """Everything one training run needs, serializable for a launched subprocess.

    kind: ``sft`` or ``dpo``.
    base_model: folder (or hub id) of the model to start from.
    data: JSONL of trl rows (prompt/completion for SFT, prompt/chosen/rejected for DPO).
    output: the model folder to write (replaced atomically when training ends).
    """

    kind: str
    base_model: str
    data: str
    output: str
    train: TrainConfig
    dpo: DPOSettings | None = None
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainJob:
        data = json.loads(text)
        train = dict(data["train"])
        train["lora"] = LoraSettings(**train["lora"])
        data["train"] = TrainConfig(**train)
        data["dpo"] = DPOSettings(**data["dpo"]) if data.get("dpo") else None
        return cls(**data)


def shared_trainer_args(work_dir: Path, train: TrainConfig, seed: int) -> dict[str, Any]:
    """Trainer arguments every st-eval training run shares (SFT, DPO, reward, GRPO): a log entry
    per step, no checkpoints or trackers, and the recipe's precision and device. Explicit because
    trl's defaults (bf16, gradient checkpointing) cost 3x on a CPU without bf16 units."""
    import torch

    return dict(
        output_dir=str(work_dir),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        bf16=train.bf16,
        gradient_checkpointing=train.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
    )


def run_job(job: TrainJob) -> dict[str, Any]:
    """Train, then write the merged model folder and ``training.json`` (loss, steps, seconds)."""
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
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    dataset = load_dataset("json", data_files=job.data, split="train")
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
    peft_config = collator = None
    if cfg.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM",
        )
    if job.kind == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, completion_only_loss=True)
        collator = padding_free_collator(model, tokenizer) if cfg.padding_free and not torch.cuda.is_available() else None
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config, data_collator=collator,
        )
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=job.dpo.beta)  # type: ignore[union-attr]
        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    quiet_trainer(trainer, f"training ({job.kind})")
    with loss_positions_only():
        result = trainer.train()
    metrics = {
        "kind": job.kind,
        "examples": len(dataset),
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "losses": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        "train_seconds": round(result.metrics["train_runtime"], 1),
        "examples_per_second": round(result.metrics["train_samples_per_second"], 4),
        "padding_free": bool(collator),
        "method": cfg.method,
        "base_model": job.base_model,
    }
    trainer.accelerator.wait_for_everyone()
    adapter_dir = work_dir / "final"
    trainer.save_model(str(adapter_dir))
    if trainer.accelerator.is_main_process:
        write_model(adapter_dir, base, output, lora=cfg.method == "lora", dtype=dtype, tokenizer=tokenizer)
        metrics["seconds"] = round(time.time() - start, 1)
        write_json(output / "training.json", metrics)  # last and atomic: a resumed run reuses this judge
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoint copies; the merged folder is the result
    return metrics


def write_model(saved: Path, base: str, output: Path, *, lora: bool, dtype, tokenizer) -> None:
    """Write a plain, loadable model folder (LoRA merged into the base weights) atomically."""
    from transformers import AutoModelForCausalLM

    staging = staging_folder(output)
    if lora:
        from peft import PeftModel

        merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=dtype), saved).merge_and_unload()
    else:
        merged = AutoModelForCausalLM.from_pretrained(saved, dtype=dtype)
    merged.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    replace_folder(staging, output)


def launch(job: TrainJob, job_file: Path, config: TrainConfig) -> dict[str, Any]:
    """Run a job in-process, or as ``accelerate launch -m st_eval.training.sft JOB`` for multi-GPU."""
    if config.launcher == "inprocess":
        return run_job(job)
    import subprocess

    job_file.write_text(job.to_json(), encoding="utf-8")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config.accelerate_config),
        "-m", "st_eval.training.sft", str(job_file),
    ]
    subprocess.run(command, check=True)
    return json.loads((Path(job.output) / "training.json").read_text(encoding="utf-8"))


if __name__ == "__main__":
    run_job(TrainJob.from_json(Path(sys.argv[1]).read_text(encoding="utf-8")))
