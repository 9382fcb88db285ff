"""Verdicts of a judge computing in bfloat16 against the same judge in float32, on real pairs.

A CPU with AVX512-BF16 or AMX runs the judge in bfloat16 by default (``dtype: auto``), where it
is faster; this says what that costs in verdicts. For each set (all 419 LLMBar pairs, PandaLM's
dev set without its ties) and each judge (``rating``: each answer rated alone from next-token
probabilities, rating-yesno-v1; ``pairwise``: greedy written judgments, pairwise-v1), every
pair is judged in both orders by the hf engine in float32 and in bfloat16. Per set and judge:
the share of (pair, order) verdicts that are the same, each dtype's order-averaged score
(RewardBench's: 1 right, 0.5 tie or no verdict, chance 0.5), the rating judge's largest rating
difference, and the seconds each dtype took.

On a CPU without native bfloat16 (AVX2, plain AVX-512) the bfloat16 side is emulated, ~50x
slower than float32: run it there at a small --limit only, as a check that the command works.

    python benchmarks/dtype_agreement.py --threads 2          # everything: a CPU with AMX or AVX512-BF16
    python benchmarks/dtype_agreement.py --limit 2 --judges rating --sets llmbar
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = {"rating": "rating-yesno-v1", "pairwise": "pairwise-v1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="judge model (default: the embedded SmolLM2-135M judge)")
    parser.add_argument("--sets", default="llmbar,pandalm", help="comma-separated: llmbar (five sets, 419 pairs), pandalm (dev set)")
    parser.add_argument("--judges", default="rating,pairwise", help=f"comma-separated: {', '.join(TEMPLATES)}")
    parser.add_argument("--limit", type=int, default=0, help="first N pairs of each set (0 = all)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="pairwise judge's budget per judgment")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the engine's choice)")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: benchmarks/results/dtype-agreement-cpu-<kind>.json)")
    args = parser.parse_args()

    from tables import write_outputs

    from st_eval.embedded import resolve_model
    from st_eval.native_dtype import cpu_kind, isa_names

    data = Path(os.environ.get("ST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))
    model = resolve_model(args.model)
    report: dict[str, Any] = {
        "model": model, "cpu_kind": cpu_kind(), "isa": isa_names(), "limit": args.limit, "max_new_tokens": args.max_new_tokens,
        "threads": args.threads, "results": [],
    }
    for set_name in args.sets.split(","):
        pairs = load_set(set_name, data, args.limit)
        for judge_name in args.judges.split(","):
            if judge_name not in TEMPLATES:
                raise SystemExit(f"--judges: unknown judge {judge_name!r} (choose from {', '.join(TEMPLATES)})")
            print(f"{set_name}, {judge_name} judge: {len(pairs)} pairs in float32, then bfloat16 ...", file=sys.stderr, flush=True)
            runs = {dtype: judge_in(model, dtype, TEMPLATES[judge_name], pairs, args.max_new_tokens, args.threads) for dtype in ("float32", "bfloat16")}
            report["results"].append({
                "set": set_name, "judge": judge_name, "template": TEMPLATES[judge_name],
                "seconds": {dtype: round(seconds, 1) for dtype, (_, seconds) in runs.items()},
                **agreement(runs["float32"][0], runs["bfloat16"][0]),
            })
    out = args.out or REPO / "benchmarks" / "results" / f"dtype-agreement-cpu-{cpu_kind()}.json"
    write_outputs(out, report, markdown(report))


def load_set(name: str, data: Path, limit: int) -> list:
    """The labelled pairs of ``llmbar`` (its five sets) or ``pandalm`` (the dev set's non-tie pairs)."""
    from st_eval.benchmarks.pandalm import load_pandalm, non_tie
    from st_eval.benchmarks.rewardbench import load_llmbar

    if name == "llmbar":
        pairs = load_llmbar(data / "llmbar")
    elif name == "pandalm":
        pairs = non_tie(load_pandalm(data / "pandalm")[0])
    else:
        raise SystemExit(f"--sets: unknown set {name!r} (choose from llmbar, pandalm)")
    return pairs[:limit] if limit else pairs


def judge_in(model: str, dtype: str, template: str, pairs: list, max_new_tokens: int, threads: int | None) -> tuple[list, float]:
    """Judge ``pairs`` in both orders with the hf engine computing in ``dtype``: judgments and seconds."""
    from st_eval.engines import SamplingConfig, make_engine
    from st_eval.judge import Judge, JudgeConfig

    engine = make_engine("hf", model, dtype=dtype, threads=threads)
    try:
        judge = Judge(engine, JudgeConfig(template=template, order="both", sampling=SamplingConfig(max_new_tokens=max_new_tokens)))
        start = time.perf_counter()
        judgments = judge.judge(pairs, chunk_size=64)
        return judgments, time.perf_counter() - start
    finally:
        engine.close()


def agreement(reference: list, other: list) -> dict[str, Any]:
    """How far ``other``'s judgments of the same pairs are from ``reference``'s: the share of
    (pair, order) verdicts that are equal (no verdict counts as a verdict of its own), each
    side's order-averaged score over the labelled pairs, and the largest difference of a rating
    (rating judges; None for pairwise judges)."""
    from st_eval.training.evaluation import pair_scores

    if [j.pair_id for j in reference] != [j.pair_id for j in other]:
        raise ValueError("the two runs judged different pairs")
    verdicts = [(a.verdict, b.verdict) for ref, oth in zip(reference, other) for a, b in zip(ref.orders, oth.orders)]
    ratings = [
        abs(ref.ratings[side] - oth.ratings[side])
        for ref, oth in zip(reference, other) if ref.ratings and oth.ratings
        for side in ("A", "B") if ref.ratings[side] is not None and oth.ratings[side] is not None
    ]

    def score(judgments: list) -> float | None:
        labelled = [pair_scores(j)[0] for j in judgments if j.label is not None]
        return round(sum(labelled) / len(labelled), 4) if labelled else None

    return {
        "pairs": len(reference),
        "verdict_agreement": round(sum(a == b for a, b in verdicts) / len(verdicts), 4) if verdicts else None,
        "score_float32": score(reference),
        "score_bfloat16": score(other),
        "max_rating_difference": round(max(ratings), 4) if ratings else None,
    }


def markdown(report: dict[str, Any]) -> str:
    from tables import markdown_rows

    lines = [
        f"bfloat16 against float32, model {Path(report['model']).name}, CPU kind {report['cpu_kind']} ({', '.join(report['isa']) or 'none'}), "
        f"both orders, pairwise judges greedy with max_new_tokens={report['max_new_tokens']}"
        + (f", first {report['limit']} pairs per set" if report["limit"] else ""),
        "",
    ]
    header = ["set", "judge", "pairs", "verdicts agree", "score float32", "score bfloat16", "max rating diff", "float32 s", "bfloat16 s"]

    def cells(r: dict) -> list:
        return [
            r["set"], r["judge"], r["pairs"], _pct(r["verdict_agreement"]), _num(r["score_float32"]), _num(r["score_bfloat16"]),
            _num(r["max_rating_difference"]), r["seconds"]["float32"], r["seconds"]["bfloat16"],
        ]

    rows = [{"row": f"{r['set']} {r['judge']}", "status": "ok", **r} for r in report["results"]]
    return "\n".join(lines + markdown_rows(header, rows, cells))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
