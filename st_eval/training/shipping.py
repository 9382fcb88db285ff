"""Ship a trained rating judge inside the package: its adapter, its benchmark reports, and its card.

``python -m st_eval.training.shipping RUN_DIR NAME --llmbar FOLDER --seed-llmbar REPORT --pandalm FILE
--seed-pandalm REPORT`` takes the judge the run selected (``best.json``, chosen on the held-out
synthetic pairs), writes its LoRA adapter in float16 (a few MB) to ``st_eval/judges/NAME/`` with
the seed named as its base, then benchmarks *the shipped weights* in both orders, under the
template it is served with (``--template``; default: the one it was trained under), on LLMBar
(``st-eval bench rewardbench``) and on PandaLM's human labels (``st-eval bench pandalm``), each
against the seed's report on the same pairs (``--baseline-report``), and writes the judge card
from those reports and the run's provenance. The card's figures are the reports', by construction.
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

#: the benchmarks a shipped judge is measured on: name -> (what it is, the bench command)
BENCHMARKS = {
    "llmbar": ("LLMBar (the five sets of RewardBench's Chat Hard section), both orders", ["rewardbench", "--mode", "both-orders"]),
    "pandalm": ("PandaLM human labels (non-tie gold), both orders", ["pandalm"]),
}
#: card fields copied from each report figure group
_FIGURES = ("n", "order_averaged", "order_averaged_ci", "consistent", "consistent_ci", "invalid_rate", "forced_rate", "shortened_rate", "prefers_longer", "better_is_longer", "better_is_shorter", "longer_wins")


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


def shipped_card(name: str, training_card: dict[str, Any], reports: dict[str, dict[str, Any]], run_report: dict[str, Any]) -> dict[str, Any]:
    """The card of a shipped judge: provenance from the run, figures from each benchmark's report."""
    measured = {bench: _measured(bench, report) for bench, report in reports.items()}
    return {
        "name": name,
        "base_model": SEED_MODEL,
        "template": next(iter(reports.values()))["template"],
        "trained_template": training_card.get("template"),
        "usage": f"st-eval judge --model {name} PAIRS.jsonl",
        "recipe": training_card["recipe"],
        "commit": training_card.get("commit"),
        "iteration": training_card["iteration"],
        "human_labels": training_card.get("human_labels"),
        "data_sizes": training_card.get("data_sizes"),
        "training": training_card.get("training"),
        "selection": {"set": training_card.get("selection_set"), "selected_iteration": run_report["best"]["iteration"]},
        "benchmarks": measured,
        "default": default_decision({bench: m["gain_over_seed"] for bench, m in measured.items()}),
        "timings_seconds": run_report.get("timings"),
    }


def _measured(bench: str, report: dict[str, Any]) -> dict[str, Any]:
    """One benchmark's part of the card: what, how many, against what, and the figures."""
    entry = {
        "name": BENCHMARKS[bench][0] if bench in BENCHMARKS else bench,
        "pairs": len(report["rows"]),
        "report": f"report-{bench}.json",
        "baseline": report.get("baseline") or {},
        "evaluation": {group: {k: f.get(k) for k in _FIGURES} for group, f in report["figures"].items()},
        "gain_over_seed": report.get("gain_over_baseline", {}),
    }
    for key in ("published", "three_way"):
        if report.get(key) is not None:
            entry[key] = report[key]
    return entry


