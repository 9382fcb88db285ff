"""Judging on a Ray cluster against one process: pairs/s of the same judge core on the same pairs.

Each row runs in its own process and judges the same LLMBar pairs (as throughput.py picks them)
with the same judge (``pairwise-v1``, greedy, given order) through ``Judge.judge``:

  in-process@T  the hf engine in the row's process, T torch threads
  ray@N         the same engine as N replicas (one CPU and one torch thread each) on a Ray
                cluster the row starts on this machine (``--cluster local``): the whole Ray Data
                path, from the prompts' dataset to the judgments streamed back

Columns: start-up (in process: the engine with its weights; on the cluster: Ray's start and
the probe that builds the engine once on a worker for its identity), the judging's wall time
(on the cluster it includes each job's replica start-up: a job loads the weights on every
replica), pairs/s, and whether verdicts and texts equal the first row's.

A machine with two cores cannot show a speed-up: two replicas of one thread have the cores
that one process of two threads has. What the rows measure there is the cluster's overhead:
compare ``in-process@1`` with ``ray@1`` (the same compute, one core) and ``in-process@2``
with ``ray@2`` (the whole machine).

    python benchmarks/cluster.py --pairs 16 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from throughput import parse_args_or_run_worker, run_child_row

REPO = Path(__file__).resolve().parent.parent
ROWS = "in-process@1,ray@1,in-process@2,ray@2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="judge model (default: the embedded SmolLM2-135M judge)")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rows", default=ROWS, help=f"comma-separated rows (default {ROWS})")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cluster-cpu.json")
    args = parse_args_or_run_worker(parser, run_worker)
    if args is None:
        return

    from tables import write_outputs
    from throughput import judge_pairs

    from st_eval.embedded import resolve_model

    pairs, source = judge_pairs(args.pairs)
    spec = {"model": resolve_model(args.model), "pairs": [p.to_dict() for p in pairs], "source": source, "max_new_tokens": args.max_new_tokens}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in args.rows.split(","):
            print(f"running {row} ...", file=sys.stderr, flush=True)
            results.append(run_child_row(Path(__file__), row, spec, Path(tmp)))
    report = {"settings": {k: v for k, v in spec.items() if k != "pairs"} | {"pairs": len(pairs)}, "rows": compare(results)}
    write_outputs(args.out, report, markdown(report))


def compare(results: list[dict]) -> list[dict]:
    """Each row with its verdicts and texts set against the first finished row's."""
    base = next((r for r in results if r["status"] == "ok"), None)
    for r in results:
        if r["status"] == "ok" and base is not None:
            r["verdicts_equal"] = sum(a == b for a, b in zip(r["verdicts"], base["verdicts"])) / len(base["verdicts"])
            r["texts_equal"] = sum(a == b for a, b in zip(r["texts"], base["texts"])) / len(base["texts"])
            r["wall_vs_first"] = r["wall_s"] / base["wall_s"]
    return results


def markdown(report: dict) -> str:
    from tables import markdown_rows

    settings = report["settings"]
    header = ["row", "start s", "judging s", "pairs/s", "x first row's time", "verdicts equal", "texts equal"]
    lines = [
        f"{settings['pairs']} pairs from {settings['source']}, `pairwise-v1`, greedy, given order, max_new_tokens={settings['max_new_tokens']}",
        "",
        *markdown_rows(header, report["rows"], lambda r: [
            r["row"], f"{r['startup_s']:.1f}", f"{r['wall_s']:.1f}", f"{r['pairs_per_s']:.3f}", f"{r['wall_vs_first']:.2f}x",
            f"{r['verdicts_equal']:.0%}", f"{r['texts_equal']:.0%}",
        ]),
    ]
    return "\n".join(lines)


def run_worker(row: str, spec: dict) -> None:
    from st_eval.engines import SamplingConfig, make_engine
    from st_eval.judge import Judge, JudgeConfig
    from st_eval.training.similar_instruction import pair_from_dict

    kind, _, count = row.partition("@")
    pairs = [pair_from_dict(p) for p in spec["pairs"]]
    config = JudgeConfig(template="pairwise-v1", order="given", sampling=SamplingConfig(max_new_tokens=spec["max_new_tokens"]))
    began = time.perf_counter()
    if kind == "in-process":
        engine = make_engine("hf", spec["model"], threads=int(count), progress=False)
    elif kind == "ray":
        from st_eval.cluster import ClusterConfig
        from st_eval.engines.ray_data import EngineSpec, RayEngine

        engine = RayEngine(EngineSpec("hf", spec["model"], {"threads": 1, "progress": False}), ClusterConfig(address="local", replicas=int(count)))
    else:
        raise SystemExit(f"unknown row {row!r}: in-process@THREADS or ray@REPLICAS")
    startup = time.perf_counter() - began
    start = time.perf_counter()
    judged = Judge(engine, config).judge(pairs)
    wall = time.perf_counter() - start
    result = {
        "row": row, "status": "ok", "startup_s": startup, "wall_s": wall, "pairs_per_s": len(pairs) / wall,
        "verdicts": [j.verdict for j in judged], "texts": [j.orders[0].raw[0] for j in judged],
    }
    Path(spec["result_path"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
