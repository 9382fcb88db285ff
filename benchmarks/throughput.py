"""Judge throughput, side by side in one run: st-eval's engines against a naive transformers loop.

Each row runs in its own process (so its peak memory is its own) on the same judge prompts,
built by st-eval's judge core from real LLMBar pairs (../shared/data beside the repo or
$ST_EVAL_SHARED_DATA; examples/pairs.jsonl otherwise). Rows:

  naive       one prompt at a time through plain ``model.generate`` (the baseline)
  plain       plain batched ``model.generate`` (dynamic cache, no early stop)
  hf          st-eval's hf engine: length-sorted batches, finished rows leave the batch, stop
              at the verdict; on CUDA, static cache with compiled decoding
  hf-no-stop  the same without the early stop at the verdict
  vllm        st-eval's vllm engine (run with --vllm-python when vLLM lives in another venv)
  openai      st-eval's openai engine against a local ``st-eval serve`` (or --openai-base-url)

A row may carry a batch size: ``hf@64``. Every row is greedy, so outputs are comparable:
"agree" is the share of prompts whose verdict parses the same as the baseline's, "same text"
the share whose text equals the baseline's (or is its prefix, cut right after the verdict).

    python benchmarks/throughput.py --pairs 12 --max-new-tokens 128 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CPU_ROWS = "naive,hf,hf-no-stop,vllm,openai"
GPU_ROWS = "naive,plain@64,hf@1,hf@64,vllm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="judge model (default: the embedded SmolLM2-135M judge)")
    parser.add_argument("--pairs", type=int, default=None, help="pairs to judge (default 12 on CPU, 128 on GPU)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--template", default="pairwise-v1")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of rows without @N (the hf engine's CPU default)")
    parser.add_argument("--rows", default=None, help=f"comma-separated rows (default CPU: {CPU_ROWS}; CUDA: {GPU_ROWS})")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per row (default: torch's)")
    parser.add_argument("--vllm-python", default=os.environ.get("ST_EVAL_VLLM_PYTHON"), help="python of a venv with vLLM")
    parser.add_argument("--openai-base-url", default=None, help="use this server instead of starting st-eval serve")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "throughput.json")
    parser.add_argument("--resume", action="store_true", help="keep the finished rows of an earlier run with --out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, json.loads(args.spec.read_text()))
        return

    import torch

    from st_eval.embedded import resolve_model

    cuda = torch.cuda.is_available()
    rows = (args.rows or (GPU_ROWS if cuda else CPU_ROWS)).split(",")
    model = resolve_model(args.model)
    prompts, source = judge_prompts(args.pairs or (128 if cuda else 12), args.template)
    print(f"prompts: {len(prompts)} from {source}", file=sys.stderr)
    spec = {
        "model": model,
        "prompts": prompts,
        "source": source,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "openai_base_url": args.openai_base_url,
    }
    results = []
    previous = {r["row"]: r for r in load_previous(args.out, spec)} if args.resume else {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            name, _, batch = row.partition("@")
            row_spec = {**spec, "row": row, "name": name, "batch_size": int(batch or args.batch_size)}
            if previous.get(row, {}).get("status") == "ok":
                results.append(previous[row])
                continue
            print(f"running {row} ...", file=sys.stderr, flush=True)
            results.append(run_row(row_spec, Path(tmp), args.vllm_python))
            save(args.out, summarize(results, spec, cuda))  # finished rows survive a crash
    report = summarize(results, spec, cuda)
    save(args.out, report)
    table = markdown(report)
    markdown_path = args.out.with_suffix(".md")
    markdown_path.write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"\nJSON: {args.out}\nMarkdown: {markdown_path}", file=sys.stderr)


def save(path: Path, report: dict) -> None:
    from st_eval.jsonl import write_json

    write_json(path, report)


def load_previous(path: Path, spec: dict) -> list[dict]:
    """Rows of an earlier run with the same prompts and settings (for --resume)."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    same = old.get("settings") == settings(spec)
    return old["rows"] if same else []


def settings(spec: dict) -> dict:
    import hashlib

    prompts = hashlib.sha256(json.dumps(spec["prompts"], sort_keys=True).encode()).hexdigest()[:16]
    return {"model": spec["model"], "prompts_sha256": prompts, "max_new_tokens": spec["max_new_tokens"], "threads": spec["threads"]}


