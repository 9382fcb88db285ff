"""Training jobs: one stage's fine-tuning (SFT, DPO, GRPO, reward), and where it runs.

A job runs in the loop's own process only on a machine without a GPU and with
``train.launcher: inprocess`` (the CPU recipes). Otherwise it runs in a process of its own:
``python -m st_eval.training.jobs JOB.json``, or ``accelerate launch ... -m
st_eval.training.jobs JOB.json`` with ``train.launcher: accelerate`` (every GPU and machine of
the accelerate config). Why: a colocated vLLM (GRPO's ``use_vllm``) changes process-wide state
that nothing undoes, and a trainer's CUDA memory is not reliably returned to the process; in a
child process both end with it, and the next stage's engine starts on empty GPUs.

While a run with ``train.launcher: accelerate`` is going, every launched job is also published
in the run's job queue (``<run dir>/jobs/``), from which ``st-eval train-worker`` on each other
machine takes the same jobs in the same order (:mod:`st_eval.training.worker`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from st_eval.errors import StEvalError
from st_eval.jsonl import write_json
from st_eval.training.artifacts import read_json
from st_eval.training.config import DPOSettings, GRPOSettings, LoraSettings, TrainConfig

JobKind = Literal["sft", "dpo", "grpo", "reward"]
#: the module every launched job runs (``python -m`` / ``accelerate launch -m``)
ENTRY_POINT = "st_eval.training.jobs"


@dataclass
class TrainJob:
    """Everything one training job needs, serializable for a launched process.

    kind: ``sft``, ``dpo``, ``grpo`` or ``reward``.
    base_model: folder (or hub id) of the model to start from.
    data: JSONL of the job's rows: prompt/completion (SFT), prompt/chosen/rejected (DPO), the
        judge prompts in both orders (GRPO, ``grpo.grpo_rows``), chosen/rejected rating prompts
        (reward).
    output: the model folder to write (replaced atomically when training ends).
    train, dpo, grpo: the recipe's settings for the stage.
    template: GRPO: the judge template whose verdicts are rewarded.
    choices: reward: the rating template's verdict tokens and values.
    adapter: reward: a previous iteration's adapter to continue instead of a new one.
    """

    kind: JobKind
    base_model: str
    data: str
    output: str
    train: TrainConfig
    dpo: DPOSettings | None = None
    seed: int = 0
    grpo: GRPOSettings | None = None
    template: str | None = None
    choices: dict[str, float] | None = None
    adapter: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainJob:
        data = json.loads(text)
        train = dict(data["train"])
        train["lora"] = LoraSettings(**train["lora"])
        data["train"] = TrainConfig(**train)
        data["dpo"] = DPOSettings(**data["dpo"]) if data.get("dpo") else None
        data["grpo"] = GRPOSettings(**data["grpo"]) if data.get("grpo") else None
        return cls(**data)

    @property
    def colocates_vllm(self) -> bool:
        """GRPO rollouts by a vLLM inside the training process."""
        return self.kind == "grpo" and self.grpo is not None and self.grpo.use_vllm


def run_job(job: TrainJob) -> dict[str, Any]:
    """Train in this process (every rank of a launched job runs this); returns the job's metrics."""
    if job.kind in ("sft", "dpo"):
        from st_eval.training import sft

        return sft.run_job(job)
    if job.kind == "grpo":
        from st_eval.training.grpo import run_grpo_job

        return run_grpo_job(job)
    if job.kind == "reward":
        from st_eval.training.reward import run_reward_job

        return run_reward_job(job)
    raise ValueError(f"unknown training job kind {job.kind!r}")


def launch_mode(job: TrainJob) -> Literal["inprocess", "process", "accelerate"]:
    """Where ``job`` runs: ``accelerate`` (the recipe's launcher), ``process`` (its own process:
    a GPU machine, or a colocated vLLM) or ``inprocess`` (CPU-only, the loop's process)."""
    if job.train.launcher == "accelerate":
        return "accelerate"
    import torch

    if job.colocates_vllm or torch.cuda.is_available():
        return "process"
    return "inprocess"


