"""``st-eval train-worker``: a second machine joins every multi-node job of a run, in order.

Here both "machines" are this one: the main side launches rank 0 of each job through
``accelerate launch`` (2 machines x 1 process), the worker command launches rank 1, and the two
ranks train together over gloo on the CPU. Two tiny jobs in a row, SFT then DPO, as an iteration
of the 70B recipe runs them: with one worker launch per job (the old instructions), the DPO
rendezvous would wait forever.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from st_eval.training.config import DPOSettings, LoraSettings, TrainConfig
from st_eval.training.jobs import TrainJob, job_queue, launch

pytestmark = pytest.mark.slow

PROMPT = [{"role": "user", "content": "Which is prime, 7 or 8?"}]


def _answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, embedded_model) -> str:
    """A 2-layer random model with the embedded judge's tokenizer: the jobs' plumbing, not learning, is under test."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny")
    config = AutoConfig.from_pretrained(embedded_model)
    config.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_model).save_pretrained(folder)
    return str(folder)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_worker_machine_joins_every_job_of_the_run_in_order(tmp_path, tiny_model):
    config = tmp_path / "two-machines.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nmixed_precision: 'no'\nnum_machines: 2\n"
        f"num_processes: 2\nmachine_rank: 0\nmain_process_ip: 127.0.0.1\nmain_process_port: {_free_port()}\n"
        "rdzv_backend: static\nsame_network: true\nuse_cpu: false\n"
    )
    train = TrainConfig(
        epochs=1, batch_size=1, max_length=256, learning_rate=1e-3, lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        launcher="accelerate", accelerate_config=str(config),
    )
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps({"prompt": PROMPT, "completion": _answer(f"7.\nFinal verdict: [[{v}]]")}) + "\n" for v in "AB"))
    (tmp_path / "dpo.jsonl").write_text(
        "".join(json.dumps({"prompt": PROMPT, "chosen": _answer("Final verdict: [[A]]"), "rejected": _answer(t)}) + "\n" for t in ("[[B]]", "8"))
    )
    run_dir = tmp_path / "run"
    worker = subprocess.Popen(
        [sys.executable, "-m", "st_eval.cli", "train-worker", "--run-dir", str(run_dir), "--machine-rank", "1", "--poll-seconds", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with job_queue(run_dir):
            sft = launch(TrainJob("sft", tiny_model, str(tmp_path / "sft.jsonl"), str(run_dir / "judge"), train, seed=1), run_dir / "sft_job.json")
            dpo = launch(
                TrainJob("dpo", str(run_dir / "judge"), str(tmp_path / "dpo.jsonl"), str(run_dir / "judge-dpo"), train, DPOSettings(enabled=True), 1),
                run_dir / "dpo_job.json",
            )
        output, _ = worker.communicate(timeout=600)
    finally:
        worker.kill()
    assert worker.returncode == 0, output[-3000:]
    # two processes trained each job: one batch of one row each, so one step over both rows
    assert (sft["kind"], sft["examples"], sft["steps"]) == ("sft", 2, 1)
    assert (dpo["kind"], dpo["examples"], dpo["steps"]) == ("dpo", 2, 1)
    assert (run_dir / "judge-dpo" / "config.json").exists()
    assert "job 1 (sft)" in output and "job 2 (dpo)" in output and "run ended (finished); 2 job(s) seen" in output
