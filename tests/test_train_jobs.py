"""Training jobs: where each runs (the loop's process, its own, accelerate launch), what is handed
to trl (captured, not run), the trainer's arguments before the model loads, the weights' dtype,
over-long rows dropped rather than truncated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from st_eval.errors import InputError, StEvalError
from st_eval.records import Message, Pair
from st_eval.training import jobs
from st_eval.training.config import GRPOSettings, LoraSettings, TrainConfig
from st_eval.training.jobs import TrainJob, job_command, launch_mode

PAIRS = [Pair(str(i), [Message("user", f"Name prime number {i}.")], "7", "8", label="A") for i in range(2)]
ACCELERATE = TrainConfig(launcher="accelerate", accelerate_config="/cfg/ddp.yaml")


class Launched:
    """Stands in for ``subprocess.run``: records the command and writes the job's training.json."""

    def __init__(self, returncode: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.returncode = returncode

    def __call__(self, command, **_):
        self.commands.append(command)
        job = json.loads(Path(command[-1]).read_text())
        output = Path(job["output"])
        output.mkdir(parents=True, exist_ok=True)
        (output / "training.json").write_text(json.dumps({"kind": job["kind"], "steps": 1}))
        return type("Done", (), {"returncode": self.returncode})()


def test_a_job_round_trips_through_its_file():
    job = TrainJob("grpo", "m", "d.jsonl", "out", TrainConfig(lora=LoraSettings(r=8)), seed=3,
                   grpo=GRPOSettings(enabled=True, use_vllm=True, vllm_sleep=True), template="pairwise-v1")
    assert TrainJob.from_json(job.to_json()) == job


def test_where_a_job_runs():
    cpu = TrainConfig()
    assert launch_mode(TrainJob("sft", "m", "d", "o", cpu)) == "inprocess"  # CPU recipes: the loop's process, as before
    vllm = GRPOSettings(enabled=True, use_vllm=True)
    assert launch_mode(TrainJob("grpo", "m", "d", "o", cpu, grpo=vllm)) == "process"  # a colocated vLLM never shares the loop's process
    assert launch_mode(TrainJob("reward", "m", "d", "o", ACCELERATE)) == "accelerate"
    assert job_command(Path("j.json"), cpu) == [sys.executable, "-m", "st_eval.training.jobs", "j.json"]
    assert job_command(Path("j.json"), ACCELERATE, machine_rank=1, main_process_ip="10.1.2.3") == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "/cfg/ddp.yaml",
        "--machine_rank", "1", "--main_process_ip", "10.1.2.3", "-m", "st_eval.training.jobs", "j.json",
    ]


def test_grpo_with_vllm_runs_in_its_own_process(tmp_path, monkeypatch):
    from st_eval.training.grpo import train_grpo

    launched = Launched()
    monkeypatch.setattr(jobs.subprocess, "run", launched)
    settings = GRPOSettings(enabled=True, use_vllm=True, num_generations=2)
    metrics = train_grpo("base", PAIRS, "pairwise-short-v1", tmp_path / "judge-grpo", settings, TrainConfig())
    assert metrics == {"kind": "grpo", "steps": 1}  # read back from the job's training.json
    assert launched.commands == [[sys.executable, "-m", "st_eval.training.jobs", str(tmp_path / "grpo_job.json")]]
    job = TrainJob.from_json((tmp_path / "grpo_job.json").read_text())
    assert (job.kind, job.template, job.grpo, job.output) == ("grpo", "pairwise-short-v1", settings, str(tmp_path / "judge-grpo"))
    rows = [json.loads(line) for line in Path(job.data).read_text().splitlines()]
    assert [(r["pair_id"], r["order"]) for r in rows] == [("0", "given"), ("0", "swapped"), ("1", "given"), ("1", "swapped")]


