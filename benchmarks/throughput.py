"""Judge throughput, side by side in one run: st-eval's engines against a naive transformers loop.

Each row runs in its own process (so its peak memory is its own) on the same judge prompts,
built by st-eval's judge core from real LLMBar pairs (../shared/data beside the repo or
$ST_EVAL_SHARED_DATA; examples/pairs.jsonl otherwise). Rows:

  naive       one prompt at a time through plain ``model.generate`` (the baseline)
  plain       plain batched ``model.generate`` (dynamic cache, no early stop)
  hf          st-eval's hf engine: length-sorted batches, finished rows leave the batch, stop
              at the verdict; on CUDA, static cache with compiled decoding
  hf-no-stop  the same without the early stop at the verdict
  hf-fill     the same, every slot filled at once (no short first batch for a first judgment)
  vllm        st-eval's vllm engine (run with --vllm-python when vLLM lives in another venv)
  openai      st-eval's openai engine against a local ``st-eval serve`` (or --openai-base-url)
  rate        a rating judge (--rating-template) through the hf engine: each answer of each
              pair rated alone from one forward pass (next-token probabilities), in pairs/s
              against its arithmetic bound, in a table of its own

A row may carry a dtype and a batch size: ``hf:bfloat16@64``. Without a dtype, st-eval's rows
compute in the engine's ``auto`` dtype (bfloat16 where the CPU has AVX512-BF16 or AMX, float32
elsewhere) and vllm in its own default; each row reports the dtype it computed in, and its
bounds use that dtype's measured rate. Every row is greedy, so outputs are comparable:
"agree" is the share of prompts whose verdict parses the same as the baseline's, "same text"
the share whose text equals the baseline's (or is its prefix, cut right after the verdict).
Rating rows are compared with the first rating row: verdicts from the two ratings of each
pair, and the largest difference of a rating.

The results go to ``benchmarks/results/throughput-cpu-<kind>.json`` (and ``.md``) on a CPU, where
the kind (``avx2``, ``avx512``, ``avx512-bf16``, ``amx``) names the CPU's fastest relevant unit.

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
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CPU_ROWS = "naive,hf,hf-fill,hf-no-stop,vllm,openai,rate"
GPU_ROWS = "naive,plain@64,hf@1,hf@64,vllm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="judge model (default: the embedded SmolLM2-135M judge)")
    parser.add_argument("--pairs", type=int, default=None, help="pairs to judge (default 12 on CPU, 128 on GPU)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--template", default="pairwise-v1")
    parser.add_argument("--rating-template", default="rating-yesno-v1", help="template of the rate rows")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of rows without @N (the hf engine's CPU default)")
    parser.add_argument("--rows", default=None, help=f"comma-separated rows (default CPU: {CPU_ROWS}; CUDA: {GPU_ROWS})")
    parser.add_argument("--baseline", default=None, help="row the others are compared with (default: naive)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per row (default: torch's)")
    parser.add_argument("--vllm-python", default=os.environ.get("ST_EVAL_VLLM_PYTHON"), help="python of a venv with vLLM")
    parser.add_argument("--openai-base-url", default=None, help="use this server instead of starting st-eval serve")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: benchmarks/results/throughput-cpu-<kind>.json, throughput.json on CUDA)")
    parser.add_argument("--resume", action="store_true", help="keep the finished rows of an earlier run with --out")
    args = parse_args_or_run_worker(parser, run_worker)
    if args is None:
        return

    import torch
    from tables import write_outputs

    from st_eval.embedded import resolve_model
    from st_eval.judge import build_prompt
    from st_eval.jsonl import write_json

    cuda = torch.cuda.is_available()
    rows = (args.rows or (GPU_ROWS if cuda else CPU_ROWS)).split(",")
    args.out = args.out or default_out(cuda)
    model = resolve_model(args.model)
    pairs, source = judge_pairs(args.pairs or (128 if cuda else 12))
    prompts = [build_prompt(p, "given", args.template) for p in pairs]
    print(f"prompts: {len(prompts)} from {source}", file=sys.stderr)
    spec = {
        "model": model,
        "prompts": prompts,
        "rating_template": args.rating_template,
        "rating_prompts": rating_prompts(pairs, args.rating_template),
        "source": source,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "openai_base_url": args.openai_base_url,
        "baseline": args.baseline,
    }
    if not cuda:
        spec["limits"] = cpu_limits(model, prompts, spec["rating_prompts"], args.threads)
        print(f"this machine: {spec['limits']['machine']}", file=sys.stderr)
    results = []
    previous = {r["row"]: r for r in load_previous(args.out, spec)} if args.resume else {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            name, dtype, batch = parse_row(row)
            row_spec = {**spec, "row": row, "name": name, "dtype": dtype, "batch_size": batch or args.batch_size}
            if previous.get(row, {}).get("status") == "ok":
                results.append(previous[row])
                continue
            print(f"running {row} ...", file=sys.stderr, flush=True)
            results.append(run_row(row_spec, Path(tmp), args.vllm_python))
            write_json(args.out, summarize(results, spec, cuda))  # finished rows survive a crash
    report = summarize(results, spec, cuda)
    write_outputs(args.out, report, markdown(report))


def parse_row(row: str) -> tuple[str, str, int | None]:
    """``name[:dtype][@batch]`` -> (name, dtype, batch); the dtype is ``auto`` when not given."""
    head, _, batch = row.partition("@")
    name, _, dtype = head.partition(":")
    return name, dtype or "auto", int(batch) if batch else None


def default_out(cuda: bool) -> Path:
    """Where a run's report goes: one file per CPU kind (or one for CUDA), so runs on different
    CPUs do not overwrite each other."""
    from st_eval.native_dtype import cpu_kind

    return REPO / "benchmarks" / "results" / ("throughput.json" if cuda else f"throughput-cpu-{cpu_kind()}.json")


def load_previous(path: Path, spec: dict) -> list[dict]:
    """Rows of an earlier run with the same prompts and settings (for --resume)."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    same = old.get("settings") == settings(spec)
    return old["rows"] if same else []