def default_decision(gains: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether the judge earns the default (the project's rule): on every benchmark, the 95%
    interval of its order-averaged gain over the seed on all pairs lies above zero, and on no
    set of any benchmark does that interval lie wholly below zero."""
    if not gains or not all(g.get("all") for g in gains.values()):
        return {"earned": False, "why": "no comparison with the seed on the same pairs"}
    reasons, earned = [], True
    for bench, per_set in gains.items():
        overall = per_set["all"]["order_averaged"]
        ci = overall["gain_ci"]
        reasons.append(f"{bench}: {100 * overall['gain']:+.1f} points [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}] on {overall['n']} pairs")
        earned &= ci["low"] > 0
        worse = [name for name, c in per_set.items() if c["order_averaged"]["gain_ci"]["high"] < 0]
        if worse:
            earned = False
            reasons.append(f"{bench}: significantly worse than the seed on {', '.join(worse)}")
    verdict = "every interval is above zero and no set is worse" if earned else "not better everywhere, so the seed stays the default"
    return {"earned": earned, "why": f"order-averaged gain over the seed ({'; '.join(reasons)}): {verdict}"}


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
        *([f"- trained under template `{card['trained_template']}`, served and measured under `{card['template']}`"]
          if card.get("trained_template") not in (None, card["template"]) else []),
        f"- human labels: {card.get('human_labels')}",
        f"- training: {json.dumps({k: v for k, v in (card.get('training') or {}).items() if k in ('method', 'init', 'epochs', 'learning_rate', 'examples', 'steps', 'train_loss')})}",
        *[f"- {stage}: {json.dumps(size)}" for stage, size in sizes.items()],
        "",
    ]
    for bench in card["benchmarks"].values():
        lines += _benchmark_markdown(bench, pct, with_ci, gain)
    if card.get("default"):
        lines += ["", f"**Default judge: {'yes' if card['default']['earned'] else 'no'}.** {card['default']['why'][0].upper()}{card['default']['why'][1:]}."]
    return "\n".join(lines) + "\n"


def _benchmark_markdown(bench: dict[str, Any], pct, with_ci, gain) -> list[str]:
    lines = [
        "",
        f"## {bench['name']}",
        "",
        f"{bench['pairs']} pairs, each judged in both orders. Order-averaged: each order scored 1 right, 0 wrong, "
        "0.5 tie or no verdict (chance 50). Both right: right in both orders (chance 25). 95% bootstrap intervals.",
        "",
        "| set | n | order-averaged % | both orders right % | longer wins % | invalid % | prefers longer % | better answer longer / shorter: order-averaged % (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group, f in bench["evaluation"].items():
        longer, shorter = f.get("better_is_longer") or {}, f.get("better_is_shorter") or {}
        lines.append(
            f"| {group} | {f['n']} | {with_ci(f, 'order_averaged')} | {with_ci(f, 'consistent')} | {pct(f.get('longer_wins'))} | {pct(f['invalid_rate'])} | "
            f"{pct(f.get('prefers_longer'))} | {pct(longer.get('order_averaged'))} ({longer.get('n')}) / {pct(shorter.get('order_averaged'))} ({shorter.get('n')}) |"
        )
    beside = [f"the longer answer wins (all pairs): {pct(bench['evaluation']['all'].get('longer_wins'))}"]
    beside += [f"{judge} (published, one order): {pct(value)}" for judge, value in (bench.get("published") or {}).items()]
    lines += ["", "On the same pairs: " + "; ".join(beside) + "."]
    baseline = bench.get("baseline") or {}
    if bench.get("gain_over_seed"):
        lines += [
            "",
            f"Gain over the seed judge (`{baseline.get('model')}`, template `{baseline.get('template')}`), same pairs; "
            "paired bootstrap 95% interval (pairs resampled); exact McNemar p for both-orders-right.",
            "",
            "| set | n | order-averaged % | gain | both orders right % | gain |",
            "|---|---|---|---|---|---|",
        ]
        for group, c in bench["gain_over_seed"].items():
            avg, both = c["order_averaged"], c["consistent"]
            lines.append(
                f"| {group} | {avg['n']} | {pct(avg['baseline'])} -> {pct(avg['candidate'])} | {gain(avg)} | "
                f"{pct(both['baseline'])} -> {pct(both['candidate'])} | {gain(both)} |"
            )
    return lines


def check_seed_templates(seed_reports: dict[str, Path], template: str) -> None:
    """Refuse seed reports measured under another template than the judge's: the card's gains over
    the seed would then mix what training changed with what the template changed (reading 2,400
    characters of each answer instead of 800 moves the seed's LLMBar score by 3.3 points)."""
    for bench, path in seed_reports.items():
        measured = json.loads(path.read_text(encoding="utf-8")).get("template")
        if measured != template:
            raise SystemExit(f"{path}: the seed's {bench} report was measured under template {measured!r}, the judge is measured under {template!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name", choices=sorted(SHIPPED_JUDGES))
    parser.add_argument("--llmbar", type=Path, required=True, help="the LLMBar folder (five sets)")
    parser.add_argument("--seed-llmbar", type=Path, required=True, help="the seed judge's both-orders LLMBar report (bench rewardbench --report-json)")
    parser.add_argument("--pandalm", type=Path, required=True, help="PandaLM's test set (file or folder)")
    parser.add_argument("--seed-pandalm", type=Path, required=True, help="the seed judge's report on the same PandaLM rows (bench pandalm --report-json)")
    parser.add_argument("--iteration", type=int, help="ship this iteration instead of the one the run selected")
    parser.add_argument("--commit", help="the commit that ran the recipe, where the run's card could not know it")
    parser.add_argument("--template", help="the template the judge is served and measured under (default: the one it was trained under); "
                        "its seed reports must be under the same template, so the gains compare like with like")
    args = parser.parse_args(argv)

    run_report = json.loads((args.run_dir / "report.json").read_text(encoding="utf-8"))
    iteration = args.iteration if args.iteration is not None else run_report["best"]["iteration"]
    if not iteration:
        raise SystemExit("the run selected the seed judge (iteration 0): nothing trained to ship; pass --iteration")
    judge_dir = args.run_dir / f"iter-{iteration:02d}" / "judge"
    training_card = json.loads((judge_dir / "card.json").read_text(encoding="utf-8"))
    if args.commit:
        training_card["commit"] = args.commit
    template = args.template or training_card["template"]
    check_seed_templates({"llmbar": args.seed_llmbar, "pandalm": args.seed_pandalm}, template)
    target = SHIPPED_JUDGES[args.name].folder
    staging = target.with_name(f".{target.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    write_adapter(judge_dir, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    reports = {}
    for bench, data, seed_report in (("llmbar", args.llmbar, args.seed_llmbar), ("pandalm", args.pandalm, args.seed_pandalm)):
        path = target / f"report-{bench}.json"
        command = [
            sys.executable, "-m", "st_eval.cli", "bench", *BENCHMARKS[bench][1], "--data-files", str(data), "--model", args.name,
            "--template", template, "--baseline-report", str(seed_report), "--report-json", str(path),
        ]
        subprocess.run(command, check=True)
        reports[bench] = json.loads(path.read_text(encoding="utf-8"))
    card = shipped_card(args.name, training_card, reports, run_report)
    write_json(target / "card.json", card)
    (target / "card.md").write_text(card_markdown(card), encoding="utf-8")
    print(card_markdown(card))


if __name__ == "__main__":
    main()
