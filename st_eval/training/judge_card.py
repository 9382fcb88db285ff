"""Stage 8: the judge card, written into every produced judge folder (``card.json`` + ``card.md``).

The card says how the judge was made and how it measured, so a user can see what they load
with ``st-eval judge --model <folder>`` before trusting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_eval.jsonl import write_json, write_text
from st_eval.training.config import Recipe

#: the measured figures a card shows per evaluation set, in table order
_MEASURED = ("n", "order_averaged", "accuracy", "consistency", "invalid_rate", "forced_rate", "shortened_rate", "prefers_longer")
_HEADERS = ("n", "order-averaged (chance 0.5)", "both orders right (chance 0.25)", "position consistency", "invalid rate",
            "forced verdicts", "shortened", "prefers longer")


def judge_usage(recipe: Recipe, folder: str = "<this folder>") -> str:
    """The command that judges with a judge this recipe produced, with the same prompt and decoding."""
    step = " --verdict-step" if recipe.verdict_step else ""
    return f"st-eval judge --model {folder} --template {recipe.template}{step}"


def source_revision() -> str:
    """The git commit of the st-eval checkout that ran the recipe (``-dirty`` with local changes),
    or the package version outside a checkout."""
    import subprocess

    import st_eval

    folder = Path(st_eval.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"st-eval {st_eval.__version__}"
    return commit + ("-dirty" if dirty else "")


def card_data(
    recipe: Recipe, iteration: int, data_sizes: dict[str, Any], evaluation: dict[str, Any], training: dict[str, Any],
    gains: dict[str, Any] | None = None,
    commit: str | None = None,
) -> dict[str, Any]:
    """The card's fields: provenance, decoding, data sizes, measured quality, the dtype it was
    measured in (verdicts can change with it) and the gains over the seed judge on the same pairs
    (paired bootstrap intervals)."""
    from st_eval.prompt import load_template
    from st_eval.rating import TOP_LOGPROBS

    ev = recipe.evaluation
    template = load_template(recipe.template)
    if template.reads_probabilities:
        read = (
            "mean over both presentation orders of the log-odds of the template's choices (the answer shown first against the "
            "second) under the judge's next-token probabilities" if template.is_choice else
            "expected value of the template's choices under the judge's next-token probabilities"
        )
        decoding: dict[str, Any] = {
            "rating": f"{read} (each choice's own with the hf engine; among the top {TOP_LOGPROBS} from engines that return no more)",
            "evaluation": {"order": ev.order},
        }
    else:
        decoding = {
            "verdict_step": recipe.verdict_step,
            "annotation": {"samples": recipe.annotation.samples, "temperature": recipe.annotation.temperature,
                           "top_p": recipe.annotation.top_p, "max_new_tokens": recipe.annotation.max_new_tokens},
            "evaluation": {"samples": ev.samples, "temperature": ev.temperature, "max_new_tokens": ev.max_new_tokens, "order": ev.order},
        }
    return {
        "name": f"{recipe.name}-iter{iteration}",
        "recipe": recipe.name,
        "commit": commit or source_revision(),
        "iteration": iteration,
        "seed_model": recipe.seed_model,
        "template": recipe.template,
        "human_labels": "none: the winner of every training pair is known by construction (synthetic pairs)",
        "usage": judge_usage(recipe),
        "decoding": decoding,
        "training": {"method": recipe.train.method, "init": recipe.train.init, "epochs": recipe.train.epochs,
                     "learning_rate": recipe.train.learning_rate, "dpo": recipe.dpo.enabled, **training},
        "data_sizes": data_sizes,
        "evaluation": {
            label: {k: m.get(k) for k in _MEASURED}
            for name, m in evaluation.items()
            for label, m in [(name, m), *((f"{name}/{sub}", f) for sub, f in (m.get("subsets") or {}).items())]
        },
        "gains_over_seed": gains or {},
        "selection_set": ev.select_on,
        "measured_in": measured_dtype(evaluation),
    }


def measured_dtype(evaluation: dict[str, Any]) -> str:
    """The dtype(s) the evaluation sets were judged in, as each set's metrics record it."""
    dtypes = sorted({m["dtype"] for m in evaluation.values() if m.get("dtype")})
    return ", ".join(dtypes) or "not recorded"


def write_card(folder: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write card.json and card.md into the judge folder."""
    json_path = write_json(folder / "card.json", card)
    lines = [
        f"# Judge card: {card['name']}",
        "",
        f"- seed model: `{card['seed_model']}`; recipe `{card['recipe']}` at commit `{card.get('commit', '?')}`",
        f"- human labels: {card.get('human_labels', 'none')}",
        f"- prompt template: `{card['template']}` (use the same template when judging)",
        f"- usage: `{card['usage']}`",
        f"- training: {card['training']['method']} from {card['training']['init']} model, "
        f"{card['training'].get('examples', 0)} examples, {card['training'].get('steps', 0)} steps",
        *(
            [f"- rating: {card['decoding']['rating']}"]
            if "rating" in card["decoding"]
            else [
                f"- verdict step: {'on' if card['decoding'].get('verdict_step') else 'off'}",
                f"- annotation decoding: {card['decoding']['annotation']}",
            ]
        ),
        f"- evaluation decoding: {card['decoding']['evaluation']}",
        f"- measured in: {card.get('measured_in', 'not recorded')} (the judge's dtype; `--engine-arg dtype=...` judges in another)",
        "",
        "## Data sizes",
        "",
        *[f"- {stage}: {size}" for stage, size in card["data_sizes"].items()],
        "",
        "## Measured (both orders; selection on " + card["selection_set"] + ")",
        "",
        "| set | " + " | ".join(_HEADERS) + " |",
        "|---|" + "---|" * len(_HEADERS),
    ]
    for name, m in card["evaluation"].items():
        cells = [m.get(k) for k in _MEASURED]
        lines.append("| " + name + " | " + " | ".join("-" if c is None else (f"{c:.3f}" if isinstance(c, float) else str(c)) for c in cells) + " |")
    if card.get("gains_over_seed"):
        from st_eval.training.report import gain_text

        lines += ["", "## Gain over the seed judge (same pairs, same template; paired bootstrap 95% interval, exact McNemar p)", "",
                  "| set | n | order-averaged | gain | both orders right | gain |", "|---|---|---|---|---|---|"]
        for name, c in card["gains_over_seed"].items():
            avg, both = c["order_averaged"], c["accuracy"]
            lines.append(f"| {name} | {avg['n']} | {avg['baseline']:.3f} -> {avg['candidate']:.3f} | {gain_text(avg)} | "
                         f"{both['baseline']:.3f} -> {both['candidate']:.3f} | {gain_text(both)} |")
    md_path = write_text(folder / "card.md", "\n".join(lines) + "\n")
    return json_path, md_path