def settings(spec: dict) -> dict:
    import hashlib

    prompts = hashlib.sha256(json.dumps([spec["prompts"], spec["rating_prompts"]], sort_keys=True).encode()).hexdigest()[:16]
    return {"model": spec["model"], "prompts_sha256": prompts, "max_new_tokens": spec["max_new_tokens"], "threads": spec["threads"]}


def rating_prompts(pairs: list, template: str) -> list[list[dict[str, str]]]:
    """The rating judge's prompts: each pair's answer A, then its answer B, each shown alone."""
    from st_eval.prompt import load_template

    rating = load_template(template)
    if not rating.is_rating:
        raise SystemExit(f"--rating-template {template!r} is not a rating template")
    return [rating.render_rating(pair, side) for pair in pairs for side in ("A", "B")]


def judge_pairs(count: int) -> tuple[list, str]:
    """Real pairs, taken round-robin over the LLMBar sets, and where they came from (the six
    example pairs, repeated, when the LLMBar files are not found)."""
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
    return pairs, source


def cpu_limits(model: str, prompts: list, rating: list, threads: int | None) -> dict:
    """The machine's measured bandwidth and arithmetic rates, the judge's shape and the token
    counts of the judge and rating prompts: what ``limits.run_bounds`` and
    ``limits.rating_bound`` need to bound each row."""
    from dataclasses import asdict

    from limits import measure_machine, model_shape_of, prefix_reuse

    from st_eval.engines.hf import render_chat
    from st_eval.engines.hf_batching import common_prefix

    shape = model_shape_of(model)  # no weights held in this process while the rows run
    tokenizer = load_tokenizer(model)

    def token_ids(chats: list) -> list[list[int]]:
        return [tokenizer(render_chat(tokenizer, p), add_special_tokens=False).input_ids for p in chats]

    ids, rating_ids = token_ids(prompts), token_ids(rating)
    return {
        "machine": asdict(measure_machine(threads, shape=shape)),
        "shape": asdict(shape),
        "prompt_lengths": [len(i) for i in ids],
        "shared_prefix": common_prefix(ids),
        "rating_prompt_lengths": [len(i) for i in rating_ids],
        "rating_reused": prefix_reuse(rating_ids),
    }


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
    try:
        return run_child_row(Path(__file__), spec["row"], spec, tmp, python)
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait(30)


