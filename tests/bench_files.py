"""Tiny benchmark files for the fast CLI tests: RewardBench rows and an MT-Bench human judgment,
in the layouts the loaders read."""

from __future__ import annotations

import json
from pathlib import Path


def rewardbench_file(tmp_path: Path, n: int = 12) -> Path:
    """``n`` RewardBench rows over four subsets (one per section), the chosen answer "good"."""
    subsets = ["alpacaeval-easy", "llmbar-natural", "donotanswer", "math-prm"]
    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad", "subset": subsets[i % 4], "id": i} for i in range(n)]
    path = tmp_path / "rb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mtbench_human_file(tmp_path: Path) -> Path:
    """One MT-Bench human judgment (turn 1, model_a wins)."""
    conv = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "a"}]
    row = {"question_id": 81, "model_a": "x", "model_b": "y", "winner": "model_a", "judge": "expert_0",
           "conversation_a": conv, "conversation_b": conv, "turn": 1}
    path = tmp_path / "human.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path
