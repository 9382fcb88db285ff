"""Judge fine-tuning speed, side by side in one run: examples/s and loss on the same data.

Each row runs one of st-eval's training stages in its own process, on the same examples, in the
same order (same seed), with the same settings, so the rows' per-step losses must agree and the
table says so. ``--kind sft`` (pairwise judges): ``st_eval.training.sft.run_job``, trl's
SFTTrainer, LoRA, loss on the judgment tokens. Rows:

  padded        trl's SFTTrainer as it comes: padded batches, and on CPU its output head scores
                every position (how st-eval trained before st_eval.training.cpu_speed)
  padding-free  each batch's sequences end to end in one row, each attending only to itself
  st-eval       padding-free, and the output head on the loss's positions only (the default)

``--kind reward`` (rating judges): ``st_eval.training.reward.train_rating_judge``, trl's
RewardTrainer on the judge's verdict log-odds. Rows: ``padded`` (trl's padded preference
batches) and ``st-eval`` (chosen and rejected sequences end to end in one row, the reward read
at each sequence's end).

A row may carry a dtype, ``st-eval:bfloat16`` (the recipe field ``train.dtype``; without one,
``auto``: bfloat16 on a CPU with AVX512-BF16 or AMX, float32 elsewhere); each row reports the
dtype it trained in. ``--rows st-eval:float32,st-eval:bfloat16 --baseline st-eval:float32``
measures how far bfloat16's per-step losses are from float32's.

Data: a file the self-taught loop wrote: for sft ``RUN/iter-01/sft_data.jsonl`` (judge prompt ->
kept judgment, conversational prompt/completion rows), for reward ``RUN/iter-01/preferences.jsonl``
(chosen and rejected rating prompts). Beside each row: the arithmetic bound,
the seconds this machine's measured matrix-multiply rate in the row's dtype needs for the pass's
FLOPs (benchmarks/limits.py), and the share of it reached.

    python benchmarks/finetune.py --data runs/smollm2-cpu-grpo/iter-01/sft_data.jsonl --examples 32 --threads 2
    python benchmarks/finetune.py --kind reward --data runs/smollm2-cpu/iter-01/preferences.jsonl --examples 32 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = {"sft": "padded,padding-free,st-eval", "reward": "padded,st-eval"}
DATA = {"sft": "RUN/iter-01/sft_data.jsonl", "reward": "RUN/iter-01/preferences.jsonl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=sorted(ROWS), default="sft", help="the stage: SFT (pairwise judges) or reward (rating judges)")
    parser.add_argument("--data", type=Path, help=f"a training run's rows ({DATA['sft']} or {DATA['reward']})")
    parser.add_argument("--model", default=None, help="model to fine-tune (default: the embedded SmolLM2-135M judge)")
    parser.add_argument("--template", default="rating-yesno-v1", help="reward: the rating template whose choices are trained")
    parser.add_argument("--examples", type=int, default=0, help="first N rows of --data (0 = all)")
    parser.add_argument("--rows", default=None, help=f"comma-separated rows (default: {ROWS})")
    parser.add_argument("--baseline", default="padded", help="row the others are compared with")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per row (default: torch's)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "finetune.json")
    parser.add_argument("--resume", action="store_true", help="keep the finished rows of an earlier run with --out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(json.loads(args.spec.read_text()))
        return

    from tables import write_outputs

    from st_eval.embedded import resolve_model
    from st_eval.jsonl import write_json

    if args.data is None:
        parser.error(f"--data is required (a file a training run wrote: {DATA[args.kind]})")
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (a file a training run wrote: {DATA[args.kind]})")
    lines = [line for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = lines[: args.examples] if args.examples else lines
    spec = {
        "kind": args.kind,
        **({"template": args.template} if args.kind == "reward" else {}),
        "model": resolve_model(args.model),
        "data": str(args.data),
        "data_sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16],
        "examples": len(lines),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "max_length": args.max_length,
        "lora_r": args.lora_r,
        "threads": args.threads,
    }
    previous = load_previous(args.out, spec) if args.resume else {}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / args.data.name
        subset.write_text("\n".join(lines) + "\n", encoding="utf-8")
        spec["bound"] = arithmetic_bound(spec, lines)
        for row in (args.rows or ROWS[args.kind]).split(","):
            if previous.get(row, {}).get("status") == "ok":
                results.append(previous[row])
                continue
            print(f"running {row} ...", file=sys.stderr, flush=True)
            results.append(run_row({**spec, "row": row, "subset": str(subset), "work": str(Path(tmp) / row)}, Path(tmp)))
            write_json(args.out, summarize(results, spec, args.baseline))  # finished rows survive a crash
    report = summarize(results, spec, args.baseline)
    write_outputs(args.out, report, markdown(report))


def arithmetic_bound(spec: dict, lines: list[str]) -> dict:
    """This machine's float32 and bfloat16 rates (measured with the rows' thread count) and the
    seconds the pass's FLOPs need at each: sequence and completion lengths from the model's chat template."""
    from limits import limits_dict, measure_machine, model_shape_of, training_bound_s
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    lengths, completions = [], []
    for line in lines:
        row = json.loads(line)
        if spec["kind"] == "reward":  # two rating prompts; the loss reads one reward each, no output head
            for side in ("chosen", "rejected"):
                ids = tokenizer.apply_chat_template(row[side], add_generation_prompt=True, tokenize=True, return_dict=False)
                lengths.append(min(len(ids), spec["max_length"]))
                completions.append(0)
            continue
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
        whole = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
        lengths.append(min(len(whole), spec["max_length"]))
        completions.append(max(0, lengths[-1] - len(prompt)))
    shape = model_shape_of(spec["model"])
    machine = measure_machine(spec["threads"], shape=shape)
    return {
        "machine": limits_dict(machine),
        "tokens": sum(lengths),
        "completion_tokens": sum(completions),
        "bound_s": round(training_bound_s(shape, machine, lengths, completions), 1),
        "bf16_bound_s": round(training_bound_s(shape, machine, lengths, completions, dtype="bfloat16"), 1),
    }


def run_row(spec: dict, tmp: Path) -> dict:
    """One row in a fresh process (its own peak memory); a failed row is reported as n/a."""
    path = tmp / f"{spec['row']}.spec.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, __file__, "--worker", spec["row"], "--spec", str(path)], capture_output=True, text=True)
    result = Path(spec["work"]) / "result.json"
    if done.returncode != 0 or not result.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        killed = " (killed: out of memory?)" if done.returncode == -9 else ""
        return {"row": spec["row"], "status": f"n/a (exit {done.returncode}{killed}: {last[:200]})"}
    return json.loads(result.read_text())


def run_worker(spec: dict) -> None:
    import contextlib

    import torch

    from st_eval.training import sft
    from st_eval.training.config import LoraSettings, TrainConfig
    from st_eval.training.jobs import TrainJob
    from st_eval.training.sft import run_job, trains_in_bfloat16

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    name, _, dtype = spec["row"].partition(":")
    if name not in ROWS[spec["kind"]].split(","):
        raise SystemExit(f"unknown row {spec['row']!r} (rows: {ROWS[spec['kind']]}, each with an optional :float32 or :bfloat16)")
    if name != "st-eval":
        sft.loss_positions_only = contextlib.nullcontext  # trl's own head: every position scored on CPU
    train = TrainConfig(
        method="lora", epochs=1, learning_rate=spec["learning_rate"], batch_size=spec["batch_size"], max_length=spec["max_length"],
        lora=LoraSettings(r=spec["lora_r"], alpha=2 * spec["lora_r"], dropout=0.0), padding_free=name != "padded", dtype=dtype or "auto",
    )
    work = Path(spec["work"])
    if spec["kind"] == "reward":
        from st_eval.jsonl import read_jsonl
        from st_eval.prompt import load_template
        from st_eval.training.reward import train_rating_judge

        rows = read_jsonl(spec["subset"])
        choices = load_template(spec["template"]).choices
        metrics = train_rating_judge(spec["model"], [(r["chosen"], r["rejected"]) for r in rows], choices, work / "judge", train, seed=0)
    else:
        job = TrainJob(kind="sft", base_model=spec["model"], data=spec["subset"], output=str(work / "judge"), train=train, seed=0)
        metrics = run_job(job)
    result = {
        "row": spec["row"],
        "status": "ok",
        "dtype": "bfloat16" if trains_in_bfloat16(train) else "float32",
        "threads": torch.get_num_threads(),
        "examples": metrics["examples"],
        "steps": metrics["steps"],
        "train_s": metrics["train_seconds"],
        "examples_per_s": metrics["examples_per_second"],
        "final_loss": metrics["losses"][-1],
        "mean_loss": metrics["train_loss"],
        "losses": metrics["losses"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    (work / "result.json").write_text(json.dumps(result), encoding="utf-8")


def load_previous(path: Path, spec: dict) -> dict[str, dict]:
    """Rows of an earlier run with the same data and settings (for --resume)."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    same = {k: old.get("settings", {}).get(k) for k in spec} == spec
    return {r["row"]: r for r in old["rows"]} if same else {}