def parse_args_or_run_worker(parser: argparse.ArgumentParser, run_worker: Callable[[str, dict], None]) -> argparse.Namespace | None:
    """The child side of :func:`run_child_row`: with ``--worker ROW --spec FILE`` run that row
    through ``run_worker`` and return None; otherwise the parsed arguments."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, json.loads(args.spec.read_text()))
        return None
    return args


def run_child_row(script: Path, row: str, spec: dict, tmp: Path, python: str = sys.executable) -> dict:
    """Run ``script --worker ROW`` in a fresh process (its own peak memory) on ``spec``, which the
    worker reads with the path it must write its result to (``result_path``); a row that fails is
    reported as n/a with its last line of stderr."""
    name = row.replace("@", "_").replace(":", "_")
    path, result_path = tmp / f"{name}.json", tmp / f"{name}.result.json"
    path.write_text(json.dumps({**spec, "result_path": str(result_path)}))
    done = subprocess.run([python, str(script), "--worker", row, "--spec", str(path)], capture_output=True, text=True, env=child_env())
    if done.returncode != 0 or not result_path.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"row": row, "status": f"n/a ({last[:160]})"}
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
    if spec["name"] == "rate":
        run_rating_worker(row, spec)
        return
    from st_eval.progress import listen

    name, prompts, max_new = spec["name"], spec["prompts"], spec["max_new_tokens"]
    began = time.perf_counter()
    generate, tokenizer, device, dtype = make_generator(name, spec)
    generate(prompts[:1], 2)  # warm-up: weights, kernels, compilation stay outside the timing
    startup = time.perf_counter() - began
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    first: list[float] = []
    start = time.perf_counter()
    with listen(lambda count: first or first.append(time.perf_counter() - start)):
        outputs = generate(prompts, max_new)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    generated = [len(tokenizer(text, add_special_tokens=False).input_ids) for text in outputs]
    tokens = sum(generated)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "row": row,
        "status": "ok",
        "device": device,
        "dtype": dtype,
        "batch_size": spec["batch_size"] if name not in ("naive",) else 1,
        "wall_s": wall,
        "startup_s": startup,
        "first_judgment_s": first[0] if first else wall,
        "judgments": len(prompts),
        "generated_tokens": tokens,
        "generated_per_prompt": generated,
        "peak_rss_mib": peak_rss,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "outputs": outputs,
    }
    Path(spec["result_path"]).write_text(json.dumps(result))


def run_rating_worker(row: str, spec: dict) -> None:
    """A rating judge's row: every rating prompt through the hf engine's one-pass rating, timed
    after a warm-up; the ratings come back for the agreement columns."""
    from st_eval.engines import make_engine
    from st_eval.prompt import load_template
    from st_eval.rating import TOP_LOGPROBS, rating_from_logprobs

    prompts = spec["rating_prompts"]
    began = time.perf_counter()
    engine = make_engine("hf", spec["model"], dtype=spec["dtype"], batch_size=spec["batch_size"], threads=spec["threads"])
    choices = load_template(spec["rating_template"]).choices
    engine.next_token_logprobs(prompts[:2], TOP_LOGPROBS, include=tuple(choices))  # warm-up
    startup = time.perf_counter() - began
    start = time.perf_counter()
    tops = engine.next_token_logprobs(prompts, TOP_LOGPROBS, include=tuple(choices))  # as the judge asks
    wall = time.perf_counter() - start
    result = {
        "row": row,
        "status": "ok",
        "kind": "rating",
        "device": describe(engine._model.device),
        "dtype": engine.dtype,
        "batch_size": spec["batch_size"],
        "wall_s": wall,
        "startup_s": startup,
        "pairs": len(prompts) // 2,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ratings": [rating_from_logprobs(top, choices) for top in tops],
    }
    Path(spec["result_path"]).write_text(json.dumps(result))


def make_generator(name: str, spec: dict):
    """(generate(prompts, max_new_tokens) -> texts, tokenizer, device description, dtype) for a row."""
    from st_eval.engines import SamplingConfig, make_engine
    from st_eval.progress import sample_done

    model, batch, dtype = spec["model"], spec["batch_size"], spec["dtype"]
    if name in ("naive", "plain"):
        from st_eval.engines.hf import load_model_and_tokenizer

        weights, tokenizer = load_model_and_tokenizer(model, dtype=dtype)

        def plain(prompts, max_new):
            step = 1 if name == "naive" else batch
            texts = []
            for start in range(0, len(prompts), step):
                texts += plain_generate(weights, tokenizer, prompts[start : start + step], max_new)
                sample_done(len(prompts[start : start + step]))
            return texts

        return plain, tokenizer, describe(weights.device), str(weights.dtype).removeprefix("torch.")
    if name in ("hf", "hf-no-stop", "hf-fill"):
        fill = {"first_prompts": 0} if name == "hf-fill" else {}  # others: the engine's default
        engine = make_engine(
            "hf", model, dtype=dtype, batch_size=batch, stop_at_verdict=name != "hf-no-stop", threads=spec["threads"], **fill
        )
        device = describe(engine._model.device)
        tokenizer = engine.tokenizer
    elif name == "vllm":
        chosen = {} if dtype == "auto" else {"dtype": dtype}  # auto: vLLM's own default
        engine = make_engine("vllm", model, max_num_seqs=batch, **chosen)
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

    return through_engine, tokenizer, device, engine.dtype


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


def is_rating(row: dict) -> bool:
    """Whether a result (or a failed row) is a rating judge's row."""
    return row.get("kind") == "rating" or parse_row(row["row"])[0] == "rate"


