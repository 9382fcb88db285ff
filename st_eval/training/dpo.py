"""Optional stage 5b: DPO on (correct judgment, wrong or unparseable judgment) for the same prompt.

As in the released Llama-3.1 self-taught evaluator, this runs after SFT and starts from the SFT
judge. The rejected side comes from the same rejection-sampling pass, so no extra generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_eval.jsonl import write_jsonl
from st_eval.training.annotation import Example
from st_eval.training.config import Recipe
from st_eval.training.jobs import TrainJob, launch


def dpo_rows(examples: list[Example]) -> list[dict[str, Any]]:
    """trl preference rows; examples without a rejected sample give none."""
    return [row for e in examples if (row := e.dpo_row()) is not None]


def train_dpo(recipe: Recipe, sft_model: str, examples: list[Example], folder: Path) -> dict[str, Any] | None:
    """Run DPO from ``sft_model`` into ``folder/judge-dpo``; None when no preference pair exists."""
    rows = dpo_rows(examples)
    if not rows:
        return None
    data = write_jsonl(folder / "dpo_data.jsonl", rows)
    job = TrainJob("dpo", sft_model, str(data), str(folder / "judge-dpo"), recipe.train, recipe.dpo, recipe.seed)
    return launch(job, folder / "dpo_job.json")