def job_command(job_file: Path, train: TrainConfig, *, machine_rank: int | None = None, main_process_ip: str | None = None) -> list[str]:
    """The command that runs ``job_file``: through ``accelerate launch`` with the recipe's config
    (``machine_rank`` and ``main_process_ip`` for a worker machine), else plain ``python -m``."""
    if train.launcher != "accelerate":
        return [sys.executable, "-m", ENTRY_POINT, str(job_file)]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(train.accelerate_config)]
    if machine_rank is not None:
        command += ["--machine_rank", str(machine_rank)]
    if main_process_ip:
        command += ["--main_process_ip", main_process_ip]
    return [*command, "-m", ENTRY_POINT, str(job_file)]


def launch(job: TrainJob, job_file: Path) -> dict[str, Any]:
    """Run ``job`` where :func:`launch_mode` says; returns what its ``training.json`` holds.

    A launched job is written to ``job_file`` first; under ``accelerate launch`` it is also
    published in the run's job queue (when one is open), so worker machines join it."""
    mode = launch_mode(job)
    if mode == "inprocess":
        return run_job(job)
    write_json(job_file, asdict(job))
    queue = _QUEUE.get()
    record = queue.publish(job, job_file) if queue is not None and mode == "accelerate" else None
    result = subprocess.run(job_command(job_file, job.train))
    if record is not None:
        queue.finish(record, "done" if result.returncode == 0 else "failed")  # type: ignore[union-attr]
    if result.returncode != 0:
        raise StEvalError(
            f"training job {job_file} ({job.kind}) exited with code {result.returncode}; its output is above. "
            "Everything before it is kept: rerun with --resume to start again at this stage"
        )
    return json.loads((Path(job.output) / "training.json").read_text(encoding="utf-8"))


class JobQueue:
    """The jobs a run launches through ``accelerate launch``, in order, for worker machines.

    ``<run dir>/jobs/run.json`` says which attempt of the run is going (a resumed run is a new
    attempt) and whether it ended; ``jobs/0001.json``, ``0002.json`` ... each name a job file,
    the accelerate config and the job's state (``running``, ``done``, ``failed``), written before
    the main machine launches the job. Every file is written atomically, so a worker polling the
    shared folder never reads half of one.
    """

    def __init__(self, run_dir: Path) -> None:
        self.folder = Path(run_dir) / "jobs"
        self.attempt = ""

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.attempt = uuid.uuid4().hex
        write_json(self.folder / "run.json", {"attempt": self.attempt, "state": "running"})

    def publish(self, job: TrainJob, job_file: Path) -> Path:
        index = len(list(self.folder.glob("[0-9][0-9][0-9][0-9].json"))) + 1
        record = self.folder / f"{index:04d}.json"
        write_json(record, {
            "attempt": self.attempt, "index": index, "kind": job.kind, "job": str(Path(job_file).resolve()),
            "accelerate_config": str(job.train.accelerate_config), "state": "running",
        })
        return record

    def finish(self, record: Path, state: str) -> None:
        write_json(record, {**read_json(record), "state": state})

    def close(self, outcome: str) -> None:
        write_json(self.folder / "run.json", {"attempt": self.attempt, "state": "ended", "outcome": outcome})


_QUEUE: ContextVar[JobQueue | None] = ContextVar("st_eval_job_queue", default=None)


@contextmanager
def job_queue(run_dir: Path) -> Iterator[JobQueue]:
    """Publish the jobs launched inside this block for worker machines; when the block ends
    (finished, failed or interrupted), say so, which lets the workers exit."""
    queue = JobQueue(run_dir)
    queue.open()
    token = _QUEUE.set(queue)
    outcome = "failed"
    try:
        yield queue
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        _QUEUE.reset(token)
        queue.close(outcome)


__all__ = ["ENTRY_POINT", "JobQueue", "TrainJob", "job_command", "job_queue", "launch", "launch_mode", "run_job"]


if __name__ == "__main__":
    run_job(TrainJob.from_json(Path(sys.argv[1]).read_text(encoding="utf-8")))
