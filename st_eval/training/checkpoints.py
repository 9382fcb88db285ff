"""Checkpoints within a training stage, so a killed training resumes near where it stopped.

A CPU training stage of the full recipes runs for an hour or more (the shipped judge's: 67 min);
before this module a kill (the kernel's OOM killer, a reboot, Ctrl-C) lost every step of it, and
``--resume`` started the stage again at its first step. Now the trainer saves a checkpoint (the
adapter or weights, optimizer, scheduler, RNG and trainer state: transformers' own format)
every ``train.checkpoint_minutes`` of training into the stage's work folder, keeping the newest
only, and a rerun of the same job continues from it with ``Trainer.train(resume_from_checkpoint=)``.

Saving by the clock, not every N steps: a step takes 0.1 s on a GPU and 15 s on a CPU, so no one
step count suits both. Where several processes train (``accelerate launch``), the main process's
clock decides for all of them, since every rank must enter a save together.

A checkpoint is used only by the job that wrote it: the work folder keeps a fingerprint of the
job (its settings and the bytes of its data); a job that differs in either starts afresh and
clears the old checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from st_eval.jsonl import write_json
from st_eval.training.run_log import say

if TYPE_CHECKING:
    from st_eval.training.jobs import TrainJob

#: the work folder's record of the job its checkpoints belong to
FINGERPRINT_FILE = "st_eval_job.json"
#: written last into a checkpoint by transformers: a folder without it is an interrupted save
_COMPLETE_MARK = "trainer_state.json"


def job_fingerprint(job: TrainJob) -> str:
    """SHA-256 of the job's settings and of its data file's bytes."""
    digest = hashlib.sha256(json.dumps(asdict(job), sort_keys=True, default=str).encode())
    with open(job.data, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def claim_work_dir(work_dir: Path, job: TrainJob) -> None:
    """Mark ``work_dir`` as ``job``'s, clearing it first where another job (other settings or
    data) left checkpoints there. The main process only, before any process looks for a checkpoint."""
    work_dir = Path(work_dir)
    fingerprint = job_fingerprint(job)
    marker = work_dir / FINGERPRINT_FILE
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == fingerprint:
        return
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    write_json(marker, {"fingerprint": fingerprint, "kind": job.kind, "output": job.output})


def last_checkpoint(work_dir: Path) -> str | None:
    """The newest complete checkpoint in ``work_dir`` (transformers writes its trainer state last,
    so a save cut off midway is passed over), or None."""
    complete = [c for c in Path(work_dir).glob("checkpoint-*") if _step(c) is not None and (c / _COMPLETE_MARK).exists()]
    return str(max(complete, key=_step)) if complete else None


def _step(folder: Path) -> int | None:
    """The step a transformers ``checkpoint-N`` folder was saved at; None for any other name."""
    number = folder.name.removeprefix("checkpoint-")
    return int(number) if number.isdigit() and number != folder.name else None


def checkpoint_args(minutes: float) -> dict[str, Any]:
    """Trainer arguments for clock-driven checkpoints: the newest one kept, with its optimizer
    state (a resumed run continues the same optimization, not a restart from saved weights)."""
    return {"save_total_limit": 1, "save_only_model": False} if minutes > 0 else {}


def timed_checkpoints(minutes: float) -> Any:
    """A trainer callback that asks for a checkpoint once ``minutes`` of training have passed
    since the start or the last save (the main process's clock decides for every process). Built
    here so that importing the training modules does not import transformers."""
    from transformers import TrainerCallback

    class TimedCheckpoints(TrainerCallback):
        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            due = time.monotonic() - self.last >= minutes * 60
            if args.world_size > 1:
                from accelerate.utils import broadcast_object_list

                due = broadcast_object_list([due], from_process=0)[0]
            if due and state.global_step < state.max_steps:  # the stage itself saves the finished model
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):
            self.last = time.monotonic()

    return TimedCheckpoints()


def train_resuming(trainer: Any, job: TrainJob, work_dir: Path) -> tuple[Any, int | None]:
    """``trainer.train()``'s result, continued from ``job``'s last checkpoint in ``work_dir`` if
    it has one, and the step it continued from (None: from the start; the result's runtime then
    counts the resumed part only). With ``train.checkpoint_minutes`` > 0 it saves checkpoints as it goes."""
    minutes = job.train.checkpoint_minutes
    if minutes <= 0:
        return trainer.train(), None
    if trainer.accelerator.is_main_process:
        claim_work_dir(work_dir, job)
    trainer.accelerator.wait_for_everyone()
    checkpoint = last_checkpoint(work_dir)
    trainer.add_callback(timed_checkpoints(minutes))
    if checkpoint and trainer.accelerator.is_main_process:
        say(f"training ({job.kind}): continuing from {checkpoint}")
    return trainer.train(resume_from_checkpoint=checkpoint), (_step(Path(checkpoint)) if checkpoint else None)


__all__ = ["FINGERPRINT_FILE", "checkpoint_args", "claim_work_dir", "job_fingerprint", "last_checkpoint", "timed_checkpoints", "train_resuming"]
