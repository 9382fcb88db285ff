"""Verdicts of a judge computing in bfloat16 against the same judge in float32, on real pairs.

A CPU with AVX512-BF16 or AMX runs the judge in bfloat16 by default (``dtype: auto``), where it
is faster; this says what that costs in verdicts. For each set (all 419 LLMBar pairs, PandaLM's
dev set without its ties) and each judge (``rating``: each answer rated alone from next-token
probabilities, rating-yesno-v1; ``pairwise``: greedy written judgments, pairwise-v1), every
pair is judged in both orders by the hf engine in float32 and in each compared way of computing
in bfloat16 (``--compare``): ``bfloat16`` (bfloat16 weights) and ``rating_bfloat16`` (float32
weights, ratings under bfloat16 autocast: ``--engine-arg rating_dtype=bfloat16``; rating judges
only, as a pairwise judge's generation stays float32 there). Per set, judge and compared way:
the share of (pair, order) verdicts that are the same as float32's, each side's order-averaged
score (RewardBench's: 1 right, 0.5 tie or no verdict, chance 0.5), the rating judge's largest
rating difference, and the seconds each side took (float32 judged once per set and judge).

On a CPU without native bfloat16 (AVX2, plain AVX-512) the bfloat16 side is emulated, ~50x
slower than float32: run it there at a small --limit only, as a check that the command works.

    python benchmarks/dtype_agreement.py --threads 2          # everything: a CPU with AMX or AVX512-BF16
    python benchmarks/dtype_agreement.py --limit 2 --judges rating --sets llmbar --compare rating_bfloat16

The pairwise judge's verdicts count as written within ``--max-new-tokens`` (no verdict is a verdict
of its own); ``--verdict-step`` finishes each judgment left without one from "Final verdict: [[",
as ``st-eval judge --verdict-step`` does, and the share of judgments written word for word alike
is reported beside. The pairwise judge writes its judgments (an hour or more per dtype over
both sets on two cores): ``--cache FILE`` sends them through a generation cache, so a run stopped
midway picks up where it stopped (``from cache`` then says how much of a side was read back, and
its seconds count only the rest).
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
#: how each side computes: the hf engine's options
COMPUTE = {
    "float32": {"dtype": "float32"},
    "bfloat16": {"dtype": "bfloat16"},
    "rating_bfloat16": {"dtype": "float32", "rating_dtype": "bfloat16"},
}
#: what each compared way is called in the table
COMPUTE_NAMES = {"bfloat16": "bfloat16 weights", "rating_bfloat16": "float32 weights, rating in bfloat16"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="judge model (default: the embedded SmolLM2-135M judge)")
    parser.add_argument("--sets", default="llmbar,pandalm", help="comma-separated: llmbar (five sets, 419 pairs), pandalm (dev set)")
    parser.add_argument("--judges", default="rating,pairwise", help=f"comma-separated: {', '.join(TEMPLATES)}")
    parser.add_argument("--compare", default="bfloat16,rating_bfloat16", help=f"comma-separated, each against float32: {', '.join(COMPUTE_NAMES)}")
    parser.add_argument("--limit", type=int, default=0, help="first N pairs of each set (0 = all)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="pairwise judge's budget per judgment")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the engine's choice)")
    parser.add_argument("--verdict-step", action="store_true", help="pairwise judge: finish a judgment without a verdict from 'Final verdict: [['")
    parser.add_argument("--cache", type=Path, default=None, help="generation cache file (SQLite): rerun the same command to resume")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: benchmarks/results/dtype-agreement-cpu-<kind>.json)")
    args = parser.parse_args()
    compared = args.compare.split(",")
    if unknown := [c for c in compared if c not in COMPUTE_NAMES]:
        raise SystemExit(f"--compare: unknown {', '.join(unknown)} (choose from {', '.join(COMPUTE_NAMES)})")

    from tables import write_outputs

    from st_eval.embedded import resolve_model
    from st_eval.native_dtype import cpu_kind, isa_names

    data = Path(os.environ.get("ST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))
    model = resolve_model(args.model)
    report: dict[str, Any] = {
        "model": model, "cpu_kind": cpu_kind(), "isa": isa_names(), "limit": args.limit, "max_new_tokens": args.max_new_tokens,
        "verdict_step": args.verdict_step,
        "threads": args.threads, "results": [],
    }
    for set_name in args.sets.split(","):
        pairs = load_set(set_name, data, args.limit)
        for judge_name in args.judges.split(","):
            if judge_name not in TEMPLATES:
                raise SystemExit(f"--judges: unknown judge {judge_name!r} (choose from {', '.join(TEMPLATES)})")
            # a rating dtype changes ratings only: a pairwise judge there is its float32 run again
            sides = [c for c in compared if judge_name == "rating" or "rating_dtype" not in COMPUTE[c]]
            print(f"{set_name}, {judge_name} judge: {len(pairs)} pairs in float32, then {', '.join(sides)} ...", file=sys.stderr, flush=True)
            reference, reference_seconds, reference_cached = judge_in(model, COMPUTE["float32"], TEMPLATES[judge_name], pairs, args, set_name)
            for side in sides:
                judgments, seconds, cached = judge_in(model, COMPUTE[side], TEMPLATES[judge_name], pairs, args, set_name)
                report["results"].append({
                    "set": set_name, "judge": judge_name, "template": TEMPLATES[judge_name], "compared": side,
                    "seconds": {"float32": round(reference_seconds, 1), "compared": round(seconds, 1)},
                    "from_cache": {"float32": reference_cached, "compared": cached},
                    **agreement(reference, judgments),
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


def judge_in(model: str, compute: dict[str, str], template: str, pairs: list, args: argparse.Namespace, set_name: str) -> tuple[list, float, float]:
    """Judge ``pairs`` in both orders with the hf engine computing as ``compute`` (its options,
    :data:`COMPUTE`) says, through ``args.cache`` where given: judgments, seconds, and the share of
    the engine's outputs read from the cache (0.0 without one)."""
    from st_eval.cache import CachedEngine, GenerationCache
    from st_eval.engines import SamplingConfig, make_engine
    from st_eval.judge import Judge, JudgeConfig

    engine = make_engine("hf", model, threads=args.threads, progress=True, **compute)
    outer = CachedEngine(engine, GenerationCache(args.cache)) if args.cache else engine
    try:
        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
        verdict_step = args.verdict_step and template != TEMPLATES["rating"]
        judge = Judge(outer, JudgeConfig(template=template, order="both", sampling=sampling, verdict_step=verdict_step))
        print(f"  {set_name}, {template}, {engine.dtype}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        judgments = judge.judge(pairs, chunk_size=64)
        seconds = time.perf_counter() - start
    finally:
        engine.close()
    looked_up = outer.hits + outer.misses if isinstance(outer, CachedEngine) else 0
    return judgments, seconds, round(outer.hits / looked_up, 4) if looked_up else 0.0


def agreement(reference: list, other: list) -> dict[str, Any]:
    """How far ``other``'s judgments of the same pairs are from ``reference``'s: the share of
    (pair, order) verdicts that are equal (no verdict counts as a verdict of its own), each
    side's order-averaged score over the labelled pairs, and the largest difference of a rating
    (rating judges; None for pairwise judges), and the share of (pair, order) judgments written word
    for word alike (pairwise judges; None for rating judges)."""
    from st_eval.training.evaluation import pair_scores

    if [j.pair_id for j in reference] != [j.pair_id for j in other]:
        raise ValueError("the two runs judged different pairs")
    verdicts = [(a.verdict, b.verdict) for ref, oth in zip(reference, other) for a, b in zip(ref.orders, oth.orders)]
    texts = [(a.raw, b.raw) for ref, oth in zip(reference, other) if not ref.ratings for a, b in zip(ref.orders, oth.orders)]
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
        "verdict_agreement": _share([a == b for a, b in verdicts]),
        "verdicts_given": {"float32": _share([a is not None for a, _ in verdicts]), "compared": _share([b is not None for _, b in verdicts])},
        "score_float32": score(reference),
        "score_compared": score(other),
        "max_rating_difference": round(max(ratings), 4) if ratings else None,
        "same_text": _share([a == b for a, b in texts]),
    }


