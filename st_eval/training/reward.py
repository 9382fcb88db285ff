"""Stage 5 for rating judges: train the judge's verdict log-odds as a reward model, with trl.

A rating judge (``rating.py``) compares two answers by their ratings, and with two choices
(``Yes``/``No``) the rating is a monotone function of one number, the log-odds
``s = logit(Yes) - logit(No)`` at the first answer token. So the judge is trained on exactly
what it is used for: the Bradley-Terry loss of reward models, ``-log sigmoid(s(x, winner) -
s(x, loser))``, over the synthetic pairs, whose winner is known by construction (no human label).

trl's ``RewardTrainer`` does this for a sequence-classification model. Here that model is a
view of the judge: the same transformer, with a one-output head fixed to the difference of the
language-model head's rows for the top and bottom choice, so its reward *is* ``s`` (checked at
start). LoRA adapters on the transformer layers learn (``train.method: lora``), or the whole
transformer (``full``; input embeddings frozen where the output head shares them); the head stays
fixed, so what is trained loads unchanged into the causal LM and the judge remains a chat model
that every engine runs, still answering with the template's verdict tokens.

Both sides of a pair are the judge's prompts (``rating_pairs.preference_row``: a rating
template's winner and loser, a choice template's pair with the winner shown first and second,
whose head is then ``lm_head[A] - lm_head[B]``), tokenized with the chat template and the
generation prompt, i.e. exactly what the engines score.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from st_eval.engines.base import ChatPrompt
from st_eval.errors import InputError
from st_eval.jsonl import read_jsonl, write_jsonl
from st_eval.training.artifacts import replace_folder, staging_folder
from st_eval.training.checkpoints import train_resuming
from st_eval.training.config import TrainConfig
from st_eval.training.cpu_speed import PackedPreferenceCollator, read_rewards_at_sequence_ends
from st_eval.training.run_log import quiet_trainer
from st_eval.training.sft import set_up_processes, shared_trainer_args, weights_dtype

if TYPE_CHECKING:
    from st_eval.training.jobs import TrainJob

#: the largest relative difference tolerated between the classifier view's reward and the causal
#: LM's log-odds, before training and after merging (float32, same weights: equal up to rounding)
_VIEW_TOLERANCE = 1e-3
#: the same in bfloat16, whose 8-bit mantissa alone moves a log-odds of 2-4 by ~1e-2
_HALF_TOLERANCE = 3e-2
#: the classifier view's head module (transformers' ``...ForSequenceClassification.score``): the
#: causal LM's own Yes-No row, which the causal judge has not as a module
VIEW_HEAD = "score"


def choice_tokens(tokenizer: Any, choices: dict[str, float]) -> tuple[int, int]:
    """Token ids of the highest- and lowest-valued choice; each must be one token."""
    top = max(choices, key=choices.__getitem__)
    bottom = min(choices, key=choices.__getitem__)
    ids = []
    for choice in (top, bottom):
        encoded = tokenizer(choice, add_special_tokens=False).input_ids
        if len(encoded) != 1:
            raise InputError(f"rating choice {choice!r} is {len(encoded)} tokens for this tokenizer; training needs one-token choices")
        ids.append(encoded[0])
    return ids[0], ids[1]


def train_rating_judge(
    base_model: str,
    pairs: Sequence[tuple[ChatPrompt, ChatPrompt]],
    choices: dict[str, float],
    output: Path,
    config: TrainConfig,
    *,
    seed: int = 0,
    adapter: Path | None = None,
) -> dict[str, Any]:
    """Train the judge (LoRA adapters, or all of it) so it rates each pair's first prompt above its second.

    LoRA: ``base_model`` is always the seed judge; ``adapter`` (a previous iteration's) continues
    training that adapter instead of a new one, so the result stays one adapter on the seed.
    Full fine-tuning: ``base_model`` is the judge to start from (the seed, or the previous
    iteration's judge for ``train.init: previous``).

    Writes ``output`` (a plain model folder for the engines; LoRA: with ``adapter/``, the
    adapter alone, a few MB, for shipping) and ``training.json`` (loss, reward accuracy
    and margin per logged step). Returns what ``training.json`` holds. The pairs go to
    ``reward_data.jsonl`` beside ``output``, and the training job runs where
    :func:`st_eval.training.jobs.launch` says (on a CPU, in this process).
    """
    from st_eval.training.jobs import TrainJob, launch

    if config.method == "full" and adapter is not None:
        raise InputError("full fine-tuning continues a judge folder (base_model), not a LoRA adapter")
    output = Path(output)
    data = write_jsonl(output.parent / "reward_data.jsonl", ({"chosen": w, "rejected": l} for w, l in pairs))
    job = TrainJob(
        "reward", base_model, str(data), str(output), config, seed=seed, choices=dict(choices),
        adapter=str(adapter) if adapter is not None else None,
    )
    return launch(job, output.parent / "reward_job.json")


def run_reward_job(job: TrainJob) -> dict[str, Any]:
    """Train a reward job in this process (every rank of a launched job runs this)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from st_eval.embedded import resolve_model

    config, adapter = job.train, job.adapter
    assert job.choices is not None, "a reward job names its rating choices"
    start = time.time()
    base = resolve_model(job.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    top, bottom = choice_tokens(tokenizer, job.choices)

    def ids(prompt: ChatPrompt) -> list[int]:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False).input_ids

    rows = [{"chosen_ids": ids(r["chosen"]), "rejected_ids": ids(r["rejected"])} for r in read_jsonl(job.data)]
    for row in rows:  # lets the sampler batch pairs of similar length (little padding)
        row["length"] = max(len(row["chosen_ids"]), len(row["rejected_ids"]))
    dataset = Dataset.from_list(rows)
    output = Path(job.output)
    work_dir = output.parent / f"{output.name}-trainer"
    args = RewardConfig(
        **shared_trainer_args(work_dir, config, job.seed),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        max_length=config.max_length,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
    )
    set_up_processes(args)  # before loading: sharded loading needs the arguments (sft.run_job)

    dtype = weights_dtype(config)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    probe = rows[0]["chosen_ids"]
    _fix_head(model, AutoModelForCausalLM.from_pretrained(base, dtype=dtype), top, bottom, probe)
    packed = config.padding_free and not torch.cuda.is_available() and read_rewards_at_sequence_ends(model)
    if config.method == "full":
        _freeze_tied_embeddings(model)
    elif adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    else:
        lora = LoraConfig(
            r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            exclude_modules=[VIEW_HEAD],  # an adapter on the head would be lost on merging
        )
        model = get_peft_model(model, lora)
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        data_collator=PackedPreferenceCollator() if packed else None,
    )
    quiet_trainer(trainer, "training (reward)")
    result, resumed = train_resuming(trainer, job, work_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "kind": "reward",
        "objective": "Bradley-Terry on the judge's verdict log-odds",
        "pairs": len(rows),
        "examples": len(rows),
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "losses": [round(float(h["loss"]), 4) for h in history],
        "accuracy": [round(float(h["accuracy"]), 4) for h in history if "accuracy" in h],
        "margin": [round(float(h["margin"]), 4) for h in history if "margin" in h],
        "method": config.method,
        "base_model": job.base_model,
        "continued_adapter": adapter,
        "padding_free": packed,
        "train_seconds": round(result.metrics["train_runtime"], 1),
        "resumed_from_step": resumed,  # train_seconds counts the steps after it only
        "examples_per_second": round(result.metrics["train_samples_per_second"], 4),
    }
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return metrics
    staging = staging_folder(output)
    if config.method == "full":
        merged = _save_full(model, base, staging, tokenizer)
        # without the trainer's bfloat16 autocast around its forward (training in bf16 wraps it):
        # the check compares the trained weights in float32 with the saved float32 judge
        view = trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False).float()
    else:
        model.save_pretrained(staging / "adapter")
        merged = _merge_into(staging, base, staging / "adapter", tokenizer)
        view = _float32_view(model, base, staging / "adapter", merged, top, bottom)
    _check_view(view, merged, top, bottom, probe, "the saved judge disagrees with the judge it was trained as")
    metrics["seconds"] = round(time.time() - start, 1)
    (staging / "training.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    replace_folder(staging, output)
    shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def _freeze_tied_embeddings(model: Any) -> None:
    """Full fine-tuning: freeze the input embeddings where the causal judge's output head is the
    same matrix (tied, as in SmolLM2): the classifier view's head is a fixed copy of two of its
    rows, so an update there would change the causal judge's log-odds and not the view's."""
    if getattr(model.config, "tie_word_embeddings", False):
        model.get_input_embeddings().weight.requires_grad_(False)


def _save_full(view: Any, base: str, folder: Path, tokenizer: Any) -> Any:
    """Write the causal LM whose transformer is the fully fine-tuned view's (its own output head
    kept) into ``folder``, in float32 and marked to stay so on CPU, like a merged LoRA; return it."""
    import torch
    from transformers import AutoModelForCausalLM

    from st_eval.native_dtype import save_float32

    causal = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    body = causal.base_model_prefix
    state = {k: v.float() for k, v in getattr(view, body).state_dict().items()}
    getattr(causal, body).load_state_dict(state, strict=True)  # strict: every body weight carried over
    tokenizer.save_pretrained(folder)
    return save_float32(causal, folder)


def _float32_view(trained: Any, base: str, adapter: Path, merged: Any, top: int, bottom: int) -> Any:
    """The trained classifier view in float32, to compare with the float32 merged judge: itself
    where it trained in float32; else the saved adapter on the float32 base. (A bfloat16 base
    differs from the float32 one by its rounding, which moves log-odds by ~0.3 on the embedded
    judge: not a merge error, and larger than the check's tolerance.)"""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    if trained.dtype == torch.float32:
        return trained
    view = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    view.config.pad_token_id = trained.config.pad_token_id
    _set_head(view, merged, top, bottom)
    return PeftModel.from_pretrained(view, adapter)


def _head_row(causal: Any, top: int, bottom: int) -> Any:
    """lm_head[top] - lm_head[bottom]: the row whose product with the last hidden state is the
    judge's log-odds of its top choice over its bottom one."""
    weight = causal.get_output_embeddings().weight
    return weight[top] - weight[bottom]


def _set_head(model: Any, causal: Any, top: int, bottom: int) -> None:
    """Make the classifier view's head the causal judge's log-odds row, frozen."""
    import torch

    with torch.no_grad():
        model.score.weight.copy_(_head_row(causal, top, bottom).unsqueeze(0))
    model.score.weight.requires_grad_(False)


def _fix_head(model: Any, causal: Any, top: int, bottom: int, probe: list[int]) -> None:
    """Set the classifier head to lm_head[top] - lm_head[bottom], frozen, and check that the
    classifier's reward equals the causal LM's log-odds on one prompt."""
    _set_head(model, causal, top, bottom)
    _check_view(model, causal, top, bottom, probe, "the classifier view of the judge disagrees with it (unsupported architecture)")


def _check_view(view: Any, causal: Any, top: int, bottom: int, probe: list[int], problem: str) -> None:
    """Raise unless the classifier view's reward equals the causal LM's top-minus-bottom log-odds on
    ``probe``: what is trained must be what the engines load."""
    import torch

    view.eval()
    with torch.no_grad():
        ids = torch.tensor([probe], device=causal.device)
        reward = view(input_ids=ids.to(view.device)).logits[0, 0].item()
        # the two head rows' difference in float32: in bfloat16 each logit (~15) is rounded to
        # 1/16, more than the difference itself may be
        hidden = causal(input_ids=ids, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][0, -1].float()
        expected = (hidden @ _head_row(causal, top, bottom).float()).item()
    tolerance = _VIEW_TOLERANCE if causal.dtype == view.dtype == torch.float32 else _HALF_TOLERANCE
    if abs(reward - expected) > tolerance * max(1.0, abs(expected)):
        raise InputError(f"{problem}: {reward:.4f} vs {expected:.4f}")


def _merge_into(folder: Path, base: str, adapter: Path, tokenizer: Any) -> Any:
    """Write the causal LM with the adapter merged into ``folder`` (what every engine loads); return it."""
    from st_eval.native_dtype import write_merged

    merged = write_merged(base, adapter, folder)
    tokenizer.save_pretrained(folder)
    return merged


__all__ = ["VIEW_HEAD", "choice_tokens", "run_reward_job", "train_rating_judge"]
