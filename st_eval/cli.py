"""The ``st-eval`` command line."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.rich_utils
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from st_eval import cli_options as opt
from st_eval.benchmarks.cli import bench_app
from st_eval.cache import CachedEngine
from st_eval.engines import Engine
from st_eval.errors import InputError, StEvalError
from st_eval.gate.command import gate_command
from st_eval.jsonl import JsonlAppender, read_jsonl
from st_eval.judge import Judge
from st_eval.records import Judgment, Message, Pair
from st_eval.resume import check_producer, start_output
from st_eval.serve import serve_command
from st_eval.summary import ACCURACY_RULE, JudgmentSummary, invalid_warning, summarize
from st_eval.training.command import train_command, train_worker_command

app = typer.Typer(
    name="st-eval",
    help="Self-taught LLM judges: judge pairs, benchmark judges, gate releases, train new judges.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
#: ``--help`` is laid out at least this wide (a narrower terminal wraps its lines): below it,
#: rich squeezes the options table and cuts option names ("--candidate-mod…")
HELP_MIN_WIDTH = 120


def _widen_help() -> None:
    """Lay ``--help`` out at the terminal's width or :data:`HELP_MIN_WIDTH`, whichever is wider,
    unless ``TERMINAL_WIDTH`` (typer's own setting) says otherwise."""
    if not os.environ.get("TERMINAL_WIDTH"):
        typer.rich_utils.MAX_WIDTH = max(shutil.get_terminal_size().columns, HELP_MIN_WIDTH)


_widen_help()


@app.command()
@opt.with_judge_options()
def judge(
    file: Annotated[Path | None, typer.Argument(help="JSONL, JSON or parquet file of pairs.")] = None,
    instruction: Annotated[str | None, typer.Option("--instruction", "-i", help="Judge one pair: the instruction.")] = None,
    response_a: Annotated[str | None, typer.Option("--response-a", "-a", help="Response A (one-pair mode).")] = None,
    response_b: Annotated[str | None, typer.Option("--response-b", "-b", help="Response B (one-pair mode).")] = None,
    reference: Annotated[str | None, typer.Option("--reference", help="Reference answer (one-pair mode).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write judgments here as JSONL (resumes the same run if it exists).")] = None,
    overwrite: opt.OverwriteOpt = False,
    model: opt.ModelOpt = None,
    order: opt.OrderOpt = "given",
    cache: opt.CacheOpt = True,
    cache_path: opt.CachePathOpt = None,
    shard: opt.ShardOpt = None,
    *,
    judging: opt.JudgeOptions,
) -> None:
    """Judge one pair (flags) or a file of pairs; prints a summary and writes JSONL judgments."""
    from st_eval.pair_files import load_pairs
    from st_eval.shard import parse_shard, take_shard

    order = opt.check_order(order)  # bad flags fail before any weights load
    judging.check(model)
    if file is not None:
        if instruction or response_a or response_b:
            raise InputError("give either a FILE of pairs or --instruction/--response-a/--response-b, not both")
        pairs = take_shard(load_pairs(file), parse_shard(shard))
    elif instruction and response_a is not None and response_b is not None:
        pairs = [Pair(id="1", conversation=[Message("user", instruction)], response_a=response_a, response_b=response_b, reference=reference)]
    else:
        raise InputError("nothing to judge: give a FILE of pairs, or --instruction, --response-a and --response-b")

    start_output(output, overwrite)
    judge_ = judging.build_judge(model, order=order, cache=cache, cache_path=cache_path)
    done = _finished(output, {p.id for p in pairs}, judge_)
    todo = [p for p in pairs if p.id not in done]
    if done:
        console.print(f"resuming: {len(done)} of {len(pairs)} pairs already judged in {output}")
    results = list(done.values())
    appender = JsonlAppender(output) if output else None
    try:
        for judgment in judge_.iter_judgments(todo, progress=sys.stderr.isatty() or len(todo) > 1):
            results.append(judgment)
            if appender:
                appender.append(judgment.to_dict())
    finally:
        if appender:
            appender.close()
    if len(pairs) == 1 and not output:
        _print_one(results[0])
    _print_summary(summarize(results), output, judge_.engine)


def _finished(output: Path | None, wanted: set[str], judge: Judge) -> dict[str, Judgment]:
    """Judgments already in the output file, so an interrupted run resumes where it stopped;
    a row another run wrote (another producer or order) is refused, never mixed in."""
    if output is None:
        return {}
    producer, orders = judge.producer(), list(judge.orders)
    found = {}
    for number, row in enumerate(read_jsonl(output), start=1):
        if row.get("pair_id") in wanted:
            check_producer(output, number, {**row, "orders": [o.get("order") for o in row.get("orders", [])]}, {**producer, "orders": orders})
            found[row["pair_id"]] = Judgment.from_dict(row)
    return found


def _print_one(judgment: Judgment) -> None:
    Console().print(judgment.rationale.strip())
    Console().print(f"\n[bold]verdict:[/bold] {judgment.verdict or 'invalid'}  ({escape(_confidence_text(judgment))})")


def _confidence_text(judgment: Judgment) -> str:
    """The vote margin, unless the verdict step wrote the letter: a forced verdict is the
    judge's answer to a cue, not a confident judgment, and says so."""
    forced = sum(r.forced for r in judgment.orders)
    samples = sum(sum(r.votes.values()) for r in judgment.orders)
    if judgment.verdict is None:
        return "no parseable verdict"
    if forced and forced == samples:
        return f"forced: the verdict step wrote the letter after 'Final verdict: [[' in {forced} of {samples} samples; no confidence"
    text = f"confidence {judgment.confidence:.2f}"
    return text + (f"; {forced} of {samples} samples forced by the verdict step" if forced else "")


def _print_summary(summary: JudgmentSummary, output: Path | None, engine: Engine) -> None:
    """The run's figures; with the generation cache, how many judge outputs it reused (a resumed
    run shows that it generated only what was missing)."""
    table = Table(title="st-eval judge", show_header=False)
    table.add_row("pairs", str(summary.n))
    table.add_row("verdicts", ", ".join(f"{k}: {v}" for k, v in sorted(summary.verdicts.items())))
    if summary.accuracy is not None:
        table.add_row(f"accuracy ({ACCURACY_RULE})", f"{summary.accuracy:.3f}")
        for name, value in summary.order_accuracy.items():
            table.add_row(f"accuracy ({name} order)", f"{value:.3f}")
    if summary.consistency is not None:
        table.add_row("position consistency", f"{summary.consistency:.3f}")
    table.add_row("invalid outputs (share of samples)", f"{summary.invalid_rate:.3f}")
    table.add_row("forced by the verdict step (share of samples)", f"{summary.forced_rate:.3f}")
    table.add_row("shortened to fit (share of pairs)", f"{summary.shortened_rate:.3f}")
    if output:
        table.add_row("judgments", str(output))
    if isinstance(engine, CachedEngine):
        table.add_row("judge outputs", f"{engine.misses} generated, {engine.hits} from the generation cache")
    Console(stderr=True).print(table)
    warning = invalid_warning(summary.invalid_rate)
    if warning:
        console.print(f"[yellow]{escape(warning)}[/yellow]", soft_wrap=True)


app.command("serve")(serve_command)


@app.command("model-path")
def model_path(
    name: Annotated[str, typer.Argument(help="A judge st-eval ships: smollm2-135m (the seed) or smollm2-135m-st.")] = "smollm2-135m",
) -> None:
    """Print the local transformers folder of a judge st-eval ships (converted or merged on first use)."""
    from st_eval.embedded import judge_path

    print(judge_path(name))


@app.command()
def templates() -> None:
    """List the built-in judge prompt templates."""
    from st_eval.prompt import builtin_templates, load_template

    table = Table("name", "kind", "verdict", "description")
    for name in builtin_templates():
        template = load_template(name)
        table.add_row(name, template.kind, _verdict_form(template), template.description)
    Console().print(table)


def _verdict_form(template) -> str:
    """What the template's judge answers with, in a few characters."""
    form = template.verdict
    if template.reads_probabilities:
        return "P(" + "/".join(template.choices) + ")" + (", both orders" if template.is_choice else "")
    if form.scale:
        return f"rating {form.scale[0]}-{form.scale[1]}"
    return f"[[{form.letters[0]}]]..[[{form.letters[-1]}]], {form.rule}"


app.add_typer(bench_app)
app.command("gate")(gate_command)
app.command("train")(train_command)
app.command("train-worker")(train_worker_command)


def main() -> None:
    """Console entry point: st-eval errors become one red line and exit code 2."""
    try:
        app()
    except StEvalError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)  # paths stay whole
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