def summarize(results: list[dict], spec: dict, cuda: bool) -> dict:
    from st_eval.verdict import parse_verdict

    ok = [r for r in results if r["status"] == "ok" and not is_rating(r)]
    base = next((r for r in ok if r["row"] == spec.get("baseline")), None) or next((r for r in ok if r["row"].startswith("naive")), None)
    summarize_rating([r for r in results if r["status"] == "ok" and is_rating(r)], spec.get("limits"))
    for r in ok:
        r["judgments_per_s"] = r["judgments"] / r["wall_s"]
        r["tokens_per_s"] = r["generated_tokens"] / r["wall_s"]
        if spec.get("limits") and "generated_per_prompt" in r and bounded(r):  # rows kept from older runs lack the lengths
            r["bounds"] = row_bounds(r, spec["limits"])
            r["share_of_run_bound"] = r["tokens_per_s"] / r["bounds"]["run_bound_tok_s"]
        if base is not None:
            r["speedup_vs_baseline"] = r["judgments_per_s"] / base["judgments_per_s"]
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
        "limits": {k: v for k, v in (spec.get("limits") or {}).items() if k not in ("prompt_lengths", "rating_prompt_lengths", "rating_reused")} or None,
        "rating_template": spec.get("rating_template"),
        "cuda": cuda,
        "python": platform.python_version(),
        "settings": settings(spec),
        "baseline": base["row"] if base else None,
        "rows": results,
    }


def summarize_rating(rows: list[dict], limits: dict | None) -> None:
    """Add pairs/s, the arithmetic bound and the agreement with the first rating row to each rating row."""
    from limits import MachineLimits, ModelShape, rating_bound

    from st_eval.rating import verdict_from_ratings

    base = rows[0] if rows else None
    for r in rows:
        r["pairs_per_s"] = r["pairs"] / r["wall_s"]
        if limits and bounded(r):
            r["bound"] = rating_bound(
                ModelShape(**limits["shape"]), MachineLimits(**limits["machine"]), limits["rating_prompt_lengths"],
                limits["rating_reused"], dtype=r["dtype"],
            )
            r["share_of_bound"] = r["pairs_per_s"] / r["bound"]["pairs_per_s"]
        ours, theirs = r["ratings"], base["ratings"]  # type: ignore[index]
        verdicts = [(verdict_from_ratings(*ours[i : i + 2]), verdict_from_ratings(*theirs[i : i + 2])) for i in range(0, len(ours), 2)]
        r["verdict_agreement"] = sum(a == b for a, b in verdicts) / len(verdicts)
        rated = [abs(a - b) for a, b in zip(ours, theirs) if a is not None and b is not None]
        r["max_rating_difference"] = max(rated) if rated else None


def bounded(row: dict) -> bool:
    """Whether a row computed in a dtype whose rate was measured (rows of older reports: float32)."""
    from limits import ELEMENT_BYTES

    return row.get("dtype", "float32") in ELEMENT_BYTES


