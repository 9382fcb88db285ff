"""Stage 8: the judge card, written into every produced judge folder (``card.json`` + ``card.md``).

The card says how the judge was made and how it measured, so a user can see what they load
with ``st-eval judge --model <folder>`` before trusting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_eval.jsonl import write_json
from st_eval.training.config import Recipe

#: the measured figures a card shows per evaluation set, in table order
_MEASURED = ("n", "accuracy", "consistency", "invalid_rate", "forced_rate", "prefers_longer")


def judge_usage(recipe: Recipe, folder: str = "<this folder>") -> str:
    """The command that judges with a judge this recipe produced, with the same prompt and decoding."""
    step = " --verdict-step" if recipe.verdict_step else ""
    return f"st-eval judge --model {folder} --template {recipe.template}{step}"


def card_data(recipe: Recipe, iteration: int, data_sizes: dict[str, Any], evaluation: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """The card's fields: provenance, decoding, data sizes and measured quality."""
    ev = recipe.evaluation
    return {
        "name": f"{recipe.name}-iter{iteration}",
        "recipe": recipe.name,
        "iteration": iteration,
        "seed_model": recipe.seed_model,
        "template": recipe.template,
        "usage": judge_usage(recipe),
        "decoding": {
            "verdict_step": recipe.verdict_step,
            "annotation": {"samples": recipe.annotation.samples, "temperature": recipe.annotation.temperature,
                           "top_p": recipe.annotation.top_p, "max_new_tokens": recipe.annotation.max_new_tokens},
            "evaluation": {"samples": ev.samples, "temperature": ev.temperature, "max_new_tokens": ev.max_new_tokens, "order": ev.order},
        },
        "training": {"method": recipe.train.method, "init": recipe.train.init, "epochs": recipe.train.epochs,
                     "learning_rate": recipe.train.learning_rate, "dpo": recipe.dpo.enabled, **training},
        "data_sizes": data_sizes,
        "evaluation": {
            name: {k: m.get(k) for k in _MEASURED}
            for name, m in evaluation.items()
        },
        "selection_set": ev.select_on,
    }


def write_card(folder: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write card.json and card.md into the judge folder."""
    json_path = write_json(folder / "card.json", card)
    lines = [
        f"# Judge card: {card['name']}",
        "",
        f"- seed model: `{card['seed_model']}`",
        f"- prompt template: `{card['template']}` (use the same template when judging)",
        f"- usage: `{card['usage']}`",
        f"- training: {card['training']['method']} from {card['training']['init']} model, "
        f"{card['training'].get('examples', 0)} examples, {card['training'].get('steps', 0)} steps",
        f"- verdict step: {'on' if card['decoding'].get('verdict_step') else 'off'}",
        f"- annotation decoding: {card['decoding']['annotation']}",
        f"- evaluation decoding: {card['decoding']['evaluation']}",
        "",
        "## Data sizes",
        "",
        *[f"- {stage}: {size}" for stage, size in card["data_sizes"].items()],
        "",
        "## Measured (both orders; selection on " + card["selection_set"] + ")",
        "",
        "| set | n | accuracy | position consistency | invalid rate | forced verdicts | prefers longer |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in card["evaluation"].items():
        cells = [m.get(k) for k in _MEASURED]
        lines.append("| " + name + " | " + " | ".join("-" if c is None else (f"{c:.3f}" if isinstance(c, float) else str(c)) for c in cells) + " |")
    md_path = folder / "card.md"
    staging = folder / ".card.md.tmp"
    staging.write_text("\n".join(lines) + "\n", encoding="utf-8")
    staging.replace(md_path)
    return json_path, md_path
