"""The ``st-eval`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from st_eval import cli_options as opt
from st_eval.benchmarks.cli import bench_app
from st_eval.errors import InputError, StEvalError
from st_eval.gate.command import gate_command
from st_eval.jsonl import JsonlAppender, read_jsonl
from st_eval.records import Judgment, Message, Pair
from st_eval.serve import serve_command
from st_eval.summary import JudgmentSummary, summarize
from st_eval.training.command import train_command

app = typer.Typer(
    name="st-eval",
    help="Self-taught LLM judges: judge pairs, benchmark judges, gate releases, train new judges.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.command()
@opt.with_judge_options()
def judge(
    file: Annotated[Path | None, typer.Argument(help="JSONL, JSON or parquet file of pairs.")] = None,
    instruction: Annotated[str | None, typer.Option("--instruction", "-i", help="Judge one pair: the instruction.")] = None,
    response_a: Annotated[str | None, typer.Option("--response-a", "-a", help="Response A (one-pair mode).")] = None,
    response_b: Annotated[str | None, typer.Option("--response-b", "-b", help="Response B (one-pair mode).")] = None,
    reference: Annotated[str | None, typer.Option("--reference", help="Reference answer (one-pair mode).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write judgments here as JSONL (resumes if it exists).")] = None,
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
    from st_eval.prompt import load_template
    from st_eval.shard import parse_shard, take_shard

    load_template(judging.template_for(model))  # a bad template fails before any weights load
    if file is not None:
        if instruction or response_a or response_b:
            raise InputError("give either a FILE of pairs or --instruction/--response-a/--response-b, not both")
        pairs = take_shard(load_pairs(file), parse_shard(shard))
    elif instruction and response_a is not None and response_b is not None:
        pairs = [Pair(id="1", conversation=[Message("user", instruction)], response_a=response_a, response_b=response_b, reference=reference)]
    else:
        raise InputError("nothing to judge: give a FILE of pairs, or --instruction, --response-a and --response-b")

    done = _finished(output, {p.id for p in pairs})
    todo = [p for p in pairs if p.id not in done]
    judge_ = judging.build_judge(model, order=order, cache=cache, cache_path=cache_path)
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
    _print_summary(summarize(results), output)


def _finished(output: Path | None, wanted: set[str]) -> dict[str, Judgment]:
    """Judgments already in the output file, so an interrupted run resumes where it stopped."""
    if output is None:
        return {}
    found = {}
    for row in read_jsonl(output):
        if row.get("pair_id") in wanted:
            found[row["pair_id"]] = Judgment.from_dict(row)
    return found


def _print_one(judgment: Judgment) -> None:
    Console().print(judgment.rationale.strip())
    Console().print(f"\n[bold]verdict:[/bold] {judgment.verdict or 'invalid'}  (confidence {judgment.confidence:.2f})")


def _print_summary(summary: JudgmentSummary, output: Path | None) -> None:
    table = Table(title="st-eval judge", show_header=False)
    table.add_row("pairs", str(summary.n))
    table.add_row("verdicts", ", ".join(f"{k}: {v}" for k, v in sorted(summary.verdicts.items())))
    if summary.accuracy is not None:
        table.add_row("accuracy", f"{summary.accuracy:.3f}")
        for name, value in summary.order_accuracy.items():
            table.add_row(f"accuracy ({name} order)", f"{value:.3f}")
    if summary.consistency is not None:
        table.add_row("position consistency", f"{summary.consistency:.3f}")
    table.add_row("invalid outputs", f"{summary.invalid_rate:.3f}")
    if summary.forced_rate:
        table.add_row("verdicts the verdict step wrote", f"{summary.forced_rate:.3f}")
    if output:
        table.add_row("judgments", str(output))
    Console(stderr=True).print(table)


app.command("serve")(serve_command)


@app.command("model-path")
def model_path(
    name: Annotated[str, typer.Argument(help="Embedded judge name.")] = "smollm2-135m",
) -> None:
    """Print the local transformers folder of an embedded judge (converted on first use)."""
    from st_eval.embedded import embedded_model_path

    print(embedded_model_path(name))


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
    if template.is_rating:
        return "P(" + "/".join(template.choices) + ")"
    if form.scale:
        return f"rating {form.scale[0]}-{form.scale[1]}"
    return f"[[{form.letters[0]}]]..[[{form.letters[-1]}]], {form.rule}"


app.add_typer(bench_app)
app.command("gate")(gate_command)
app.command("train")(train_command)


def main() -> None:
    """Console entry point: st-eval errors become one red line and exit code 2."""
    try:
        app()
    except StEvalError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)  # paths stay whole
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