def row_bounds(row: dict, limits: dict) -> dict:
    from limits import MachineLimits, ModelShape, run_bounds

    return run_bounds(
        ModelShape(**limits["shape"]), MachineLimits(**limits["machine"]), limits["prompt_lengths"], limits["shared_prefix"],
        row["generated_per_prompt"], row["batch_size"], dtype=row.get("dtype", "float32"),
    )


def markdown(report: dict) -> str:
    from tables import markdown_rows

    limits = report.get("limits")
    lines = [
        f"{report['prompts']} judge prompts from {report.get('prompt_source') or 'unknown'}, greedy, max_new_tokens={report['max_new_tokens']}, model {Path(report['model']).name}",
    ]
    if limits:
        lines.append(machine_line(limits["machine"]))
    base = report.get("baseline") or "naive"
    header = [
        "row", "device", "dtype", "batch", "start s", "first judgment s", "wall s", "judgments/s", "gen tokens/s", "run bound tok/s", "of bound",
        "decode bound tok/s", "peak RSS MiB", "peak GPU MiB", f"x {base}", "verdict agree", "same text",
    ]

    def cells(r: dict) -> list:
        bounds = r.get("bounds") or {}
        return [
            r["row"], r["device"], r.get("dtype") or "-", r["batch_size"], _num(r.get("startup_s"), 1), _num(r.get("first_judgment_s"), 1), f"{r['wall_s']:.1f}",
            f"{r['judgments_per_s']:.3f}", f"{r['tokens_per_s']:.1f}", _num(bounds.get("run_bound_tok_s"), 1),
            f"{r['share_of_run_bound']:.0%}" if "share_of_run_bound" in r else "-", _num(bounds.get("decode_bound_tok_s"), 0),
            f"{r['peak_rss_mib']:.0f}", _num(r.get("peak_gpu_mib"), 0),
            f"{r['speedup_vs_baseline']:.2f}x" if "speedup_vs_baseline" in r else "-",
            f"{r['verdict_agreement']:.0%}" if "verdict_agreement" in r else "-",
            f"{r['same_text']:.0%}" if "same_text" in r else "-",
        ]

    generation = [r for r in report["rows"] if not is_rating(r)]
    rating = [r for r in report["rows"] if is_rating(r)]
    if generation:
        lines += ["", *markdown_rows(header, generation, cells)]
    if rating:
        lines += ["", *rating_table(rating, report.get("rating_template"))]
    return "\n".join(lines)


def machine_line(machine: dict) -> str:
    """The measured machine, as the table's second line (older reports lack the kind and the bfloat16 rate)."""
    kind = f"CPU kind {machine['cpu_kind']} ({machine['isa']}), " if machine.get("cpu_kind") else ""
    bf16 = f", {machine['bf16_gflops']:.1f} GFLOP/s bfloat16" if machine.get("bf16_gflops") is not None else ""
    return (
        f"this machine, {machine['threads']} thread(s): {kind}{machine['bandwidth_gb_s']:.1f} GB/s read, {machine['gflops']:.1f} GFLOP/s float32{bf16} "
        f"(benchmarks/limits.py); a row's run bound = prefill at its dtype's rate + decode steps at the slower of bandwidth and arithmetic"
    )


def rating_table(rows: list[dict], template: str | None) -> list[str]:
    """The rating rows: pairs/s against the arithmetic bound (``limits.rating_bound``: the
    prompts' prefix tree through the body at the row's dtype's rate), agreement with the first row."""
    from tables import markdown_rows

    header = [
        "row", "device", "dtype", "batch", "start s", "wall s", "pairs/s", "bound pairs/s", "of bound", "peak RSS MiB",
        f"verdict agree ({rows[0]['row']})", "max rating diff",
    ]

    def cells(r: dict) -> list:
        bound = r.get("bound") or {}
        return [
            r["row"], r["device"], r["dtype"], r["batch_size"], f"{r['startup_s']:.1f}", f"{r['wall_s']:.1f}", f"{r['pairs_per_s']:.3f}",
            _num(bound.get("pairs_per_s"), 3), f"{r['share_of_bound']:.0%}" if "share_of_bound" in r else "-", f"{r['peak_rss_mib']:.0f}",
            f"{r['verdict_agreement']:.0%}", _num(r.get("max_rating_difference"), 4),
        ]

    return [f"Rating judge (`{template}`, each answer rated alone, two prompts per pair):", "", *markdown_rows(header, rows, cells)]


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
