"""``st-eval train``: run a training recipe end to end, with resume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def train_command(
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Training recipe YAML (see training/recipes/).")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Where the run's artifacts go (default runs/<recipe name>).")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", "-k", min=1, help="Self-training iterations (overrides the recipe).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --run-dir, skipping finished work.")] = False,
) -> None:
    """Train a self-taught judge from unlabeled instructions: pool, selection, synthetic pairs, then
    annotate / fine-tune / evaluate per iteration; writes a report and a judge card."""
    from st_eval.training.config import load_recipe
    from st_eval.training.loop import run

    overrides = {"iterations": iterations} if iterations else {}
    parsed = load_recipe(recipe, overrides)
    folder = run_dir or Path("runs") / parsed.name
    console = Console(stderr=True)
    try:
        result = run(parsed, folder, resume=resume)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/yellow] finished work is saved in {folder}; rerun with --resume to continue")
        raise typer.Exit(130) from None
    _print_table(result.summary)
    for name, reason in result.summary.get("skipped_benchmarks", {}).items():
        console.print(f"[yellow]benchmark {name} skipped[/yellow] (optional, file absent): {reason}")
    out = Console()
    out.print(f"report: {result.report['md']}  (plot: {result.report['png']})")
    if result.best_iteration:
        out.print(f"trained judge (iteration {result.best_iteration}): {result.best_judge}")
        out.print(f"judge card: {result.card}")
        step = " --verdict-step" if parsed.verdict_step else ""
        out.print(f"use it: st-eval judge --model {result.best_judge} --template {parsed.template}{step} PAIRS.jsonl")
    else:
        out.print(f"no iteration beat the seed judge on {parsed.evaluation.select_on}; best judge is the seed: {result.best_judge}")


def _print_table(summary: dict) -> None:
    """Before/after table per set and iteration: accuracy (both orders), consistency, invalid rate,
    and the share of verdicts the verdict step wrote (when the recipe uses it)."""
    sets = ["synthetic", *summary["benchmarks"]]
    table = Table(title=f"st-eval train: {summary['recipe']} (iteration 0 = seed judge)")
    table.add_column("iteration")
    for name in sets:
        table.add_column(f"{name} acc")
        table.add_column(f"{name} consist.")
        table.add_column(f"{name} invalid")
        table.add_column(f"{name} forced")
    table.add_column("kept / pair-orders")
    table.add_column("trained")
    for it in summary["iterations"]:
        cells = [str(it["iteration"])]
        for name in sets:
            m = it["eval"].get(name) or {}
            cells += [_f(m.get(k)) for k in ("accuracy", "consistency", "invalid_rate", "forced_rate")]
        ann = it.get("annotation") or {}
        cells.append(f"{ann['pair_orders_kept']}/{2 * ann['pairs']}" if ann else "-")
        cells.append({True: "yes", False: "no (no data)", None: "-"}[it.get("trained")])
        table.add_row(*cells)
    Console().print(table)


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"