def test_reward_training_goes_through_accelerate_launch_with_the_launcher(tmp_path, monkeypatch):
    from st_eval.prompt import load_template
    from st_eval.training.reward import train_rating_judge

    launched = Launched()
    monkeypatch.setattr(jobs.subprocess, "run", launched)
    template = load_template("rating-yesno-v1")
    pairs = [(template.render_rating(p, "A"), template.render_rating(p, "B")) for p in PAIRS]
    train_rating_judge("base", pairs, template.choices, tmp_path / "judge", ACCELERATE, seed=2, adapter=tmp_path / "prev")
    assert launched.commands[0][1:6] == ["-m", "accelerate.commands.launch", "--config_file", "/cfg/ddp.yaml", "-m"]
    job = TrainJob.from_json((tmp_path / "reward_job.json").read_text())
    assert (job.kind, job.choices, job.adapter, job.seed) == ("reward", {"Yes": 1.0, "No": 0.0}, str(tmp_path / "prev"), 2)
    rows = [json.loads(line) for line in Path(job.data).read_text().splitlines()]
    assert [(r["chosen"], r["rejected"]) for r in rows] == [tuple(p) for p in pairs]


def test_a_failed_job_stops_the_run_with_one_line(tmp_path, monkeypatch):
    from st_eval.training.jobs import launch

    monkeypatch.setattr(jobs.subprocess, "run", Launched(returncode=3))
    job = TrainJob("sft", "m", "d", str(tmp_path / "judge"), ACCELERATE)
    with pytest.raises(StEvalError, match=r"sft_job.json \(sft\) exited with code 3.*rerun with --resume"):
        launch(job, tmp_path / "sft_job.json")


def test_launched_jobs_are_published_for_worker_machines_in_order(tmp_path, monkeypatch):
    from st_eval.training.jobs import job_queue, launch

    monkeypatch.setattr(jobs.subprocess, "run", Launched())
    with job_queue(tmp_path) as queue:
        for kind in ("sft", "dpo"):
            launch(TrainJob(kind, "m", "d", str(tmp_path / f"judge-{kind}"), ACCELERATE), tmp_path / f"{kind}_job.json")
    records = [json.loads((tmp_path / "jobs" / f"000{i}.json").read_text()) for i in (1, 2)]
    assert [(r["kind"], r["state"], r["attempt"]) for r in records] == [("sft", "done", queue.attempt), ("dpo", "done", queue.attempt)]
    assert json.loads((tmp_path / "jobs" / "run.json").read_text()) == {"attempt": queue.attempt, "state": "ended", "outcome": "finished"}


class _Stop(Exception):
    pass


def _record_order(monkeypatch, config_name: str, loader: str) -> tuple[list[str], dict]:
    """Replace the trl config class and the transformers loader by recorders; the load stops the job."""
    import transformers
    import trl

    order: list[str] = []
    captured: dict = {}

    class Arguments:
        def __init__(self, **kwargs):
            order.append("arguments")
            captured.update(kwargs)
            self.seed = kwargs["seed"]

        @property
        def world_size(self):
            order.append("processes")
            return 1

    def load(*args, **kwargs):
        order.append("load")
        raise _Stop

    monkeypatch.setattr(trl, config_name, Arguments)
    monkeypatch.setattr(getattr(transformers, loader), "from_pretrained", load)
    return order, captured


@pytest.mark.parametrize("kind", ["sft", "dpo", "grpo", "reward"])
def test_the_trainers_arguments_exist_before_the_model_loads(kind, tmp_path, monkeypatch, embedded_model):
    """transformers loads ZeRO-3 / FSDP sharded only once the arguments exist (and the
    distributed state is up); before that, every process would load the whole model."""
    from st_eval.prompt import load_template

    config_name, loader = {
        "sft": ("SFTConfig", "AutoModelForCausalLM"), "dpo": ("DPOConfig", "AutoModelForCausalLM"),
        "grpo": ("GRPOConfig", "AutoModelForCausalLM"), "reward": ("RewardConfig", "AutoModelForSequenceClassification"),
    }[kind]
    order, _ = _record_order(monkeypatch, config_name, loader)
    data = tmp_path / "data.jsonl"
    prompt = [{"role": "user", "content": "Which is prime, 7 or 8?"}]
    answer = [{"role": "assistant", "content": "Final verdict: [[A]]"}]
    if kind == "reward":
        template = load_template("rating-yesno-v1")
        row = {"chosen": template.render_rating(PAIRS[0], "A"), "rejected": template.render_rating(PAIRS[0], "B")}
    elif kind == "grpo":
        from st_eval.training.grpo import grpo_rows

        row = grpo_rows(PAIRS[:1], "pairwise-short-v1")[0]
    else:
        row = {"prompt": prompt, "completion": answer} if kind == "sft" else {"prompt": prompt, "chosen": answer, "rejected": answer}
    data.write_text(json.dumps(row) + "\n")
    job = TrainJob(kind, embedded_model, str(data), str(tmp_path / "judge"), TrainConfig(), grpo=GRPOSettings(enabled=True),
                   template="pairwise-short-v1", choices={"Yes": 1.0, "No": 0.0})
    from st_eval.training.config import DPOSettings

    job.dpo = DPOSettings(enabled=True)
    with pytest.raises(_Stop):
        jobs.run_job(job)
    assert order == ["arguments", "processes", "load"]


