"""lm-eval and Inspect doors (stand-in engines, no model): the ``st-judge`` budget rule, the
invalid metrics, and option errors that end in one line naming the setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from stub_judges import NO_VERDICT, ScriptedEngine

from st_eval.errors import InputError
from st_eval.harness import lm_eval_hooks

ROW = {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away.", "subset": "llmbar-natural", "id": "r1"}


@pytest.fixture()
def rb_file(tmp_path):
    path = tmp_path / "rb.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    return path


def st_judge(monkeypatch, engine: ScriptedEngine, **model_args):
    from st_eval.harness import lm_eval_model

    monkeypatch.setattr(lm_eval_model, "make_engine", lambda *a, **k: engine)
    return lm_eval_model.StJudgeLM(template="pairwise-v1", **model_args)


@pytest.mark.parametrize(("model_args", "budget"), [({"max_new_tokens": "32"}, 32), ({}, 512)], ids=["model-arg-wins", "task-default"])
def test_an_explicit_model_argument_wins_over_the_tasks_max_gen_toks(monkeypatch, rb_file, model_args, budget):
    engine = ScriptedEngine("Final verdict: [[A]]")
    lm = st_judge(monkeypatch, engine, **model_args)
    doc = lm_eval_hooks.rewardbench_dataset(data_files=str(rb_file))["test"][0]
    requests = [SimpleNamespace(args=(doc["judge_user"], {"max_gen_toks": 512, "until": []})),
                SimpleNamespace(args=("Not a judge prompt.", {"max_gen_toks": 512, "until": []}))]
    answers = lm.generate_until(requests, disable_tqdm=True)
    assert engine.budgets == [budget, budget]  # the pair's judgment and the plain prompt alike
    assert "Final verdict: [[" in answers[0] and "forced 0; shortened no" in answers[0]


def test_lm_eval_tasks_report_invalid_forced_and_shortened(rb_file, caplog):
    doc = lm_eval_hooks.rewardbench_dataset(data_files=str(rb_file))["test"][0]
    judged = "Why.\n\n(st-judge: orders given, swapped; votes A: 2; forced 1; shortened yes)\nFinal verdict: [[A]]"
    result = lm_eval_hooks.process_rewardbench(doc, [judged])
    assert (result["invalid"], result["forced"], result["shortened"]) == (0.0, 1.0, 1.0)
    assert lm_eval_hooks.process_rewardbench(doc, [NO_VERDICT])["invalid"] == 1.0
    with caplog.at_level("WARNING"):
        assert lm_eval_hooks.invalid_share([1.0, 1.0, 0.0]) == pytest.approx(2 / 3)
    assert "66.7% of documents had no parseable verdict" in caplog.text
    tasks = Path(lm_eval_hooks.__file__).parent / "lm_eval_tasks"
    for name in ("rewardbench_pairwise", "rewardbench_llmbar", "mtbench_agreement", "rewardbench2"):
        assert "metric: invalid" in (tasks / f"{name}.yaml").read_text(encoding="utf-8")


def test_lm_eval_option_errors_name_the_setting_and_print_one_line(monkeypatch, rb_file, capsys):
    with pytest.raises(InputError, match=r"--metadata 'template': unknown judge template 'pairwise-v2'"):
        lm_eval_hooks.rewardbench_dataset(data_files=str(rb_file), template="pairwise-v2")
    assert getattr(sys.excepthook, "st_eval_one_line", False)  # uncaught, it prints one line
    try:
        raise InputError("--metadata 'template': unknown judge template 'pairwise-v2'")
    except InputError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert capsys.readouterr().err == "error: --metadata 'template': unknown judge template 'pairwise-v2'\n"


def test_offline_hub_messages_name_each_tools_own_option(monkeypatch):
    import datasets

    def offline(*_a, **_k):
        raise ConnectionError("Couldn't reach 'allenai/reward-bench' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError) as lm_eval_error:
        lm_eval_hooks.rewardbench_dataset()
    assert """--metadata '{"data_files": "path/to/files"}'""" in str(lm_eval_error.value) and "--data-files" not in str(lm_eval_error.value)
    from st_eval.inspect_plugin.options import OptionError
    from st_eval.inspect_plugin.tasks import rewardbench

    with pytest.raises(OptionError) as inspect_error:
        rewardbench()
    assert "-T data_files=PATH" in inspect_error.value.message and "--data-files" not in inspect_error.value.message
    from st_eval.benchmarks.rewardbench import load_rewardbench

    with pytest.raises(InputError, match="with --data-files"):  # st-eval's own command line
        load_rewardbench()


def test_inspect_option_errors_are_one_line_prerequisite_errors(rb_file):
    from inspect_ai._util.error import PrerequisiteError

    from st_eval.inspect_plugin.scorer import pairwise_judge
    from st_eval.inspect_plugin.tasks import rewardbench

    for call, message in (
        (lambda: rewardbench(data_files=str(rb_file), template="pairwise-v2"), "-T template: unknown judge template 'pairwise-v2'"),
        (lambda: rewardbench(data_files=str(rb_file), mode="fast"), "-T mode must be one of"),
        (lambda: pairwise_judge(template="pairwise-v2"), "-S template: unknown judge template 'pairwise-v2'"),
    ):
        with pytest.raises(PrerequisiteError) as error:
            call()
        assert isinstance(error.value, InputError) and error.value.message.startswith(message)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["lm_eval", "--model", "dummy", "--tasks", "rewardbench_pairwise", "--metadata", '{"template": "pairwise-v2", "data_files": "RB"}'],
         "error: --metadata 'template': unknown judge template 'pairwise-v2'"),
        (["inspect", "eval", "st_eval/rewardbench", "--model", "mockllm/model", "-T", "template=pairwise-v2", "-T", "data_files=RB", "--display", "plain"],
         "-T template: unknown judge template 'pairwise-v2'"),
    ],
    ids=["lm_eval", "inspect"],
)
def test_the_real_frameworks_end_a_template_typo_in_one_message(tmp_path, rb_file, command, expected):
    """The frameworks' own command lines (no model loads: lm_eval's dummy model, Inspect's mock)."""
    command = [sys.executable, "-m", command[0].replace("inspect", "inspect_ai"), *[a.replace("RB", str(rb_file)) for a in command[1:]]]
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "400", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and expected in " ".join(output.split())
    assert "Traceback" not in output


def test_inspects_response_cache_is_keyed_on_the_judges_identity(monkeypatch):
    """Inspect's cache key holds the model name, config, input and base URL, not -M options: the
    st_judge provider puts the engine identity (weights fingerprint, dtype) in the base URL."""
    from st_eval.inspect_plugin import provider

    class Identified(ScriptedEngine):
        @property
        def identity(self) -> str:
            return f"stub:{self.model}@{self.revision}"

    def build(name, model, **options):
        engine = Identified(NO_VERDICT, model=model)
        engine.revision = options.get("dtype", "float32")
        return engine

    monkeypatch.setattr(provider, "make_engine", build)
    float32 = provider.StJudgeAPI("cache-key-judge", dtype="float32")
    bfloat16 = provider.StJudgeAPI("cache-key-judge", dtype="bfloat16")
    assert float32.base_url == "st-judge://stub:cache-key-judge@float32"
    assert bfloat16.base_url != float32.base_url