def _share(flags: list[bool]) -> float | None:
    """The share of true ``flags`` (4 decimals); None where there are none."""
    return round(sum(flags) / len(flags), 4) if flags else None


def markdown(report: dict[str, Any]) -> str:
    from tables import markdown_rows

    lines = [
        f"bfloat16 against float32, model {Path(report['model']).name}, CPU kind {report['cpu_kind']} ({', '.join(report['isa']) or 'none'}), "
        f"both orders, pairwise judges greedy with max_new_tokens={report['max_new_tokens']}"
        + (" and the verdict step (a judgment without a verdict continued from 'Final verdict: [[')" if report.get("verdict_step") else "")
        + (f", first {report['limit']} pairs per set" if report["limit"] else ""),
        "",
    ]
    header = [
        "set", "judge", "compared with float32", "pairs", "verdicts agree", "verdicts given float32 / compared", "score float32", "score compared",
        "max rating diff", "same text", "float32 s", "compared s", "from cache",
    ]

    def cells(r: dict) -> list:
        return [
            r["set"], r["judge"], COMPUTE_NAMES[r["compared"]], r["pairs"], _pct(r["verdict_agreement"]),
            _both_pct(r.get("verdicts_given", {})), _num(r["score_float32"]), _num(r["score_compared"]),
            _num(r["max_rating_difference"]), _pct(r.get("same_text")), r["seconds"]["float32"], r["seconds"]["compared"],
            _both_pct(r.get("from_cache", {})),
        ]

    rows = [{"row": f"{r['set']} {r['judge']} {r['compared']}", "status": "ok", **r} for r in report["results"]]
    return "\n".join(lines + markdown_rows(header, rows, cells))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _both_pct(sides: dict[str, float | None]) -> str:
    """A per-side figure as "float32 / compared" percentages."""
    return " / ".join(_pct(sides.get(side)) for side in ("float32", "compared"))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
