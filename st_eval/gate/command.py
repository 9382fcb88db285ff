"""``st-eval gate``: decide in CI whether a candidate model may replace its baseline.

Exit codes: 0 pass, 1 fail, 2 error (bad input, missing outputs, judge failure rate above the
limit, unqualified judge, any exception) or inconclusive (too few decided prompts for a pass).
An error never passes.
"""

from __future__ import annotations

import shlex
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from st_eval import cli_options as opt
from st_eval.embedded import st_eval_home
from st_eval.errors import InputError, StEvalError
from st_eval.gate.decision import CI_METHODS, GateError, Policy
from st_eval.gate.report import build_report, error_report, stats_line, write_reports
from st_eval.gate.run import GateConfig, GateResult, LazyJudge, Side, run_gate
from st_eval.judge import Judge

console = Console(stderr=True)

def parse_thresholds(items: list[str] | None, option: str) -> dict[str, float]:
    """``CATEGORY=VALUE`` strings (``*`` for every category) into a mapping."""
    found: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(f"{option} {item!r}: expected CATEGORY=VALUE, e.g. math=0.4 or '*=0.3'")
    return found


@opt.with_judge_options()
def gate_command(
    candidate: Annotated[Path | None, typer.Option("--candidate", "-c", help="Candidate outputs (JSONL/JSON/parquet keyed by prompt id; MT-Bench model_answer as is).")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="Baseline outputs, same formats.")] = None,
    candidate_model: Annotated[str | None, typer.Option("--candidate-model", help="Generate the candidate outputs with this model (needs --prompts).")] = None,
    baseline_model: Annotated[str | None, typer.Option("--baseline-model", help="Generate the baseline outputs with this model (needs --prompts).")] = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Prompt set by id (MT-Bench question.jsonl as is); needed when outputs carry only ids.")] = None,
    references: Annotated[Path | None, typer.Option("--references", help="Reference answers by prompt id shown to the judge (outputs format, e.g. MT-Bench reference_answer).")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge", "--model", "-m", help="Judge model: Hugging Face id, local folder or embedded name (default: the embedded judge).")] = None,
    gen_engine: Annotated[str | None, typer.Option("--gen-engine", help="Engine that generates outputs for --candidate-model/--baseline-model (default: --engine).")] = None,
    gen_max_new_tokens: Annotated[int, typer.Option("--gen-max-new-tokens", min=1, help="Generation budget per answer turn when generating outputs.")] = 512,
    min_win_rate: Annotated[float | None, typer.Option("--min-win-rate", help="Fail below this win rate (ties count half).")] = None,
    max_loss_rate: Annotated[float | None, typer.Option("--max-loss-rate", help="Fail above this share of lost prompts.")] = None,
    non_inferiority_margin: Annotated[float | None, typer.Option("--non-inferiority-margin", help="Fail unless the CI lower bound of (wins-losses)/n is >= -MARGIN.")] = None,
    require_not_worse: Annotated[bool, typer.Option("--require-not-worse/--allow-worse", help="Fail when the CI upper bound of (wins-losses)/n is below 0 (significantly worse).")] = True,
    category_min_win_rate: Annotated[list[str] | None, typer.Option("--category-min-win-rate", help="CATEGORY=RATE (repeatable; '*' = every category).")] = None,
    category_max_loss_rate: Annotated[list[str] | None, typer.Option("--category-max-loss-rate", help="CATEGORY=RATE (repeatable; '*' = every category).")] = None,
    max_failure_rate: Annotated[float, typer.Option("--max-failure-rate", help="Error (exit 2) when more prompts than this share get no parseable verdict.")] = 0.05,
    min_decided: Annotated[int | None, typer.Option("--min-decided", min=1, help="Decided prompts a pass needs, else exit 2 inconclusive. Default: from a power calculation for the margin (docs/gate.md).")] = None,
    ci: Annotated[str, typer.Option("--ci", help=f"Confidence interval method: {', '.join(CI_METHODS)}.")] = "bootstrap",
    confidence: Annotated[float, typer.Option("--confidence", help="Two-sided confidence level.")] = 0.95,
    qualify_on: Annotated[str | None, typer.Option("--qualify-on", help="Benchmark the judge must pass first: 'rewardbench' (hub), an LLMBar folder, or RewardBench-schema files.")] = None,
    qualify_subset: Annotated[list[str] | None, typer.Option("--qualify-subset", help="Use only this benchmark subset (repeatable), e.g. llmbar-natural.")] = None,
    qualify_limit: Annotated[int | None, typer.Option("--qualify-limit", min=1, help="Use a seeded sample of this many benchmark pairs.")] = None,
    min_judge_accuracy: Annotated[float, typer.Option("--min-judge-accuracy", help="Accuracy the judge needs on --qualify-on, else the gate errors.")] = 0.6,
    cache: opt.CacheOpt = True,
    cache_path: opt.CachePathOpt = None,
    outputs_dir: Annotated[Path | None, typer.Option("--outputs-dir", file_okay=False, help="Where generated outputs are written and found again (default $ST_EVAL_HOME/gate/outputs).")] = None,
    report_json: Annotated[Path | None, typer.Option("--report-json", dir_okay=False, help="Write the JSON report here.")] = None,
    report_md: Annotated[Path | None, typer.Option("--report-md", dir_okay=False, help="Write the Markdown report here (also appended to $GITHUB_STEP_SUMMARY when set).")] = None,
    show_worst: Annotated[int, typer.Option("--show-worst", min=0, help="Worst regressions listed in the reports.")] = 5,
    *,
    judging: opt.JudgeOptions,
) -> None:
    """Gate a release: judge candidate vs baseline outputs in both orders and apply a policy.

    Exit code 0 = pass, 1 = fail, 2 = error or inconclusive (too few decided prompts for a
    pass; an error never passes).
    """
    command = shlex.join(["st-eval", *sys.argv[1:]])
    try:
        policy = Policy(
            min_win_rate=min_win_rate,
            max_loss_rate=max_loss_rate,
            non_inferiority_margin=non_inferiority_margin,
            require_not_worse=require_not_worse,
            category_min_win_rate=parse_thresholds(category_min_win_rate, "--category-min-win-rate"),
            category_max_loss_rate=parse_thresholds(category_max_loss_rate, "--category-max-loss-rate"),
            max_failure_rate=max_failure_rate,
            ci=ci,
            confidence=confidence,
            seed=judging.seed,
            min_decided=min_decided,
        )
        judging.check(judge_model)  # a bad template or judge name fails before any model loads
        if not 0 <= min_judge_accuracy <= 1:
            raise InputError(f"--min-judge-accuracy must be between 0 and 1, got {min_judge_accuracy}")
        config = GateConfig(
            candidate=_side("candidate", candidate, candidate_model),
            baseline=_side("baseline", baseline, baseline_model),
            policy=policy,
            prompts=prompts,
            references=references,
            outputs_dir=outputs_dir or st_eval_home() / "gate" / "outputs",
            qualify_on=qualify_on,
            qualify_subsets=qualify_subset,
            qualify_limit=qualify_limit,
            min_judge_accuracy=min_judge_accuracy,
            generation=opt.build_sampling(1, 0.0, None, gen_max_new_tokens, judging.seed),
            progress=sys.stderr.isatty(),
        )
        def build_judge() -> Judge:
            # Always both orders: a verdict that flips with the order must count as a tie.
            return judging.build_judge(judge_model, order="both", cache=cache, cache_path=cache_path)

        generating = replace(judging, engine=gen_engine or judging.engine)

        def make_generator(model: str):
            return generating.build_engine(model, cache=cache, cache_path=cache_path)

        judge = LazyJudge(build_judge)
        result = run_gate(config, judge, make_generator, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        report = build_report(result, worst=show_worst, command=command)
    except StEvalError as exc:
        _write_error_report(str(exc), command, report_json, report_md)
        raise
    except KeyboardInterrupt:
        _write_error_report("interrupted", command, report_json, report_md)
        raise GateError("interrupted") from None
    except Exception as exc:  # noqa: BLE001 - any crash must end as exit 2, never as a pass
        traceback.print_exc()
        _write_error_report(f"{type(exc).__name__}: {exc}", command, report_json, report_md)
        raise GateError(f"gate crashed: {type(exc).__name__}: {exc}") from exc

    try:
        write_reports(report, report_json, report_md)
    except OSError as exc:
        raise GateError(f"cannot write the report: {exc}") from exc
    _print_result(result, report_json, report_md)
    if result.status in ("error", "inconclusive"):
        raise GateError("; ".join(result.errors))
    if result.status == "fail":
        raise typer.Exit(1)


def _write_error_report(message: str, command: str, report_json: Path | None, report_md: Path | None) -> None:
    """Best effort: the error itself is what the caller reports, even if no report can be written."""
    try:
        write_reports(error_report(message, command), report_json, report_md)
    except OSError as exc:
        console.print(f"cannot write the error report: {exc}")


def _side(name: str, path: Path | None, model: str | None) -> Side:
    if path is not None and model is not None:
        raise InputError(f"give --{name} FILE or --{name}-model MODEL, not both")
    if path is None and model is None:
        raise InputError(f"missing --{name} FILE (or --{name}-model MODEL with --prompts)")
    return Side(outputs=path, model=model)


def _print_result(result: GateResult, report_json: Path | None, report_md: Path | None) -> None:
    style = {"pass": "bold green", "fail": "bold red", "error": "bold yellow", "inconclusive": "bold yellow"}[result.status]
    if result.qualification is not None:
        q = result.qualification
        console.print(f"judge qualification: accuracy {q.accuracy:.3f} on {q.n} pairs (needs {q.min_accuracy})")
    if result.decision is not None:
        console.print(f"overall: {stats_line(result.decision.overall)}")
        for check in result.decision.checks:
            if not check.passed:
                console.print(f"  failed: {check.rule} [{check.scope}]: {check.value:.3f} vs {check.threshold:.3f}")
    for path in (report_json, report_md):
        if path:
            console.print(f"report: {path}")
    console.print(f"[{style}]gate {result.status.upper()}[/{style}]")
