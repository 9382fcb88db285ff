"""Every self-taught judge the project trained, against its own seed, on every set, in one table.

Reads the committed run reports (``benchmarks/results/training/*/report.json``: each run measured
its seed and every trained iteration in one dtype, both orders, with paired bootstrap gains over
the seed on the same pairs) and the shipped judge's served reports
(``st_eval/judges/<name>/report-*.json``, against the seed under the same template). No judge is
run: the table is what those reports say, so it can be rebuilt on any machine.

Per row and set: the order-averaged accuracy (chance 0.50) and the gain over that run's seed in
points with its 95% paired bootstrap interval. Runs differ in template, dtype and held-out
split, so compare a gain with its own seed, not one run's accuracy with another's (the seed
itself reads 0.394-0.428 on PandaLM dev and 0.518-0.561 on LLMBar across them). "The longer answer
wins" on the same pairs is the first row (synthetic held-out: each run's own pairs, not kept).

    python benchmarks/candidates_table.py            # writes benchmarks/results/candidates.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from tables import markdown_rows  # noqa: E402

RUNS = REPO / "benchmarks" / "results" / "training"
SHIPPED = REPO / "st_eval" / "judges" / "smollm2-135m-st"
LLMBAR_SETS = ["llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual", "llmbar-adver-neighbor", "llmbar-natural"]
#: (column, key in a run report's gains, key in a served report's figures)
COLUMNS = [
    ("synthetic held-out", "synthetic", None),
    ("PandaLM dev", "pandalm", ("pandalm", "all")),
    ("LLMBar all", "llmbar", ("llmbar", "all")),
    *((name.removeprefix("llmbar-adver-").removeprefix("llmbar-"), f"llmbar/{name}", ("llmbar", name)) for name in LLMBAR_SETS),
]


def cell(gain: dict[str, Any] | None) -> str:
    """``0.647 +24.4 [+18.7, +30.6]``: accuracy, gain in points and its interval."""
    if not gain:
        return "-"
    ci = gain["gain_ci"]
    return f"{gain['candidate']:.3f} {100 * gain['gain']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"


def pairs(gains: dict[str, Any], keys: list[str]) -> str:
    """``577 / 487 / 419``: how many pairs each of the first sets held (a demo run cuts them)."""
    return " / ".join(str(gains.get(key, {}).get("order_averaged", {}).get("n", "-")) for key in keys)


def run_rows(folder: Path) -> list[list[str]]:
    """One row per trained iteration of a run: its accuracy and gain over the run's seed per set."""
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    best = report.get("best", {}).get("iteration")
    rows = []
    for iteration, gains in sorted(report.get("gains_over_seed", {}).items(), key=lambda item: int(item[0])):
        label = f"`{folder.name}` it {iteration}" + (" (selected)" if int(iteration) == best and len(report["gains_over_seed"]) > 1 else "")
        cells = [cell(gains.get(key, {}).get("order_averaged")) for _, key, _ in COLUMNS]
        rows.append([label, str(report.get("template", "-")).split("/")[-1], pairs(gains, ["synthetic", "pandalm", "llmbar"]), *cells])
    return rows


def served_row(folder: Path) -> tuple[list[str], list[str]] | None:
    """The shipped judge as served (its card's template), and the "longer wins" row, from its reports."""
    reports = {}
    for name in ("llmbar", "pandalm"):
        path = folder / f"report-{name}.json"
        if path.exists():
            reports[name] = json.loads(path.read_text(encoding="utf-8"))
    if not reports:
        return None
    served, longer = [], []
    counts = " / ".join(["-", *(str(reports[name]["figures"]["all"]["n"]) if name in reports else "-" for name in ("pandalm", "llmbar"))])
    for _, _, where in COLUMNS:
        report = reports.get(where[0]) if where else None
        if report is None or where[1] not in report["figures"]:
            served.append("-")
            longer.append("-")
            continue
        gain = (report.get("gain_over_baseline") or {}).get(where[1], {}).get("order_averaged")
        served.append(cell(gain) if gain else f"{report['figures'][where[1]]['order_averaged']:.3f}")
        longer.append(f"{report['figures'][where[1]]['longer_wins']:.3f}")
    template = next(iter(reports.values()))["template"]
    return [f"`{folder.name}` as served", template, counts, *served], ["the longer answer wins", "-", counts, *longer]


def table(runs: Path, shipped: Path) -> str:
    header = ["judge", "template", "pairs: held-out / PandaLM / LLMBar", *(name for name, _, _ in COLUMNS)]
    rows: list[list[str]] = []
    served = served_row(shipped)
    if served:
        rows.append(served[1])
    for folder in sorted(p.parent for p in runs.glob("*/report.json")):
        rows += run_rows(folder)
    if served:
        rows.append(served[0])
    lines = [
        "Self-taught judges against their own seed, from the committed reports (order-averaged accuracy, chance 0.50; "
        "gain over the seed of the same run in points, 95% paired bootstrap interval; both orders).",
        "",
        *markdown_rows(header, [{"status": "ok", "cells": row} for row in rows], lambda r: r["cells"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RUNS, help="folder of run folders, each with its report.json")
    parser.add_argument("--shipped", type=Path, default=SHIPPED, help="the shipped judge's folder (its report-*.json)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "candidates.md")
    args = parser.parse_args(argv)
    from st_eval.jsonl import write_text

    text = table(args.runs, args.shipped)
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
