"""``st-eval train-worker``: a worker machine's side of a multi-node run.

Each iteration launches several multi-node jobs one after another (SFT, then DPO or GRPO), and
each needs every machine to join its rendezvous. The main machine publishes each job in the
run's job queue before it launches it (:class:`st_eval.training.jobs.JobQueue`); the worker runs
the same job with its own ``--machine_rank``, then waits for the next one, and exits when the
run ends. The run folder must be on a file system every machine sees at the same path.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from st_eval.training.artifacts import read_json
from st_eval.training.config import TrainConfig
from st_eval.training.jobs import job_command


def work(
    run_dir: Path, machine_rank: int, *, main_process_ip: str | None = None, poll_seconds: float = 5.0,
    say: Callable[[str], None] = print,
) -> int:
    """Join every job the run's current attempt publishes, in order; return 0 when the run ends,
    or the exit code of the first job that failed here.

    A worker started before the main machine (or before a resumed run starts) waits for an
    attempt that is running; jobs of earlier attempts and jobs already finished are skipped."""
    queue = Path(run_dir) / "jobs"
    attempt = _running_attempt(queue, poll_seconds, say)
    say(f"worker (machine rank {machine_rank}) joined run attempt {attempt[:8]} in {run_dir}")
    index = 1
    while True:
        state = read_json(queue / "run.json")
        record_path = queue / f"{index:04d}.json"
        if record_path.exists():
            record = read_json(record_path)
            index += 1
            if record["attempt"] != attempt or record["state"] != "running":
                continue
            train = TrainConfig(launcher="accelerate", accelerate_config=record["accelerate_config"])
            say(f"job {record['index']} ({record['kind']}): {record['job']}")
            code = subprocess.run(
                job_command(Path(record["job"]), train, machine_rank=machine_rank, main_process_ip=main_process_ip)
            ).returncode
            if code != 0:
                say(f"job {record['index']} ({record['kind']}) exited with code {code} on this machine")
                return code
            continue
        if state["attempt"] != attempt or state["state"] == "ended":
            say(f"run ended ({state.get('outcome', 'a new attempt started')}); {index - 1} job(s) seen")
            return 0
        time.sleep(poll_seconds)


def _running_attempt(queue: Path, poll_seconds: float, say: Callable[[str], None]) -> str:
    """The attempt id of a run that is going, waiting for the main machine to start one."""
    announced = False
    while True:
        run = queue / "run.json"
        if run.exists():
            state = read_json(run)
            if state["state"] == "running":
                return state["attempt"]
        if not announced:
            say(f"waiting for the main machine to start the run in {queue.parent}")
            announced = True
        time.sleep(poll_seconds)


__all__ = ["work"]
