"""Checkpoints within a training stage: a killed training resumes from its last checkpoint, and
only the job that wrote a checkpoint uses it."""

from __future__ import annotations

import json

import pytest

from st_eval import Message, Pair
from st_eval.errors import InputError
from st_eval.training.checkpoints import FINGERPRINT_FILE, claim_work_dir, job_fingerprint, last_checkpoint
from st_eval.training.config import TrainConfig, recipe_from_dict
from st_eval.training.jobs import TrainJob


def _job(tmp_path, data: str = '{"chosen": 1}\n', **train) -> TrainJob:
    path = tmp_path / "data.jsonl"
    path.write_text(data)
    return TrainJob("reward", "seed-model", str(path), str(tmp_path / "judge"), TrainConfig(**train))


def _checkpoint(work, step: int, complete: bool = True) -> None:
    folder = work / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (folder / "trainer_state.json").write_text("{}")


def test_the_newest_complete_checkpoint_of_the_same_job_is_the_resume_point(tmp_path):
    work = tmp_path / "judge-trainer"
    job = _job(tmp_path)
    claim_work_dir(work, job)
    assert last_checkpoint(work) is None
    _checkpoint(work, 20)
    _checkpoint(work, 100)
    _checkpoint(work, 120, complete=False)  # killed while saving: no trainer state yet
    claim_work_dir(work, job)  # the same job again: its checkpoints stay
    assert last_checkpoint(work) == str(work / "checkpoint-100")


@pytest.mark.parametrize(
    "change", [{"data": '{"chosen": 2}\n'}, {"learning_rate": 1e-3}], ids=["other data bytes", "other settings"],
)
def test_checkpoints_of_another_job_are_cleared_not_resumed(tmp_path, change):
    work = tmp_path / "judge-trainer"
    claim_work_dir(work, _job(tmp_path))
    _checkpoint(work, 50)
    other = _job(tmp_path, **change)
    claim_work_dir(work, other)
    assert last_checkpoint(work) is None and not (work / "checkpoint-50").exists()
    assert json.loads((work / FINGERPRINT_FILE).read_text())["fingerprint"] == job_fingerprint(other)


def test_a_work_folder_without_a_fingerprint_is_not_trusted(tmp_path):
    """Checkpoints left by a version that did not mark its work folder are not resumed."""
    work = tmp_path / "judge-trainer"
    _checkpoint(work, 10)
    claim_work_dir(work, _job(tmp_path))
    assert last_checkpoint(work) is None


def test_checkpoint_minutes_is_checked():
    with pytest.raises(InputError, match="train.checkpoint_minutes"):
        recipe_from_dict({"name": "x", "train": {"checkpoint_minutes": -1}}, where="recipe.yaml")
    assert recipe_from_dict({"name": "x"}, where="recipe.yaml").train.checkpoint_minutes == 10.0


PAIRS = [
    Pair("capital", [Message("user", "What is the capital of France?")], "Paris is the capital of France.", "Bananas are rich in potassium.", label="A"),
    Pair("haiku", [Message("user", "Write a haiku about snow.")], "Spain's GDP grew in 2019.", "Soft flakes drift down\nsilent fields", label="B"),
    Pair("sum", [Message("user", "What is 2 + 2?")], "4", "The sky is blue.", label="A"),
]


@pytest.mark.slow
def test_a_killed_rating_training_resumes_from_its_checkpoint_and_ends_where_an_unbroken_run_ends(tmp_path, embedded_model, monkeypatch, capsys):
    """A real RewardTrainer run on the embedded judge, killed right after its third step's
    checkpoint, then rerun: it continues at step 3 (its first three losses are the killed run's)
    and its adapter equals an unbroken run's. Float32 (the same numbers on any CPU); the two
    adapters went through the same steps in the same order, so they agree to rounding. The two
    runs share one process, so their equal first losses also show that a job's seed fixes the
    adapter's random initialization (drawn before the trainer seeds)."""
    from safetensors.torch import load_file

    from st_eval.prompt import load_template
    from st_eval.training import checkpoints
    from st_eval.training.config import LoraSettings
    from st_eval.training.reward import train_rating_judge

    template = load_template("rating-yesno-v1")
    rows = [(template.render_rating(p, p.label), template.render_rating(p, "B" if p.label == "A" else "A")) for p in PAIRS] * 2
    config = TrainConfig(
        epochs=1, batch_size=1, learning_rate=3e-3, max_length=512, lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        dtype="float32", checkpoint_minutes=1e-9,  # a checkpoint after every step
    )
    unbroken = train_rating_judge(embedded_model, rows, template.choices, tmp_path / "unbroken" / "judge", config)
    assert unbroken["steps"] == 6

    real = checkpoints.timed_checkpoints

    def killed_after_step_3(minutes):
        callback = real(minutes)
        saved = callback.on_save

        def on_save(args, state, control, **kwargs):
            saved(args, state, control, **kwargs)
            if state.global_step == 3:
                raise KeyboardInterrupt("killed after the checkpoint of step 3")

        callback.on_save = on_save
        return callback

    out = tmp_path / "resumed" / "judge"
    monkeypatch.setattr(checkpoints, "timed_checkpoints", killed_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_rating_judge(embedded_model, rows, template.choices, out, config)
    assert last_checkpoint(out.parent / "judge-trainer").endswith("checkpoint-3") and not out.exists()
    monkeypatch.setattr(checkpoints, "timed_checkpoints", real)
    capsys.readouterr()
    resumed = train_rating_judge(embedded_model, rows, template.choices, out, config)
    assert "training (reward): continuing from" in capsys.readouterr().err

    assert resumed["steps"] == 6 and len(resumed["losses"]) == 6 and resumed["resumed_from_step"] == 3
    assert unbroken["resumed_from_step"] is None
    assert resumed["losses"][:3] == unbroken["losses"][:3]
    assert not (out.parent / "judge-trainer").exists()  # the finished stage leaves no checkpoints behind
    a = load_file(str(tmp_path / "unbroken" / "judge" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        # same float32 steps; a resumed run reloads the optimizer state from disk (exact), so any
        # difference is summation order: far below 1e-3 of the tensor's norm on any x86-64 CPU
        assert (a[name] - b[name]).norm() <= 1e-3 * a[name].norm() + 1e-7, name
