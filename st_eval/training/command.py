"""``st-eval train``: run a training recipe end to end, with resume, or plan it (``--plan``);
``st-eval train-worker``: a worker machine's side of a multi-node run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from st_eval.cli_options import ClusterOpt, GpusPerReplicaOpt, ReplicasOpt
from st_eval.cluster import check_engine, cluster_from_flags

if TYPE_CHECKING:
    from st_eval.training.config import Recipe


def train_command(
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Training recipe YAML (see training/recipes/).")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Where the run's artifacts go (default runs/<recipe name>).")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", "-k", min=1, help="Self-training iterations (overrides the recipe).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --run-dir, skipping finished work.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Also show the libraries' own logs and bars (always in <run-dir>/train.log).")] = False,
    plan: Annotated[bool, typer.Option("--plan", help="Run nothing: print each stage's engine, processes, GPUs and memory per GPU, the commands for every node and the libraries, and refuse combinations known to fail.")] = False,
    gpu_memory: Annotated[str, typer.Option("--gpu-memory", help="--plan: memory of one GPU (80GiB, 141GB, ...).")] = "80GiB",
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", min=1, help="--plan: GPUs per node.")] = 8,
    nodes: Annotated[int | None, typer.Option("--nodes", min=1, help="--plan: nodes (default: the accelerate config's machines, else 1).")] = None,
    model_config: Annotated[Path | None, typer.Option("--model-config", help="--plan: the seed model's config.json (or folder) instead of fetching it.")] = None,
    cluster: ClusterOpt = None,
    replicas: ReplicasOpt = None,
    gpus_per_replica: GpusPerReplicaOpt = None,
) -> None:
    """Train a self-taught judge from unlabeled instructions: pool, selection, synthetic pairs, then
    annotate / fine-tune / evaluate per iteration; writes a report and a judge card. The
    --cluster flags override the recipe's cluster block."""
    from st_eval.training.config import load_recipe
    from st_eval.training.judge_card import judge_usage
    from st_eval.training.loop import run

    overrides = {"iterations": iterations} if iterations else {}
    parsed = load_recipe(recipe, overrides)
    parsed.cluster = cluster_from_flags(cluster, replicas, gpus_per_replica, base=parsed.cluster)
    if parsed.cluster is not None:
        check_engine(parsed.engine, "--cluster")
    if plan:
        _print_plan(parsed, recipe, gpu_memory, gpus_per_node, nodes, model_config, run_dir)
        return
    folder = run_dir or Path("runs") / parsed.name
    console = Console(stderr=True)
    try:
        result = run(parsed, folder, resume=resume, verbose=verbose)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/yellow] finished work is saved in {folder}; rerun with --resume to continue")
        raise typer.Exit(130) from None
    _print_table(result.summary)
    for name, reason in result.summary.get("skipped_benchmarks", {}).items():
        console.print(f"[yellow]benchmark {name} skipped[/yellow] (optional, file absent): {reason}")
    out = Console(soft_wrap=True)  # paths and commands stay on one line
    out.print(f"report: {result.report['md']}  (plot: {result.report['png']})")
    if result.best_iteration:
        out.print(f"trained judge (iteration {result.best_iteration}, best on {parsed.evaluation.select_on}): {result.best_judge}")
        out.print(f"judge card: {result.card}")
        out.print(f"use it: {judge_usage(parsed, result.best_judge)} PAIRS.jsonl")
        return
    out.print(f"no trained judge beat the seed judge on {parsed.evaluation.select_on}; the best judge is the seed: {result.best_judge}")
    last = next((it for it in reversed(result.summary["iterations"]) if it.get("judge")), None)
    if last:
        out.print(f"last trained judge (iteration {last['iteration']}): {last['judge']}  (card: {Path(last['judge']) / 'card.md'})")


def _print_plan(recipe: Recipe, path: Path, gpu_memory: str, gpus_per_node: int, nodes: int | None, model_config: Path | None, run_dir: Path | None) -> None:
    """Print the recipe's plan (Markdown) on stdout; each refusal also goes to stderr as one
    error line, and then the exit code is 2."""
    from st_eval.training.plan import Cluster, make_plan, parse_size
    from st_eval.training.preflight import launch_config

    launch = launch_config(recipe)
    cluster = Cluster(parse_size(gpu_memory), gpus_per_node, nodes or (launch.machines if launch else 1))
    result = make_plan(recipe, path, cluster, model_config=model_config, run_dir=run_dir)
    print(result.markdown(), end="")
    if result.refusals:
        console = Console(stderr=True, soft_wrap=True)
        for line in result.refusals:
            console.print(f"[bold red]error:[/bold red] {path}: {line}", markup=True, highlight=False)
        raise typer.Exit(2)


