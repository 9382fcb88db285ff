"""``st-eval bench rewardbench|rewardbench2|mtbench|pandalm``: run a judge on a benchmark without any harness."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from st_eval import cli_options as opt
from st_eval.benchmarks.judge_figures import ALL
from st_eval.benchmarks.rewardbench import SECTIONS
from st_eval.errors import InputError
from st_eval.records import Judgment, Pair
from st_eval.resume import start_output
from st_eval.summary import BENCH_RULE, invalid_warning

bench_app = typer.Typer(
    name="bench",
    help="Benchmark a judge: RewardBench and RewardBench 2 (official scoring), MT-Bench and PandaLM human agreement.",
    no_args_is_help=True,
)

DataFilesOpt = Annotated[
    list[Path] | None,
    typer.Option("--data-files", help="Local files in the benchmark's hub schema (repeatable); default: the hub dataset."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Judge at most N pairs per subset (RewardBench) or per turn (MT-Bench).")]
ModeOpt = Annotated[
    str,
    typer.Option("--mode", help="official: the benchmark's own protocol; both-orders (or both, as --order says): judge both orders and add position figures."),
]
ReportOpt = Annotated[Path | None, typer.Option("--report-json", help="Write all figures (and per-pair rows) to this JSON file.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Judgments JSONL; a rerun of the same run with the same file resumes.")]
#: a both-orders report of another judge on the same pairs, for the paired gain over it
BaselineOpt = Annotated[
    Path | None,
    typer.Option("--baseline-report", help="A --report-json of another judge on the same pairs (both orders): adds the paired gain over it, with intervals."),
]


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
    overwrite: opt.OverwriteOpt = False,
    model: opt.ModelOpt = None,
    baseline_report: BaselineOpt = None,
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
    from st_eval.benchmarks.judge_figures import figures, load_baseline, pair_row, rates
    from st_eval.benchmarks.rewardbench import load_rewardbench, score_both_orders, score_rewardbench
    from st_eval.benchmarks.runner import MODES, run_benchmark

    mode = opt.check_mode(mode, MODES)  # bad flags fail before any data or model loads
    judging.check(model)
    if baseline_report is not None and mode != "both-orders":
        raise InputError("--baseline-report compares both-orders figures: add --mode both-orders")
    pairs = _limit(load_rewardbench(data_files or None, subsets=subset), limit, "subset")
    baseline = load_baseline(baseline_report) if baseline_report is not None else None
    start_output(output, overwrite)
    judge = judging.build_judge(model, order="given")
    judgments = run_benchmark(judge, pairs, mode=mode, seed=judging.seed, output=output, progress=sys.stderr.isatty() or len(pairs) > 1)
    report: dict[str, Any] = {"benchmark": "rewardbench", **_run_info(judgments, mode, judging.seed, data_files, judging.samples)}
    rows = [pair_row(p, j) for p, j in zip(pairs, judgments)]
    report.update(rates(rows))
    if mode == "official":
        report["official"] = score_rewardbench((r["subset"], r["score"]) for r in rows)
        _print_rewardbench(report, rows)
    else:
        report["both_orders"] = score_both_orders(
            (p.metadata["subset"], p.label, [(r.order, r.verdict) for r in j.orders]) for p, j in zip(pairs, judgments)
        )
        report["figures"] = figures(rows, seed=judging.seed)
        _print_both_orders(report)
        if baseline is not None:
            _add_gains(report, rows, baseline, baseline_report, judging.seed)
    report["rows"] = rows
    _write_report(report, report_json)


@bench_app.command("pandalm")
@opt.with_judge_options()
def pandalm(
    data_files: Annotated[Path, typer.Option("--data-files", help="PandaLM's test set: a release file (testset-v1.json, testset-v1-dev.json) or its folder.")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Judge only the first N rows with a majority label.")] = None,
    report_json: ReportOpt = None,
    output: OutputOpt = None,
    overwrite: opt.OverwriteOpt = False,
    model: opt.ModelOpt = None,
    baseline_report: BaselineOpt = None,
    *,
    judging: opt.JudgeOptions,
) -> None:
    """PandaLM human agreement: 7B models' answers to Self-Instruct requests, three annotators each.

    Every row with a majority label is judged in both orders. Binary accuracy on the rows whose
    gold is not a tie (chance 50), order-averaged and right in both orders, with 95% bootstrap
    intervals; 3-way accuracy with ties; "the longer answer wins" on the same rows, and the
    published judges' figures when the rows are the development half's 487.
    """
    from st_eval.benchmarks.judge_figures import ALL, figures, load_baseline, pair_row
    from st_eval.benchmarks.pandalm import load_pandalm, published_for, three_way
    from st_eval.benchmarks.runner import run_benchmark

    judging.check(model)  # bad flags fail before any data or model loads
    pairs, counts = load_pandalm(data_files)
    pairs = pairs[:limit] if limit else pairs
    baseline = load_baseline(baseline_report) if baseline_report is not None else None
    start_output(output, overwrite)
    judge = judging.build_judge(model, order="given")
    judgments = run_benchmark(judge, pairs, mode="both-orders", seed=judging.seed, output=output, progress=sys.stderr.isatty() or len(pairs) > 1)
    binary = [(p, j) for p, j in zip(pairs, judgments) if p.label in ("A", "B")]
    rows = [{**pair_row(p, j), "subset": ALL} for p, j in binary]
    report: dict[str, Any] = {"benchmark": "pandalm", **_run_info(judgments, "both-orders", judging.seed, [data_files], judging.samples)}
    report["counts"] = counts | {"judged": len(pairs), "judged_non_tie": len(rows)}
    report["figures"] = figures(rows, seed=judging.seed)
    report["three_way"] = three_way(pairs, judgments)
    report["published"] = published_for(pairs)
    _print_pandalm(report, judgments[0].model)
    if baseline is not None:
        _add_gains(report, rows, baseline, baseline_report, judging.seed)
    report["rows"] = rows
    _write_report(report, report_json)


def _add_gains(report: dict[str, Any], rows: list[dict], baseline: dict[str, Any], baseline_report: Path, seed: int) -> None:
    """Add and print the paired gain of this report's rows over a baseline judge's report on the same pairs."""
    from st_eval.benchmarks.judge_figures import compare

    report["baseline"] = {"report": str(baseline_report), "model": baseline.get("model"), "template": baseline.get("template")}
    report["gain_over_baseline"] = compare(baseline["rows"], rows, where=str(baseline_report), seed=seed)
    _print_gains(report["gain_over_baseline"], baseline, report)


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
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Row results and raw judge outputs (JSONL); a rerun of the same run with the same file resumes.")] = None,
    overwrite: opt.OverwriteOpt = False,
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
    judging.check(model)  # bad flags fail before any data or model loads
    rows = _limit_rows(load_rewardbench2(data_files or None, subsets=subset), limit)
    start_output(output, overwrite)
    engine = judging.build_engine(model)
    results = run_rewardbench2(engine, rows, protocol, judging.sampling(), output=output, progress=sys.stderr.isatty() or len(rows) > 1)
    official = score_rewardbench2(results, samples=judging.samples)
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
    overwrite: opt.OverwriteOpt = False,
    model: opt.ModelOpt = None,
    *,
    judging: opt.JudgeOptions,
) -> None:
    """MT-Bench human agreement per turn, with and without ties, as the MT-Bench paper computes it.

    Every (question, model pair, turn) is judged in both orders as the paper's pair judge was;
    a verdict that flips with the order is a tie. both-orders mode adds each order's own
    agreement and the position consistency.
    """
    from st_eval.benchmarks.judge_figures import outcome_counts, rates
    from st_eval.benchmarks.mtbench import load_mtbench_human, mtbench_agreement
    from st_eval.benchmarks.runner import MODES, run_benchmark

    mode = opt.check_mode(mode, MODES)  # bad flags fail before any data or model loads
    judging.check(model)
    pairs = _limit(load_mtbench_human(data_files or None), limit, "turn")
    start_output(output, overwrite)
    judge = judging.build_judge(model, order="given")
    judgments = run_benchmark(judge, pairs, mode="both-orders", seed=judging.seed, output=output, progress=sys.stderr.isatty() or len(pairs) > 1)
    report: dict[str, Any] = {"benchmark": "mtbench", **_run_info(judgments, mode, judging.seed, data_files, judging.samples)}
    report["agreement"] = mtbench_agreement((p.metadata, j.verdict) for p, j in zip(pairs, judgments))
    counts = [{"turn": p.metadata["turn"], **outcome_counts(j)} for p, j in zip(pairs, judgments)]
    report.update(rates(counts))
    report["rates_per_turn"] = {f"turn{t}": rates([c for c in counts if c["turn"] == t]) for t in sorted({c["turn"] for c in counts})}
    if mode == "both-orders":
        report["agreement_per_order"] = {
            name: mtbench_agreement((p.metadata, j.order(name).verdict) for p, j in zip(pairs, judgments))  # type: ignore[union-attr]
            for name in ("given", "swapped")
        }
        report["position_consistency"] = sum(j.consistent is True for j in judgments) / len(judgments)
    report["rows"] = [{"id": p.id, "verdict": j.verdict, **c} for p, j, c in zip(pairs, judgments, counts)]
    _print_mtbench(report)
    _write_report(report, report_json)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _console() -> Console:
    """Where bench tables go: the terminal at its width; a file or CI log at 160 columns, so a
    table's columns are never squeezed below their content there (rich's default is 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _warn_invalid(rate: float | None, what: str = "judge outputs") -> None:
    warning = invalid_warning(rate, what)
    if warning:
        Console(stderr=True).print(f"[yellow]{escape(warning)}[/yellow]", soft_wrap=True)