def summarize(results: list[dict], spec: dict, baseline: str) -> dict:
    base = next((r for r in results if r["row"] == baseline and r["status"] == "ok"), None)
    bound = spec.get("bound") or {}
    for r in results:
        if r["status"] != "ok":
            continue
        if bound:
            seconds = bound.get("bf16_bound_s") if r.get("dtype") == "bfloat16" else bound["bound_s"]
            r["share_of_bound"] = round(seconds / r["train_s"], 3)
        if base is not None:
            r["speedup_vs_baseline"] = round(r["examples_per_s"] / base["examples_per_s"], 3)
            pairs = list(zip(r["losses"], base["losses"]))
            r["max_step_loss_diff"] = round(max(abs(a - b) for a, b in pairs), 5) if pairs else None
    settings = {k: v for k, v in spec.items() if k != "bound"}
    return {"settings": settings, "bound": bound, "baseline": baseline, "rows": results}


def markdown(report: dict) -> str:
    from tables import markdown_rows

    s, bound = report["settings"], report["bound"]
    lines = [
        f"{'Reward' if s.get('kind') == 'reward' else 'SFT'} (LoRA r={s['lora_r']}, batch {s['batch_size']}, lr {s['learning_rate']}, 1 epoch, seed 0) on {s['examples']} examples of "
        f"{Path(s['data']).name} (sha256 {s['data_sha256']}), model {Path(s['model']).name}, {s['threads'] or 'default'} thread(s)",
    ]
    if bound:
        m = bound["machine"]
        loss_tokens = "one reward read per sequence" if s.get("kind") == "reward" else f"{bound['completion_tokens']} in the loss"
        bf16 = f", {m['bf16_gflops']:.1f} bfloat16: {bound['bf16_bound_s']:.1f} s" if "bf16_bound_s" in bound else ""
        kind = f" (CPU kind {m['cpu_kind']}: {m['isa']})" if m.get("cpu_kind") else ""
        lines.append(
            f"{bound['tokens']} tokens ({loss_tokens}); this machine{kind} on {m['threads']} thread(s): arithmetic bound for the pass "
            f"at {m['gflops']:.1f} GFLOP/s float32: {bound['bound_s']:.1f} s{bf16} (benchmarks/limits.py)"
        )
    header = [
        "row", "dtype", "train s", "examples/s", f"x {report['baseline']}", "of bound", "final step loss", "mean loss", "max step-loss diff",
        "peak RSS MiB",
    ]

    def cells(r: dict) -> list:
        return [
            r["row"], r.get("dtype", "float32"), f"{r['train_s']:.1f}", f"{r['examples_per_s']:.3f}",
            f"{r['speedup_vs_baseline']:.2f}x" if "speedup_vs_baseline" in r else "-",
            f"{r['share_of_bound']:.0%}" if "share_of_bound" in r else "-",
            f"{r['final_loss']:.4f}", f"{r['mean_loss']:.4f}",
            f"{r['max_step_loss_diff']:.5f}" if r.get("max_step_loss_diff") is not None else "-", f"{r['peak_rss_mib']:.0f}",
        ]

    lines += ["", *markdown_rows(header, report["rows"], cells)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