def judge_prompts(count: int, template: str) -> tuple[list[list[dict[str, str]]], str]:
    """Judge prompts from real pairs, taken round-robin over the LLMBar sets, and where they came
    from (the six example pairs, repeated, when the LLMBar files are not found)."""
    from st_eval.judge import build_prompt
    from st_eval.pair_files import load_pairs
    from st_eval.records import Message, Pair

    data = Path(os.environ.get("ST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data")) / "llmbar"
    if data.is_dir():
        sets = [json.loads(f.read_text()) for f in sorted(data.glob("*.json"))]
        rows = [s[i] for i in range(max(map(len, sets))) for s in sets if i < len(s)][:count]
        pairs = [
            Pair(id=str(i), conversation=[Message("user", r["input"])], response_a=r["output_1"], response_b=r["output_2"])
            for i, r in enumerate(rows)
        ]
        source = "LLMBar"
    else:
        pairs = (load_pairs(REPO / "examples" / "pairs.jsonl") * count)[:count]
        source = "examples/pairs.jsonl (LLMBar not found: set ST_EVAL_SHARED_DATA)"
    return [build_prompt(p, "given", template) for p in pairs], source


def run_row(spec: dict, tmp: Path, vllm_python: str | None) -> dict:
    """Run one row in a fresh process; a row that cannot run here is reported as n/a."""
    python = sys.executable
    server = None
    if spec["name"] == "vllm" and vllm_python:
        python = vllm_python
    if spec["name"] == "openai" and not spec["openai_base_url"]:
        server, reason = start_server(spec, tmp)
        if server is None:
            return {"row": spec["row"], "status": f"n/a ({reason})"}
        spec = {**spec, "openai_base_url": server[1]}
    path = tmp / f"{spec['row'].replace('@', '_')}.json"
    result_path = tmp / f"{spec['row'].replace('@', '_')}.result.json"
    spec = {**spec, "result_path": str(result_path)}
    path.write_text(json.dumps(spec))
    env = child_env()
    try:
        done = subprocess.run([python, __file__, "--worker", spec["row"], "--spec", str(path)], capture_output=True, text=True, env=env)
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait(30)
    if done.returncode != 0 or not result_path.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"row": spec["row"], "status": f"n/a ({last[:160]})"}
    return json.loads(result_path.read_text())