def _rate_cells(figures: dict[str, Any]) -> list[str]:
    return [_fmt(figures["invalid_rate"]), _fmt(figures["forced_rate"]), _fmt(figures["shortened_rate"])]


RATE_COLUMNS = ("invalid %", "forced %", "shortened %")
#: what the rate columns count, under every bench table that has them
RATE_CAPTION = "invalid: judged orders with no parseable verdict; forced: samples whose letter --verdict-step wrote; shortened: pairs cut to fit"


def _print_rewardbench(report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Official mode: the leaderboard's sections and subsets, each with its invalid, forced and
    shortened rates beside the score (an unparseable verdict scores 0.5)."""
    from st_eval.benchmarks.judge_figures import rates

    scores = report["official"]
    by_subset: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_subset.setdefault(row["subset"], []).append(row)
    table = Table("section / subset", "n", f"score % ({BENCH_RULE})", *RATE_COLUMNS, title=f"RewardBench (official: one random order per pair) - {report['model']}", caption=RATE_CAPTION)
    for section, members in SECTIONS.items():
        if section not in scores["sections"]:
            table.add_row(f"[dim]{section}[/dim]", "", "[dim]missing[/dim]", "", "", "")
            continue
        present = [m for m in members if m in scores["subsets"]]
        section_rows = [r for m in present for r in by_subset[m]]
        table.add_row(f"[bold]{section}[/bold]", str(len(section_rows)), f"[bold]{_fmt(scores['sections'][section])}[/bold]", *_rate_cells(rates(section_rows)))
        for member in present:
            table.add_row(f"  {member}", str(scores["subsets"][member]["n"]), _fmt(scores["subsets"][member]["accuracy"]), *_rate_cells(rates(by_subset[member])))
    for other in scores["other_subsets"]:
        table.add_row(f"  {other} (no section)", str(scores["subsets"][other]["n"]), _fmt(scores["subsets"][other]["accuracy"]), *_rate_cells(rates(by_subset[other])))
    headline = _fmt(scores["headline"])
    if scores["missing_sections"]:
        headline += f"  (mean of {len(scores['sections'])} sections; missing: {', '.join(scores['missing_sections'])})"
    table.add_row("[bold]headline[/bold]", str(len(rows)), f"[bold]{headline}[/bold]", *_rate_cells(report))
    _console().print(table)
    _warn_invalid(report["invalid_rate"], "judged orders")


def _ci(figure: dict[str, Any], key: str) -> str:
    ci = figure[f"{key}_ci"]
    return f"{_fmt(figure[key])} [{_fmt(ci['low'])}, {_fmt(ci['high'])}]"


def _print_both_orders(report: dict[str, Any]) -> None:
    """Both-orders mode in one table: per subset and overall, each order's accuracy, the
    order-averaged score and right-in-both-orders with intervals, and the invalid, forced and
    shortened rates; section rows and the headline apply the official scoring to the
    order-averaged scores (NOT the official one-random-order number)."""
    per_order, figures = report["both_orders"], report["figures"]
    averaged = per_order["order_averaged"]
    table = Table(
        "section / subset", "n", "given %", "swapped %", f"order-averaged % [95% CI] (chance 50; {BENCH_RULE})",
        "both orders right % [95% CI] (chance 25)", *RATE_COLUMNS,
        title=f"RewardBench, both orders (NOT the official score) - {report['model']} ({report['template']})", caption=RATE_CAPTION,
    )
    listed = set()
    for section, members in SECTIONS.items():
        present = [m for m in members if m in figures]
        if present:
            table.add_row(f"[bold]{section}[/bold]", "", "", "", f"[bold]{_fmt(averaged['sections'][section])}[/bold]", "", "", "", "")
        for member in present:
            listed.add(member)
            table.add_row(f"  {member}", *_both_orders_cells(figures[member], per_order["subsets"].get(member, {})))
    for name in figures:
        if name not in listed and name != ALL:
            table.add_row(f"  {name}", *_both_orders_cells(figures[name], per_order["subsets"].get(name, {})))
    table.add_row("[bold]all[/bold]", *_both_orders_cells(figures[ALL], per_order["accuracy_per_order"]))
    headline = _fmt(averaged["headline"])
    if averaged["missing_sections"]:
        headline += f" (mean of {len(averaged['sections'])} sections)"
    table.add_row("[bold]headline[/bold]", "", "", "", f"[bold]{headline}[/bold]", "", "", "", "")
    _console().print(table)
    _warn_invalid(figures[ALL]["invalid_rate"], "judged orders")


def _both_orders_cells(figure: dict[str, Any], orders: dict[str, Any]) -> list[str]:
    return [str(figure["n"]), _fmt(orders.get("given")), _fmt(orders.get("swapped")), _ci(figure, "order_averaged"), _ci(figure, "consistent"), *_rate_cells(figure)]


def _gain(c: dict[str, Any], *, with_p: bool) -> str:
    ci = c["gain_ci"]
    text = f"{100 * c['gain']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"
    return text + (f" p={c['mcnemar_p']:.2g}" if with_p and c.get("mcnemar_p") is not None else "")


def _print_gains(gains: dict[str, Any], baseline: dict[str, Any], report: dict[str, Any]) -> None:
    """Paired gains over a baseline judge; McNemar's p only where the docs put it, beside the
    right-in-both-orders gain (right/wrong per pair)."""
    title = f"gain of {report['model']} ({report['template']}) over {baseline.get('model')} ({baseline.get('template')}), same pairs"
    table = Table("subset", "n", "order-averaged %", "gain [95% CI]", "both orders right %", "gain [95% CI], McNemar p", title=title)
    for name, c in gains.items():
        avg, both = c["order_averaged"], c["consistent"]
        table.add_row(
            name, str(avg["n"]), f"{_fmt(avg['baseline'])} -> {_fmt(avg['candidate'])}", _gain(avg, with_p=False),
            f"{_fmt(both['baseline'])} -> {_fmt(both['candidate'])}", _gain(both, with_p=True),
        )
    _console().print(table)


def _print_mtbench(report: dict[str, Any]) -> None:
    table = Table(
        "turn", "judge-human (ties)", "judge-human (no ties)", "human-human (ties)", "human-human (no ties)", *RATE_COLUMNS,
        title=f"MT-Bench human agreement (%; an unparseable verdict disagrees) - {report['model']}", caption=RATE_CAPTION,
    )
    for turn, values in report["agreement"].items():
        cells = [values["with_tie"], values["without_tie"], values["human_human"]["with_tie"], values["human_human"]["without_tie"]]
        table.add_row(turn, *(f"{_fmt(c['agreement'])} (n={c['total']})" for c in cells), *_rate_cells(report["rates_per_turn"].get(turn, report)))
    _console().print(table)
    if "position_consistency" in report:
        for name, per_turn in report["agreement_per_order"].items():
            Console().print(f"{name} order only: " + ", ".join(
                f"{t} {_fmt(v['with_tie']['agreement'])}/{_fmt(v['without_tie']['agreement'])}" for t, v in per_turn.items()
            ))
        Console().print(f"position consistency: {_fmt(report['position_consistency'])}%")
    _warn_invalid(report["invalid_rate"], "judged orders")


def _print_pandalm(report: dict[str, Any], model: str) -> None:
    f = report["figures"]["all"]
    table = Table("judge / rule", "n", f"binary % [95% CI] (chance 50; {BENCH_RULE})", "both orders right % [95% CI] (chance 25)", *RATE_COLUMNS,
                  title=f"PandaLM human agreement, both orders - {model}", caption=RATE_CAPTION)
    table.add_row(f"[bold]{model}[/bold]", str(f["n"]), _ci(f, "order_averaged"), _ci(f, "consistent"), *_rate_cells(f))
    table.add_row("the longer answer wins", str(f["n"]), _fmt(f["longer_wins"]), "", "", "", "")
    for name, value in (report["published"] or {}).items():
        table.add_row(f"{name} (published, one order)", str(f["n"]), _fmt(value), "", "", "", "")
    _console().print(table)
    three = report["three_way"]
    Console().print(
        f"3-way accuracy with ties (n={three['n']}, {report['counts']['ties']} tied rows): {_fmt(three['accuracy'])}%; "
        f"the judge said tie in {_fmt(three['judge_tie_rate'])}% of orders; rows without a majority left out: {report['counts']['no_majority']}"
    )
    _warn_invalid(f["invalid_rate"], "judged orders")


def _print_rewardbench2(report: dict[str, Any]) -> None:
    title = f"RewardBench 2 ({report['mode']}; best-of-4 chance 25.0; an unparseable verdict scores 0.25, rating -1) - {report['model']}"
    table = Table("subset", "n", "score %", "invalid outputs", "invalid %", title=title)
    for name, figures in report["subsets"].items():
        table.add_row(name, str(figures["n"]), _fmt(figures["score"]), str(figures["invalid"]), _fmt(figures["invalid_rate"]))
    headline = _fmt(report["headline"])
    if report["missing_subsets"]:
        headline += f"  (mean of the subsets present; missing or not computable: {', '.join(report['missing_subsets'])})"
    invalid = sum(figures["invalid"] for figures in report["subsets"].values())
    table.add_row("[bold]headline[/bold]", str(report["rows_judged"]), f"[bold]{headline}[/bold]", str(invalid), _fmt(report["invalid_rate"]))
    _console().print(table)
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
    _warn_invalid(report["invalid_rate"])


def _write_report(report: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    from st_eval.jsonl import write_json

    write_json(path, report)
    Console(stderr=True).print(f"report: {path}")
