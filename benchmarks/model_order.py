"""Does a judge prefer the stronger model's answer? A check on data no setting was chosen on.

MT-Bench ships six models' answers to its 80 questions and their published order (human and
GPT-4 ratings in the MT-Bench paper): gpt-4 > claude-v1 ~ gpt-3.5-turbo > vicuna-13b > alpaca-13b
> llama-13b. On every question's first turn, each strong model's answer (gpt-4, claude-v1,
gpt-3.5-turbo) meets each weak model's (alpaca-13b, llama-13b): 480 pairs, and a judge is right
when the strong model's answer wins. These are model-level labels, not a person's verdict on
each pair, so read the figures as a direction; "the longer answer wins" is printed beside them.

Each judge runs under each template (``--templates``), float32, each pair in one order (the
rating and choice judges this is for give the same verdict in either order), and the templates
are compared on the same pairs (paired bootstrap 95% interval). Its first use: the reading
length chosen for the shipped judge on LLMBar and PandaLM dev (docs/training.md).

    python benchmarks/model_order.py --judges smollm2-135m,smollm2-135m-st \\
        --templates rating-yesno-v1,rating-yesno-long-v1 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from tables import markdown_rows, write_outputs  # noqa: E402

STRONG = ("gpt-4", "claude-v1", "gpt-3.5-turbo")
WEAK = ("alpaca-13b", "llama-13b")


def model_order_pairs(folder: Path) -> list[Any]:
    """Strong-against-weak pairs on MT-Bench's first turns; the strong answer is ``response_a``."""
    from st_eval.pair_files import read_rows
    from st_eval.records import Message, Pair

    questions = {row["question_id"]: row["turns"][0] for _, row in read_rows(folder / "question.jsonl")}
    answers = {
        model: {row["question_id"]: row["choices"][0]["turns"][0] for _, row in read_rows(folder / "model_answer" / f"{model}.jsonl")}
        for model in (*STRONG, *WEAK)
    }
    return [
        Pair(f"{qid}-{strong}-{weak}", [Message("user", questions[qid])], answers[strong][qid], answers[weak][qid], label="A")
        for qid in sorted(questions)
        for strong in STRONG
        for weak in WEAK
        if qid in answers[strong] and qid in answers[weak]
    ]


def judged_rows(model: str, template: str, pairs: list[Any], threads: int | None) -> list[dict[str, Any]]:
    """The bench commands' report row per pair (its score: 1 when the strong model's answer wins,
    0.5 on a tie or no verdict, 0 otherwise; which answer is longer)."""
    from st_eval.benchmarks.judge_figures import pair_row
    from st_eval.embedded import resolve_model
    from st_eval.engines import make_engine
    from st_eval.judge import Judge, JudgeConfig

    engine = make_engine("hf", resolve_model(model), dtype="float32", threads=threads)
    judgments = Judge(engine, JudgeConfig(template=template, order="given")).judge(pairs, chunk_size=32)
    return [pair_row(pair, judgment) for pair, judgment in zip(pairs, judgments)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judges", default="smollm2-135m,smollm2-135m-st", help="comma-separated judge names or folders")
    parser.add_argument("--templates", default="rating-yesno-v1,rating-yesno-long-v1", help="comma-separated; the first is the baseline")
    parser.add_argument("--threads", type=int, help="torch threads (default: the engine's choice)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data")) / "mt_bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "model-order-mtbench.json")
    args = parser.parse_args(argv)
    from st_eval.benchmarks.judge_figures import ALL, compare, figures

    if not (args.data / "question.jsonl").exists():
        raise SystemExit(f"{args.data}: no MT-Bench question.jsonl and model_answer/ here (set ST_EVAL_SHARED_DATA)")
    pairs = model_order_pairs(args.data)
    templates = args.templates.split(",")
    rows = []
    for model in args.judges.split(","):
        judged = {}
        for template in templates:
            print(f"{model} under {template} ...", file=sys.stderr, flush=True)
            judged[template] = judged_rows(model, template, pairs, args.threads)
            overall = figures(judged[template])[ALL]
            row = {"row": f"{model} {template}", "status": "ok", "judge": model, "template": template, "n": overall["n"],
                   "accuracy": overall["order_averaged"], "ci": [overall["order_averaged_ci"]["low"], overall["order_averaged_ci"]["high"]]}
            if template != templates[0]:
                gain = compare(judged[templates[0]], judged[template], where=f"{model} under {templates[0]}")[ALL]["order_averaged"]
                row["vs_first_template"] = {"gain": gain["gain"], "ci": [gain["gain_ci"]["low"], gain["gain_ci"]["high"]]}
            rows.append(row)
    report = {"pairs": len(pairs), "strong": STRONG, "weak": WEAK, "longer_wins": overall["longer_wins"], "rows": rows}
    table = "\n".join([
        f"MT-Bench first turns: {', '.join(STRONG)} against {', '.join(WEAK)}, {len(pairs)} pairs; right = the stronger "
        f"model's answer wins (chance 50); the longer answer wins {100 * report['longer_wins']:.1f}%; float32, 95% bootstrap intervals",
        "",
        *markdown_rows(
            ["judge", "template", "n", "accuracy %", f"against {templates[0]}, paired"], rows,
            lambda r: [r["judge"], r["template"], r["n"], f"{100 * r['accuracy']:.1f} [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]",
                       f"{100 * r['vs_first_template']['gain']:+.1f} [{100 * r['vs_first_template']['ci'][0]:+.1f}, {100 * r['vs_first_template']['ci'][1]:+.1f}]"
                       if "vs_first_template" in r else "-"],
        ),
    ])
    write_outputs(args.out, report, table)


if __name__ == "__main__":
    main()