def train_worker_command(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run folder of the main node's st-eval train (same path on every node).")],
    machine_rank: Annotated[int, typer.Option("--machine-rank", min=1, help="This node's rank (1 .. machines-1; the main node is 0).")],
    main_process_ip: Annotated[str | None, typer.Option("--main-process-ip", help="The main node's address (default: main_process_ip of the accelerate config).")] = None,
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.05, help="How often to look for the next job.")] = 5.0,
) -> None:
    """On each worker node of a multi-node run: join every training job the main node launches
    (SFT, DPO, GRPO, each iteration), in order, and exit when the run ends."""
    from st_eval.training.worker import work

    code = work(run_dir, machine_rank, main_process_ip=main_process_ip, poll_seconds=poll_seconds, say=lambda line: print(line, flush=True))
    if code:
        raise typer.Exit(code)


def _print_table(summary: dict) -> None:
    """Before/after table, one row per iteration and set (and LLMBar subset): order-averaged
    accuracy, accuracy with both orders right, accuracy per order (given / swapped), position
    consistency, invalid and forced rates, the gain over the seed judge with its paired bootstrap
    95% interval, and what the iteration trained on."""
    from rich import box

    from st_eval.training.report import gain_text

    gains = summary.get("gains_over_seed") or {}
    table = Table(title=f"st-eval train: {summary['recipe']} (iteration 0 = seed judge)", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("it.", "set", "n", "ord-avg", "both", "by order", "consist.", "invalid", "forced", "gain ord-avg [95% CI]", "gain both [95% CI]", "trained"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("set", "gain ord-avg [95% CI]", "gain both [95% CI]") else "right")
    for it in summary["iterations"]:
        ann = it.get("annotation") or {}
        if it.get("trained") is False:
            kept = "0 (untrained)"
        elif "pair_orders_kept" in ann:
            kept = f"{ann['pair_orders_kept']}/{2 * ann['pairs']} kept"
        else:
            kept = f"{ann['pairs']} pairs" if ann else "-"
        names = []
        for name in ["synthetic", *summary["benchmarks"]]:
            names.append((name, it["eval"].get(name) or {}))
            names += [(f"{name}/{sub}", m) for sub, m in ((it["eval"].get(name) or {}).get("subsets") or {}).items()]
        shown = [_short(n) for n, _ in names]
        per_set = gains.get(str(it["iteration"]), {})
        for index, (name, m) in enumerate(names):
            orders = m.get("order_accuracy") or {}
            gain = per_set.get(name) or {}
            table.add_row(
                str(it["iteration"]) if index == 0 else "", shown[index], str(m.get("n", "-")), _f(m.get("order_averaged"), 3), _f(m.get("accuracy"), 3),
                f"{_f(orders.get('given'), 2)}/{_f(orders.get('swapped'), 2)}",
                *(_f(m.get(k), 2) for k in ("consistency", "invalid_rate", "forced_rate")),
                gain_text(gain["order_averaged"]) if gain else "", gain_text(gain["accuracy"]) if gain else "",
                kept if index == 0 else "",
                end_section=index == len(names) - 1,
            )
    Console(width=max(Console().width, 210)).print(table)  # every column whole, gains with their p
    print("ord-avg: each order scored 1 right, 0 wrong, 0.5 tie or no verdict, averaged (chance 0.5); both: right in both"
          " orders (chance 0.25); by order: accuracy shown as given / swapped; forced: verdicts the verdict step wrote;"
          " gain: against the seed judge on the same pairs, paired bootstrap 95% interval, exact McNemar p for 'both'")


def _short(name: str) -> str:
    """``llmbar/llmbar-adver-neighbor`` -> ``  llmbar neighbor``: a subset row under its set."""
    if "/" not in name:
        return name
    parent, sub = name.split("/", 1)
    return f"  {parent} {sub.removeprefix(parent + '-').removeprefix('adver-')}"


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
