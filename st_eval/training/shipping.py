"""Ship a trained rating judge inside the package: its adapter, a benchmark report, and its card.

``python -m st_eval.training.shipping RUN_DIR NAME --llmbar FOLDER --seed-report FILE`` takes the
judge the run selected (``best.json``, chosen on the held-out synthetic pairs), writes its LoRA
adapter in float16 (a few MB) to ``st_eval/judges/NAME/`` with the seed named as its base, then
benchmarks *the shipped weights* on LLMBar in both orders against the seed's report on the same
pairs (``st-eval bench rewardbench --baseline-report``), and writes the judge card from that
report and the run's provenance. The card's figures are the report's, by construction.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from st_eval.embedded import SEED_MODEL, SHIPPED_JUDGES
from st_eval.jsonl import write_json
from st_eval.training.reward import VIEW_HEAD

#: card fields copied from each report figure group
_FIGURES = ("n", "order_averaged", "order_averaged_ci", "consistent", "consistent_ci", "invalid_rate", "forced_rate", "shortened_rate", "prefers_longer", "better_is_longer", "better_is_shorter")


def write_adapter(judge_dir: Path, target: Path) -> None:
    """The run's adapter, as float16 safetensors, with the embedded seed as its base model and
    the causal LM as its task.

    Factors on the classifier view's head are left out: the judge the run evaluated is the causal
    LM with the adapter merged, which has no such head, so they never took part in it."""
    import torch
    from safetensors.torch import load_file, save_file

    source = judge_dir / "adapter"
    target.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "adapter_model.safetensors"))
    kept = {k: v.to(torch.float16).contiguous() for k, v in tensors.items() if f".{VIEW_HEAD}." not in k}
    save_file(kept, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = SEED_MODEL
    # Trained on the classifier view, peft recorded that class (auto_mapping) and no task: a
    # user's AutoPeftModel would then build a classifier with an untrained head. The shipped
    # adapter is for the causal judge.
    config.pop("auto_mapping", None)
    config["task_type"] = "CAUSAL_LM"
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(m for m in config["target_modules"] if m != VIEW_HEAD)
    write_json(target / "adapter_config.json", config)


def shipped_card(name: str, training_card: dict[str, Any], report: dict[str, Any], run_report: dict[str, Any]) -> dict[str, Any]:
    """The card of a shipped judge: provenance from the run, figures from the benchmark report."""
    baseline = report.get("baseline") or {}
    return {
        "name": name,
        "base_model": SEED_MODEL,
        "template": report["template"],
        "usage": f"st-eval judge --model {name} PAIRS.jsonl",
        "recipe": training_card["recipe"],
        "commit": training_card.get("commit"),
        "iteration": training_card["iteration"],
        "human_labels": training_card.get("human_labels"),
        "data_sizes": training_card.get("data_sizes"),
        "training": training_card.get("training"),
        "selection": {"set": training_card.get("selection_set"), "selected_iteration": run_report["best"]["iteration"]},
        "benchmark": {
            "name": "LLMBar (the five sets of RewardBench's Chat Hard section), both orders",
            "pairs": report["pairs"],
            "report": "report.json",
            "baseline": baseline,
        },
        "evaluation": {group: {k: f.get(k) for k in _FIGURES} for group, f in report["figures"].items()},
        "gain_over_seed": report.get("gain_over_baseline", {}),
        "default": default_decision(report.get("gain_over_baseline", {})),
        "timings_seconds": run_report.get("timings"),
    }


def default_decision(gains: dict[str, Any]) -> dict[str, Any]:
    """Whether the judge earns the default: only when the 95% interval of its order-averaged gain
    over the seed, on all benchmark pairs, lies above zero (the project's rule for a default)."""
    overall = (gains.get("all") or {}).get("order_averaged")
    if not overall:
        return {"earned": False, "why": "no comparison with the seed on the same pairs"}
    ci = overall["gain_ci"]
    text = f"{100 * overall['gain']:+.1f} points [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}] on {overall['n']} pairs"
    if ci["low"] > 0:
        return {"earned": True, "why": f"order-averaged gain over the seed {text}: the interval is above zero"}
    return {"earned": False, "why": f"order-averaged gain over the seed {text}: the interval includes zero, so the seed stays the default"}


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown: what it is, how it was made, and how it measured, with intervals."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    def with_ci(figure: dict[str, Any], key: str) -> str:
        ci = figure[f"{key}_ci"]
        return f"{pct(figure[key])} [{pct(ci['low'])}, {pct(ci['high'])}]"

    def gain(c: dict[str, Any]) -> str:
        ci = c["gain_ci"]
        text = f"{100 * c['gain']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"
        return text + (f", p={c['mcnemar_p']:.2g}" if c.get("mcnemar_p") is not None else "")

    sizes = card.get("data_sizes") or {}
    lines = [
        f"# Judge card: {card['name']}",
        "",
        f"A rating judge self-taught from `{card['base_model']}` by st-eval's recipe `{card['recipe']}` "
        f"(commit `{card.get('commit')}`, iteration {card['iteration']}, selected on the held-out synthetic pairs).",
        "",
        f"- use: `{card['usage']}` (template `{card['template']}`: each answer is rated alone, P(Yes) to "
        "\"Does the answer do exactly what the request asks?\"; the higher rating wins, so the verdict cannot depend on the order)",
        f"- human labels: {card.get('human_labels')}",
        f"- training: {json.dumps({k: v for k, v in (card.get('training') or {}).items() if k in ('method', 'init', 'epochs', 'learning_rate', 'examples', 'steps', 'train_loss')})}",
        *[f"- {stage}: {json.dumps(size)}" for stage, size in sizes.items()],
        "",
        f"## {card['benchmark']['name']}",
        "",
        f"{card['benchmark']['pairs']} pairs, each judged in both orders. Order-averaged: each order scored 1 right, 0 wrong, "
        "0.5 tie or no verdict (chance 50). Both right: right in both orders (chance 25). 95% bootstrap intervals.",
        "",
        "| set | n | order-averaged % | both orders right % | invalid % | prefers longer % | better answer longer / shorter: order-averaged % (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, f in card["evaluation"].items():
        longer, shorter = f.get("better_is_longer") or {}, f.get("better_is_shorter") or {}
        lines.append(
            f"| {group} | {f['n']} | {with_ci(f, 'order_averaged')} | {with_ci(f, 'consistent')} | {pct(f['invalid_rate'])} | "
            f"{pct(f.get('prefers_longer'))} | {pct(longer.get('order_averaged'))} ({longer.get('n')}) / {pct(shorter.get('order_averaged'))} ({shorter.get('n')}) |"
        )
    baseline = card["benchmark"].get("baseline") or {}
    if card.get("default"):
        lines += ["", f"**Default judge: {'yes' if card['default']['earned'] else 'no'}.** {card['default']['why'][0].upper()}{card['default']['why'][1:]}."]
    if card.get("gain_over_seed"):
        lines += [
            "",
            f"## Gain over the seed judge (`{baseline.get('model')}`, template `{baseline.get('template')}`), same pairs",
            "",
            "Paired bootstrap 95% interval (pairs resampled); exact McNemar p for both-orders-right.",
            "",
            "| set | n | order-averaged % | gain | both orders right % | gain |",
            "|---|---|---|---|---|---|",
        ]
        for group, c in card["gain_over_seed"].items():
            avg, both = c["order_averaged"], c["consistent"]
            lines.append(
                f"| {group} | {avg['n']} | {pct(avg['baseline'])} -> {pct(avg['candidate'])} | {gain(avg)} | "
                f"{pct(both['baseline'])} -> {pct(both['candidate'])} | {gain(both)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name", choices=sorted(SHIPPED_JUDGES))
    parser.add_argument("--llmbar", type=Path, required=True, help="the LLMBar folder (five sets)")
    parser.add_argument("--seed-report", type=Path, required=True, help="the seed judge's both-orders report on the same pairs")
    parser.add_argument("--iteration", type=int, help="ship this iteration instead of the one the run selected")
    parser.add_argument("--commit", help="the commit that ran the recipe, where the run's card could not know it")
    args = parser.parse_args(argv)

    run_report = json.loads((args.run_dir / "report.json").read_text(encoding="utf-8"))
    iteration = args.iteration if args.iteration is not None else run_report["best"]["iteration"]
    if not iteration:
        raise SystemExit("the run selected the seed judge (iteration 0): nothing trained to ship; pass --iteration")
    judge_dir = args.run_dir / f"iter-{iteration:02d}" / "judge"
    target = SHIPPED_JUDGES[args.name].folder
    staging = target.with_name(f".{target.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    write_adapter(judge_dir, staging)
    training_card = json.loads((judge_dir / "card.json").read_text(encoding="utf-8"))
    if args.commit:
        training_card["commit"] = args.commit
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    report_path = target / "report.json"
    command = [
        sys.executable, "-m", "st_eval.cli", "bench", "rewardbench", "--data-files", str(args.llmbar), "--mode", "both-orders",
        "--model", args.name, "--template", training_card["template"], "--baseline-report", str(args.seed_report),
        "--report-json", str(report_path),
    ]
    subprocess.run(command, check=True)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    card = shipped_card(args.name, training_card, report, run_report)
    write_json(target / "card.json", card)
    (target / "card.md").write_text(card_markdown(card), encoding="utf-8")
    print(card_markdown(card))


if __name__ == "__main__":
    main()
