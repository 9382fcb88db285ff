"""``st-eval bench rewardbench|mtbench``: run a judge on a benchmark without any harness."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from st_eval import cli_options as opt
from st_eval.benchmarks.rewardbench import SECTIONS
from st_eval.errors import InputError
from st_eval.records import Judgment, Pair

bench_app = typer.Typer(
    name="bench",
    help="Benchmark a judge: RewardBench (official scoring) and MT-Bench human agreement.",
    no_args_is_help=True,
)

DataFilesOpt = Annotated[
    list[Path] | None,
    typer.Option("--data-files", help="Local files in the benchmark's hub schema (repeatable); default: the hub dataset."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Judge at most N pairs per subset (RewardBench) or per turn (MT-Bench).")]
ModeOpt = Annotated[
    str,
    typer.Option("--mode", help="official: the benchmark's own protocol; both-orders: judge both orders and add position figures."),
]
ReportOpt = Annotated[Path | None, typer.Option("--report-json", help="Write all figures (and per-pair rows) to this JSON file.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Judgments JSONL; a rerun with the same file resumes.")]


def _limit(pairs: list[Pair], limit: int | None, key: str) -> list[Pair]:
    """The first ``limit`` pairs of each group (subset or turn), in input order."""
    if limit is None:
        return pairs
    seen: dict[Any, int] = {}
    kept = []
    for pair in pairs:
        group = pair.metadata.get(key)
        if seen.get(group, 0) < limit:
            seen[group] = seen.get(group, 0) + 1
            kept.append(pair)
    return kept


def _run_info(judgments: Sequence[Judgment], mode: str, seed: int, data_files, samples: int) -> dict[str, Any]:
    first = judgments[0]
    return {
        "mode": mode,
        "seed": seed,
        "data": [str(p) for p in data_files] if data_files else "hub",
        "engine": first.engine,
        "model": first.model,
        "template": first.template,
        "sampling": first.sampling | {"samples": samples},
        "pairs": len(judgments),
    }


@bench_app.command("rewardbench")
@opt.with_judge_options()
def rewardbench(
    data_files: DataFilesOpt = None,
    subset: Annotated[list[str] | None, typer.Option("--subset", help="Only these subsets (repeatable).")] = None,
    limit: LimitOpt = None,
    mode: ModeOpt = "official",
    report_json: ReportOpt = None,
    output: OutputOpt = None,
    model: opt.ModelOpt = None,
    baseline_report: Annotated[
        Path | None,
        typer.Option("--baseline-report", help="A --report-json of another judge on the same pairs (both-orders): adds the paired gain over it, with intervals."),
    ] = None,
    *,
    judging: opt.JudgeOptions,
) -> None:
    """RewardBench: per-subset accuracy, section scores and the headline, computed as the leaderboard does.

    Official mode shows each pair in one random (seeded, recorded) order and scores an
    unparseable verdict as 0.5. both-orders mode judges each pair twice and reports, per subset
    and overall, order-averaged accuracy (chance 0.5), accuracy with both orders right (chance
    0.25) with 95% bootstrap intervals, and the invalid and forced rates: NOT the official
    number. ``--baseline-report`` compares with another judge's both-orders report on the same
    pairs: gain, paired bootstrap 95% interval, exact McNemar p.
    """
    from st_eval.benchmarks.rewardbench import load_rewardbench, score_both_orders, score_rewardbench
    from st_eval.benchmarks.runner import planned_orders, run_benchmark

    from st_eval.benchmarks.judge_figures import compare, figures, load_baseline, pair_row

    pairs = _limit(load_rewardbench(data_files or None, subsets=subset), limit, "subset")
    if pairs:
        planned_orders(pairs[0], mode, judging.seed)  # reject a bad --mode before loading a model
    if baseline_report is not None and mode != "both-orders":
        raise InputError("--baseline-report compares both-orders figures: add --mode both-orders")
    baseline = load_baseline(baseline_report) if baseline_report is not None else None
    judge = judging.build_judge(model, order="given")
    judgments = run_benchmark(judge, pairs, mode=mode, seed=judging.seed, output=output, progress=sys.stderr.isatty() or len(pairs) > 1)
    report: dict[str, Any] = {"benchmark": "rewardbench", **_run_info(judgments, mode, judging.seed, data_files, judging.samples)}
    rows = [pair_row(p, j) for p, j in zip(pairs, judgments)]
    if mode == "official":
        report["official"] = score_rewardbench((r["subset"], r["score"]) for r in rows)
        report["invalid_rate"] = sum(j.orders[0].verdict is None for j in judgments) / len(judgments)
        _print_rewardbench(report["official"], "RewardBench (official: one random order per pair)")
    else:
        report["both_orders"] = score_both_orders(
            (p.metadata["subset"], p.label, [(r.order, r.verdict) for r in j.orders]) for p, j in zip(pairs, judgments)
        )
        report["figures"] = figures(rows, seed=judging.seed)
        _print_both_orders(report["both_orders"])
        _print_figures(report["figures"], judgments[0].model)
        if baseline is not None:
            report["baseline"] = {"report": str(baseline_report), "model": baseline.get("model"), "template": baseline.get("template")}
            report["gain_over_baseline"] = compare(baseline["rows"], rows, where=str(baseline_report), seed=judging.seed)
            _print_gains(report["gain_over_baseline"], baseline, report)
    report["rows"] = rows
    _write_report(report, report_json)


@bench_app.command("rewardbench2")
@opt.with_judge_options()
def rewardbench2(
    data_files: DataFilesOpt = None,
    subset: Annotated[list[str] | None, typer.Option("--subset", help="Only these subsets (repeatable), e.g. --subset Math --subset Ties.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Judge at most N rows per subset.")] = None,
    mode: Annotated[
        str,
        typer.Option("--mode", help="official: best-of-4 shown once, correct answer at a seeded random position; all-positions: at each position (position figures); ratings: each answer rated 1-10."),
    ] = "official",
    ties_template: Annotated[str, typer.Option("--ties-template", help="Rating template for the Ties subset.")] = "rewardbench2-ratings-ties",
    report_json: ReportOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Row results and raw judge outputs (JSONL); a rerun with the same file resumes.")] = None,
    model: opt.ModelOpt = None,
    *,
    judging: opt.JudgeOptions,
) -> None:
    """RewardBench 2: the six subsets and the headline, scored as the RewardBench project scores generative judges.

    Best-of-4 subsets: the judge picks one of four answers (rewardbench2-4way; an unparseable
    verdict scores 0.25) or, with --mode ratings, rates each answer 1-10 (rewardbench2-ratings;
    1/k when the correct answer shares the top rating with k-1 others). Ties is always rated
    and scored with upstream's Ties formula. Headline: the unweighted mean of the six subsets.
    --template replaces the best-of-4 template (a k-way template; a score template with
    --mode ratings).
    """
    from st_eval.benchmarks.rewardbench2 import (
        Protocol, load_rewardbench2, position_figures, run_rewardbench2, score_rewardbench2,
    )

    for name, value in (("--allow-tie", judging.allow_tie), ("--verdict-step", judging.verdict_step)):
        if value:
            raise InputError(f"{name} does not apply to RewardBench 2 (its judges pick one of four answers or write a rating)")
    protocol = Protocol.for_mode(mode, template=judging.template, seed=judging.seed, samples=judging.samples, ties_template=ties_template)
    rows = _limit_rows(load_rewardbench2(data_files or None, subsets=subset), limit)
    engine = judging.build_engine(model)
    results = run_rewardbench2(engine, rows, protocol, judging.sampling(), output=output, progress=sys.stderr.isatty() or len(rows) > 1)
    official = score_rewardbench2(results)
    report: dict[str, Any] = {
        "benchmark": "rewardbench2",
        "mode": mode,
        "seed": judging.seed,
        "data": [str(p) for p in data_files] if data_files else "hub",
        "engine": engine.name,
        "model": engine.model,
        "templates": {"best_of_4": protocol.ratings_template if mode == "ratings" else protocol.kway_template, "ties": protocol.ties_template},
        "sampling": judging.sampling().to_dict() | {"samples": judging.samples},
        "rows_judged": len(results),
        "chance": {"best_of_4": 0.25},
        **official,
    }
    if mode == "all-positions":
        report["positions"] = position_figures(results)
    report["rows"] = [r.to_dict() for r in results]
    _print_rewardbench2(report)
    _write_report(report, report_json)


def _limit_rows(rows: list, limit: int | None) -> list:
    """The first ``limit`` rows of each subset, in input order."""
    if limit is None:
        return rows
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        if seen.get(row.subset, 0) < limit:
            seen[row.subset] = seen.get(row.subset, 0) + 1
            kept.append(row)
    return kept


@bench_app.command("mtbench")
@opt.with_judge_options(allow_tie=True, allow_tie_help="Let the judge answer [[C]] for a tie (the paper's pair prompt does).")
def mtbench(
    data_files: DataFilesOpt = None,
    limit: LimitOpt = None,
    mode: ModeOpt = "official",
    report_json: ReportOpt = None,
    output: OutputOpt = None,
    model: opt.ModelOpt = None,
    *,
    judging: opt.JudgeOptions,
) -> None:
    """MT-Bench human agreement per turn, with and without ties, as the MT-Bench paper computes it.

    Every (question, model pair, turn) is judged in both orders as the paper's pair judge was;
    a verdict that flips with the order is a tie. both-orders mode adds each order's own
    agreement and the position consistency.
    """
    from st_eval.benchmarks.mtbench import load_mtbench_human, mtbench_agreement
    from st_eval.benchmarks.runner import MODES, run_benchmark

    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    pairs = _limit(load_mtbench_human(data_files or None), limit, "turn")
    judge = judging.build_judge(model, order="given")
    judgments = run_benchmark(judge, pairs, mode="both-orders", seed=judging.seed, output=output, progress=sys.stderr.isatty() or len(pairs) > 1)
    report: dict[str, Any] = {"benchmark": "mtbench", **_run_info(judgments, mode, judging.seed, data_files, judging.samples)}
    report["agreement"] = mtbench_agreement((p.metadata, j.verdict) for p, j in zip(pairs, judgments))
    if mode == "both-orders":
        report["agreement_per_order"] = {
            name: mtbench_agreement((p.metadata, j.order(name).verdict) for p, j in zip(pairs, judgments))  # type: ignore[union-attr]
            for name in ("given", "swapped")
        }
        report["position_consistency"] = sum(j.consistent is True for j in judgments) / len(judgments)
    report["rows"] = [{"id": p.id, "verdict": j.verdict, "orders": {r.order: r.verdict for r in j.orders}} for p, j in zip(pairs, judgments)]
    _print_mtbench(report)
    _write_report(report, report_json)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _print_rewardbench(scores: dict[str, Any], title: str) -> None:
    table = Table("section / subset", "n", "score", title=title)
    for section, members in SECTIONS.items():
        if section not in scores["sections"]:
            table.add_row(f"[dim]{section}[/dim]", "", "[dim]missing[/dim]")
            continue
        table.add_row(f"[bold]{section}[/bold]", "", f"[bold]{_fmt(scores['sections'][section])}[/bold]")
        for member in members:
            if member in scores["subsets"]:
                table.add_row(f"  {member}", str(scores["subsets"][member]["n"]), _fmt(scores["subsets"][member]["accuracy"]))
    for other in scores["other_subsets"]:
        table.add_row(f"  {other} (no section)", str(scores["subsets"][other]["n"]), _fmt(scores["subsets"][other]["accuracy"]))
    headline = _fmt(scores["headline"])
    if scores["missing_sections"]:
        headline += f"  (mean of {len(scores['sections'])} sections; missing: {', '.join(scores['missing_sections'])})"
    table.add_row("[bold]headline[/bold]", "", f"[bold]{headline}[/bold]")
    Console().print(table)


def _print_both_orders(figures: dict[str, Any]) -> None:
    table = Table("subset", "n", "given", "swapped", "consistent", title="RewardBench, both orders (NOT the official score)")
    for name, values in figures["subsets"].items():
        table.add_row(name, str(values["n"]), _fmt(values.get("given")), _fmt(values.get("swapped")), _fmt(values["consistent"]))
    per_order = figures["accuracy_per_order"]
    table.add_row("[bold]all[/bold]", str(figures["n"]), _fmt(per_order.get("given")), _fmt(per_order.get("swapped")), _fmt(figures["consistent_accuracy"]))
    Console().print(table)
    Console().print(f"invalid rate: {_fmt(figures['invalid_rate'])}%")
    _print_rewardbench(figures["order_averaged"], "order-averaged official scoring (expected one-random-order score)")


def _ci(figure: dict[str, Any], key: str) -> str:
    ci = figure[f"{key}_ci"]
    return f"{_fmt(figure[key])} [{_fmt(ci['low'])}, {_fmt(ci['high'])}]"


def _print_figures(figures: dict[str, Any], model: str) -> None:
    table = Table(
        "subset", "n", "order-averaged % [95% CI] (chance 50)", "both orders right % [95% CI] (chance 25)", "invalid %", "forced %", "shortened %",
        title=f"{model}: both orders, per subset (bootstrap intervals)",
    )
    for name, f in figures.items():
        bold = name == "all"
        cells = [name, str(f["n"]), _ci(f, "order_averaged"), _ci(f, "consistent"), _fmt(f["invalid_rate"]), _fmt(f["forced_rate"]), _fmt(f["shortened_rate"])]
        table.add_row(*(f"[bold]{c}[/bold]" if bold else c for c in cells))
    Console(width=max(Console().width, 140)).print(table)


def _gain(c: dict[str, Any]) -> str:
    ci = c["gain_ci"]
    text = f"{100 * c['gain']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"
    return text + (f" p={c['mcnemar_p']:.2g}" if c.get("mcnemar_p") is not None else "")


def _print_gains(gains: dict[str, Any], baseline: dict[str, Any], report: dict[str, Any]) -> None:
    title = f"gain of {report['model']} ({report['template']}) over {baseline.get('model')} ({baseline.get('template')}), same pairs"
    table = Table("subset", "n", "order-averaged %", "gain [95% CI]", "both orders right %", "gain [95% CI], McNemar p", title=title)
    for name, c in gains.items():
        avg, both = c["order_averaged"], c["consistent"]
        table.add_row(
            name, str(avg["n"]), f"{_fmt(avg['baseline'])} -> {_fmt(avg['candidate'])}", _gain(avg),
            f"{_fmt(both['baseline'])} -> {_fmt(both['candidate'])}", _gain(both),
        )
    Console(width=max(Console().width, 140)).print(table)


def _print_mtbench(report: dict[str, Any]) -> None:
    table = Table("turn", "judge-human (ties)", "judge-human (no ties)", "human-human (ties)", "human-human (no ties)", title="MT-Bench human agreement (%)")
    for turn, values in report["agreement"].items():
        cells = [values["with_tie"], values["without_tie"], values["human_human"]["with_tie"], values["human_human"]["without_tie"]]
        table.add_row(turn, *(f"{_fmt(c['agreement'])} (n={c['total']})" for c in cells))
    Console().print(table)
    if "position_consistency" in report:
        for name, per_turn in report["agreement_per_order"].items():
            Console().print(f"{name} order only: " + ", ".join(
                f"{t} {_fmt(v['with_tie']['agreement'])}/{_fmt(v['without_tie']['agreement'])}" for t, v in per_turn.items()
            ))
        Console().print(f"position consistency: {_fmt(report['position_consistency'])}%")


def _print_rewardbench2(report: dict[str, Any]) -> None:
    title = f"RewardBench 2 ({report['mode']}; best-of-4 chance 25.0) - {report['model']}"
    table = Table("subset", "n", "score %", "invalid outputs", title=title)
    for name, figures in report["subsets"].items():
        table.add_row(name, str(figures["n"]), _fmt(figures["score"]), str(figures["invalid"]))
    headline = _fmt(report["headline"])
    if report["missing_subsets"]:
        headline += f"  (mean of the subsets present; missing or not computable: {', '.join(report['missing_subsets'])})"
    table.add_row("[bold]headline[/bold]", "", f"[bold]{headline}[/bold]", "")
    Console(width=max(Console().width, 120)).print(table)
    ties = report["subsets"].get("Ties")
    if ties:
        terms = ("tied_accuracy", "ref_accuracy", "correctness_preferred", "correctness_preferred_hard", "correctness_margin_score")
        Console().print("Ties terms: " + ", ".join(f"{t} {_fmt(ties[t])}" for t in terms) + f" ({ties['paired_prompts']} prompts with ref and tied rows)")
    if "positions" in report:
        figures = report["positions"]
        Console().print(
            "accuracy with the correct answer at " + ", ".join(f"{k} {_fmt(v)}" for k, v in figures["accuracy_by_position"].items())
            + "; verdicts named " + ", ".join(f"{k} {_fmt(v)}%" for k, v in figures["verdict_shares"].items())
        )


def _write_report(report: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    from st_eval.jsonl import write_json

    write_json(path, report)
    Console(stderr=True).print(f"report: {path}")