def child_env() -> dict[str, str]:
    """Children import st-eval from this checkout, whatever their python."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def start_server(spec: dict, tmp: Path):
    """Start ``st-eval serve`` on the hf engine (any free port); None and why if it cannot."""
    try:
        import st_eval.serve  # noqa: F401
    except ImportError:
        return None, "this st-eval has no serve command"
    env = {**child_env(), "ST_EVAL_HOME": str(tmp / "serve-home")}  # an empty cache: measure generation
    if spec["threads"]:
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    command = [
        sys.executable, "-m", "st_eval.cli", "serve", "--model", spec["model"], "--port", "0",
        "--batch-size", str(spec["batch_size"]), "--max-batch", str(max(spec["batch_size"], 1)), "--log-level", "warning",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline() if proc.stdout else ""
    if "http://" not in line:
        proc.kill()
        return None, "st-eval serve did not start"
    return (proc, line.split(" on ", 1)[1].strip()), None


# -- worker side -------------------------------------------------------------------------


def run_worker(row: str, spec: dict) -> None:
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    name, prompts, max_new = spec["name"], spec["prompts"], spec["max_new_tokens"]
    generate, tokenizer, device = make_generator(name, spec)
    generate(prompts[:1], 2)  # warm-up: weights, kernels, compilation stay outside the timing
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    outputs = generate(prompts, max_new)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    tokens = sum(len(tokenizer(text, add_special_tokens=False).input_ids) for text in outputs)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "row": row,
        "status": "ok",
        "device": device,
        "batch_size": spec["batch_size"] if name not in ("naive",) else 1,
        "wall_s": wall,
        "judgments": len(prompts),
        "generated_tokens": tokens,
        "peak_rss_mib": peak_rss,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "outputs": outputs,
    }
    Path(spec["result_path"]).write_text(json.dumps(result))


def make_generator(name: str, spec: dict):
    """(generate(prompts, max_new_tokens) -> texts, tokenizer, device description) for a row."""
    from st_eval.engines import SamplingConfig, make_engine

    model, batch = spec["model"], spec["batch_size"]
    if name in ("naive", "plain"):
        from st_eval.engines.hf import load_model_and_tokenizer

        weights, tokenizer = load_model_and_tokenizer(model)

        def plain(prompts, max_new):
            step = 1 if name == "naive" else batch
            texts = []
            for start in range(0, len(prompts), step):
                texts += plain_generate(weights, tokenizer, prompts[start : start + step], max_new)
            return texts

        return plain, tokenizer, describe(weights.device)
    if name in ("hf", "hf-no-stop"):
        engine = make_engine("hf", model, batch_size=batch, stop_at_verdict=name == "hf", threads=spec["threads"])
        device = describe(engine._model.device)
        tokenizer = engine.tokenizer
    elif name == "vllm":
        engine = make_engine("vllm", model, max_num_seqs=batch)
        device = "vllm " + describe_default()
        tokenizer = load_tokenizer(model)
    elif name == "openai":
        engine = make_engine("openai", model, base_url=spec["openai_base_url"])
        device = f"server {spec['openai_base_url']} on {describe_default()}"
        tokenizer = load_tokenizer(model)
    else:
        raise SystemExit(f"unknown row {name!r}")

    def through_engine(prompts, max_new):
        return [samples[0] for samples in engine.generate(prompts, 1, SamplingConfig(max_new_tokens=max_new))]

    return through_engine, tokenizer, device


def plain_generate(weights, tokenizer, prompts, max_new: int) -> list[str]:
    """Plain ``generate``, greedy, left-padded: what a user writes without st-eval."""
    import torch

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(weights.device)
    with torch.inference_mode():
        out = weights.generate(**encoded, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, encoded.input_ids.shape[1] :], skip_special_tokens=True)


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def describe(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return describe_default()


def describe_default() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores)"


# -- report ------------------------------------------------------------------------------


def summarize(results: list[dict], spec: dict, cuda: bool) -> dict:
    from st_eval.verdict import parse_verdict

    base = next((r for r in results if r["row"].startswith("naive") and r["status"] == "ok"), None)
    for r in results:
        if r["status"] != "ok":
            continue
        r["judgments_per_s"] = r["judgments"] / r["wall_s"]
        r["tokens_per_s"] = r["generated_tokens"] / r["wall_s"]
        if base is not None:
            r["speedup_vs_naive"] = r["judgments_per_s"] / base["judgments_per_s"]
            pairs = list(zip(r["outputs"], base["outputs"]))
            r["verdict_agreement"] = sum(parse_verdict(a) == parse_verdict(b) for a, b in pairs) / len(pairs)
            r["same_text"] = sum(b == a or (a and b.startswith(a.rstrip())) for a, b in pairs) / len(pairs)
            r["valid_verdicts"] = sum(parse_verdict(a).valid for a in r["outputs"]) / len(pairs)
    return {
        "model": spec["model"],
        "prompts": len(spec["prompts"]),
        "prompt_source": spec.get("source"),
        "max_new_tokens": spec["max_new_tokens"],
        "threads": spec["threads"],
        "cuda": cuda,
        "python": platform.python_version(),
        "settings": settings(spec),
        "rows": results,
    }


def markdown(report: dict) -> str:
    lines = [
        f"{report['prompts']} judge prompts from {report.get('prompt_source') or 'unknown'}, greedy, max_new_tokens={report['max_new_tokens']}, model {Path(report['model']).name}",
        "",
        "| row | device | batch | judgments/s | gen tokens/s | peak RSS MiB | peak GPU MiB | wall s | x naive | verdict agree | same text |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['row']} | {r['status']} |  |  |  |  |  |  |  |  |  |")
            continue
        gpu = f"{r['peak_gpu_mib']:.0f}" if r.get("peak_gpu_mib") else "-"
        ratio = f"{r['speedup_vs_naive']:.2f}x" if "speedup_vs_naive" in r else "-"
        agree = f"{r['verdict_agreement']:.0%}" if "verdict_agreement" in r else "-"
        same = f"{r['same_text']:.0%}" if "same_text" in r else "-"
        lines.append(
            f"| {r['row']} | {r['device']} | {r['batch_size']} | {r['judgments_per_s']:.3f} | {r['tokens_per_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} | {gpu} | {r['wall_s']:.1f} | {ratio} | {agree} | {same} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