def test_grpo_hands_trl_a_vllm_sized_by_the_recipe_and_micro_batches_of_one_group(tmp_path, monkeypatch, embedded_model):
    """The colocated vLLM gets the longest prompt plus the judgment budget as its context (trl's
    default would be the model's whole window) and the recipe's share of the GPU; the trainer
    steps through each process's generation batch one prompt's group at a time."""
    from transformers import AutoTokenizer

    from st_eval.training.grpo import grpo_rows, longest_prompt

    _, captured = _record_order(monkeypatch, "GRPOConfig", "AutoModelForCausalLM")
    rows = grpo_rows(PAIRS, "pairwise-short-v1")
    data = tmp_path / "grpo.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = GRPOSettings(
        enabled=True, use_vllm=True, vllm_gpu_memory_utilization=0.25, vllm_sleep=True, num_generations=3, pairs_per_step=2,
        max_completion_length=100,
    )
    job = TrainJob("grpo", embedded_model, str(data), str(tmp_path / "judge"), TrainConfig(), grpo=settings, template="pairwise-short-v1")
    with pytest.raises(_Stop):
        jobs.run_job(job)
    longest = longest_prompt(AutoTokenizer.from_pretrained(embedded_model), rows)
    assert 50 < longest < 1000  # the judge prompt as the model sees it, chat template included
    assert captured["vllm_max_model_length"] == longest + 100
    assert (captured["vllm_gpu_memory_utilization"], captured["vllm_enable_sleep_mode"], captured["vllm_mode"]) == (0.25, True, "colocate")
    assert (captured["per_device_train_batch_size"], captured["gradient_accumulation_steps"], captured["steps_per_generation"]) == (3, 4, 4)
    assert captured["shuffle_dataset"] is False


def test_full_fine_tuning_in_bf16_keeps_float32_weights_unless_fsdp_or_deepspeed_does(monkeypatch):
    import torch

    from st_eval.training.sft import weights_dtype

    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    assert weights_dtype(TrainConfig(method="full", bf16=True)) == torch.float32  # bf16 autocast, float32 master weights
    assert weights_dtype(TrainConfig(method="lora", bf16=True)) == torch.bfloat16  # frozen base; peft keeps adapters float32
    assert weights_dtype(TrainConfig(method="full", bf16=False)) == torch.float32
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # DeepSpeed keeps float32 masters in its optimizer
    assert weights_dtype(TrainConfig(method="full", bf16=True)) == torch.bfloat16


def test_rows_longer_than_max_length_are_dropped_and_counted_not_truncated(embedded_model):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from st_eval.training.sft import drop_too_long

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    prompt = [{"role": "user", "content": "Judge these."}]
    short = {"prompt": prompt, "completion": [{"role": "assistant", "content": "Fine.\nFinal verdict: [[A]]"}]}
    long = {"prompt": prompt, "completion": [{"role": "assistant", "content": "word " * 400 + "\nFinal verdict: [[B]]"}]}
    kept, dropped = drop_too_long(Dataset.from_list([short, long, short]), tokenizer, 200, "sft_data.jsonl")
    assert (len(kept), dropped) == (2, 1)
    assert all(row["completion"][0]["content"].endswith("[[A]]") for row in kept)
    with pytest.raises(InputError, match=r"sft_data.jsonl: every row is longer than train.max_length \(10 tokens\)"):
        drop_too_long(Dataset.from_list([short]), tokenizer, 10, "sft_data.jsonl")
