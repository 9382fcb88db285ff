"""GPU checks of st-eval's CUDA paths on a tiny random model shaped like the embedded judge.

    python scripts/gpu_checks.py --make-tiny DIR    # here: a 2-layer random model with the judge's tokenizer
    python scripts/gpu_checks.py --tiny DIR         # on a GPU machine (writes $OUT/gpu_checks.json)

Checks: the hf engine on CUDA (bf16, static-cache generation; greedy outputs independent of the
batch), rating log-probabilities batched vs alone, the rating judge and the pairwise judge with
the verdict step, and rating-judge training (trl RewardTrainer, bf16) whose merged judge loads
back on the GPU. A tiny model because the real weights need not travel to check these paths;
results of a run are in benchmarks/results/gpu-checks-*.json.
"""

import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.getcwd())
parser = argparse.ArgumentParser()
parser.add_argument("--tiny", default=".gpu/tiny")
parser.add_argument("--make-tiny")
args = parser.parse_args()
if args.make_tiny:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from st_eval.embedded import embedded_model_path

    source = embedded_model_path()
    config = AutoConfig.from_pretrained(source)
    config.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(args.make_tiny)
    AutoTokenizer.from_pretrained(source).save_pretrained(args.make_tiny)
    sys.exit(0)
out_dir = os.environ.get("OUT", "/tmp/out")
results = {}


def check(name):
    def wrap(fn):
        start = time.time()
        try:
            results[name] = {"ok": True, "detail": fn(), "seconds": round(time.time() - start, 1)}
        except Exception as exc:  # report every check, whatever fails
            results[name] = {"ok": False, "error": repr(exc), "trace": traceback.format_exc()[-2000:]}
        print(name, json.dumps(results[name])[:600], flush=True)
        return fn

    return wrap


import torch  # noqa: E402

from st_eval import Judge, JudgeConfig, Message, Pair, make_engine  # noqa: E402
from st_eval.engines import SamplingConfig  # noqa: E402

TINY = args.tiny
results["device"] = {"cuda": torch.cuda.is_available(), "name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "torch": torch.__version__}
engine = make_engine("hf", TINY)
prompts = [[{"role": "user", "content": f"Say the number {i} " * (1 + i)}] for i in range(6)]


@check("engine_on_cuda")
def _():
    return {"device": str(engine._model.device), "dtype": str(engine._model.dtype), "static_cache": engine.static_cache, "batch": engine.batch_size}


@check("greedy_generation_static_cache")
def _():
    out = engine.generate(prompts, n=2, sampling=SamplingConfig(max_new_tokens=12))
    assert len(out) == 6 and all(len(o) == 2 and o[0] == o[1] for o in out)
    again = engine.generate(prompts[:3], n=1, sampling=SamplingConfig(max_new_tokens=12))
    assert [o[0] for o in again] == [o[0] for o in out[:3]], "greedy output depends on the batch"
    return [o[0][:40] for o in out[:2]]


@check("sampled_generation")
def _():
    out = engine.generate(prompts[:2], n=3, sampling=SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=1))
    assert all(len(o) == 3 for o in out)
    return len({t for o in out for t in o})


@check("next_token_logprobs_batched_equals_alone")
def _():
    together = engine.next_token_logprobs(prompts, 20)
    alone = [engine.next_token_logprobs([p], 20)[0] for p in prompts]
    worst = 0.0
    for a, b in zip(together, alone):
        assert len(a) == 20
        for token in set(a) & set(b):
            worst = max(worst, abs(a[token] - b[token]))
    assert worst < 0.1, worst  # bf16
    return {"max_abs_diff": worst}


PAIRS = [
    Pair("1", [Message("user", "What is 2 + 2?")], "4", "The sky is blue.", label="A"),
    Pair("2", [Message("user", "Name a colour.")], "Seven.", "Blue.", label="B"),
]


@check("rating_judge")
def _():
    judgments = Judge(engine, JudgeConfig(template="rating-yesno-v1", order="both")).judge(PAIRS)
    return [{"verdict": j.verdict, "ratings": j.ratings, "consistent": j.consistent} for j in judgments]


@check("pairwise_judge_with_verdict_step")
def _():
    judge = Judge(engine, JudgeConfig(template="pairwise-short-v1", order="both", verdict_step=True, sampling=SamplingConfig(max_new_tokens=16)))
    judgments = judge.judge(PAIRS)
    assert all(len(j.orders) == 2 for j in judgments)
    return [{"verdict": j.verdict, "forced": [r.forced for r in j.orders], "invalid": [r.invalid for r in j.orders]} for j in judgments]


@check("rating_training_bf16")
def _():
    from st_eval.prompt import load_template
    from st_eval.training.config import LoraSettings, TrainConfig
    from st_eval.training.reward import train_rating_judge

    template = load_template("rating-yesno-v1")
    rows = [(template.render_rating(p, p.label), template.render_rating(p, "B" if p.label == "A" else "A")) for p in PAIRS] * 4
    config = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3, max_length=512, bf16=True, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    metrics = train_rating_judge(TINY, rows, template.choices, __import__("pathlib").Path("/tmp/trained"), config)
    trained = make_engine("hf", "/tmp/trained")
    tops = trained.next_token_logprobs([r[0] for r in rows[:2]], 20)
    return {"steps": metrics["steps"], "losses": metrics["losses"], "device_after": str(trained._model.device), "top_tokens": [list(t)[:3] for t in tops]}


os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "gpu_checks.json"), "w") as handle:
    json.dump(results, handle, indent=2)
print("ALL OK" if all(v.get("ok", True) for v in results.values()) else "SOME FAILED")
