"""Stage 4: rejection-sampling annotation by the current judge.

For every training pair and both presentation orders the judge samples N judgments with the
same prompt (``build_prompt``) and parser (``parse_verdict``) used everywhere else. One judgment
that picks the known winner is kept per (pair, order); pairs with none are dropped; kept
examples are balanced so the target verdict is ``[[A]]`` and ``[[B]]`` equally often.
A wrong or unparseable sample is kept beside it as the rejected side for optional DPO.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from st_eval.engines import Engine, SamplingConfig
from st_eval.judge import build_prompt, unswap
from st_eval.records import Order, Pair
from st_eval.training.artifacts import resumable_chunks
from st_eval.training.config import AnnotationConfig
from st_eval.verdict import parse_verdict
from st_eval.verdict_step import sample_judgments

ORDERS: tuple[Order, Order] = ("given", "swapped")


@dataclass
class Example:
    """One kept judgment: the judge prompt for (pair, order) and the judgment that won.

    shown_verdict is the letter the judgment gives in the shown order (what balancing counts).
    rejected is a wrong or unparseable sample for the same prompt, if one was drawn.
    """

    pair_id: str
    order: Order
    prompt: list[dict[str, str]]
    judgment: str
    shown_verdict: str
    rejected: str | None = None

    def sft_row(self) -> dict[str, Any]:
        """Conversational prompt/completion row: trl applies the chat template, loss on the completion."""
        return {"prompt": self.prompt, "completion": [{"role": "assistant", "content": self.judgment}]}

    def dpo_row(self) -> dict[str, Any] | None:
        if self.rejected is None:
            return None
        return {
            "prompt": self.prompt,
            "chosen": [{"role": "assistant", "content": self.judgment}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }


def trim_after_verdict(text: str) -> str:
    """Drop trailing lines that hold no verdict marker, so training teaches the judge to stop.

    Uses the core parser only: lines are removed from the end while the removed tail parses as
    ``no_verdict`` and the verdict of what remains is unchanged.
    """
    verdict = parse_verdict(text).verdict
    lines = text.splitlines(keepends=True)
    keep = len(lines)
    while keep > 1:
        tail = "".join(lines[keep - 1 :])
        if parse_verdict(tail).reason == "no_verdict" or not tail.strip():
            keep -= 1
            continue
        break
    trimmed = "".join(lines[:keep]).rstrip()
    return trimmed if parse_verdict(trimmed).verdict == verdict else text.strip()


def judge_samples(pair: Pair, order: Order, samples: list[str], template: str, forced: int = 0) -> dict[str, Any]:
    """Classify one (pair, order)'s samples and pick the kept and rejected judgments.

    forced: how many samples the verdict step finished (counted for the report).
    """
    correct, wrong, invalid = [], [], []
    for text in samples:
        parsed = parse_verdict(text)
        if parsed.verdict is None:
            invalid.append(text)
        elif unswap(parsed.verdict, order) == pair.label:
            correct.append(text)
        else:
            wrong.append(text)
    kept = trim_after_verdict(correct[0]) if correct else None
    return {
        "order": order,
        "samples": len(samples),
        "valid": len(correct) + len(wrong),
        "correct": len(correct),
        "forced": forced,
        "kept": kept,
        "shown_verdict": parse_verdict(kept).verdict if kept else None,
        "rejected": (wrong or invalid or [None])[0],
        "template": template,
    }


def annotate(
    pairs: list[Pair], engine: Engine, config: AnnotationConfig, *, template: str, seed: int, partial: Path,
    batch: int = 8, desc: str = "annotation", verdict_step: bool = False,
) -> list[dict[str, Any]]:
    """Sample judgments for every pair in both orders; one row per pair (resumable).

    verdict_step: finish samples without a verdict through the core's verdict step.
    """
    sampling = SamplingConfig(config.temperature, config.top_p, config.max_new_tokens, seed)
    by_id = {p.id: p for p in pairs}

    def work(chunk: list[Pair]) -> list[dict[str, Any]]:
        requests = [(pair, order) for pair in chunk for order in ORDERS]
        prompts = [build_prompt(p, o, template) for p, o in requests]
        outputs, forced = sample_judgments(engine, prompts, config.samples, sampling, verdict_step=verdict_step)
        rows: dict[str, dict[str, Any]] = {p.id: {"key": p.id, "orders": []} for p in chunk}
        for (pair, order), samples, flags in zip(requests, outputs, forced):
            rows[pair.id]["orders"].append(judge_samples(pair, order, samples, template, forced=sum(flags)))
        return list(rows.values())

    rows = resumable_chunks(pairs, lambda p: p.id, work, partial, chunk_size=batch, desc=desc)
    assert all(r["key"] in by_id for r in rows)
    return rows


def select_examples(
    rows: list[dict[str, Any]], pairs: list[Pair], *, template: str, balance: bool, seed: int
) -> tuple[list[Example], dict[str, int]]:
    """Kept judgments as training examples, balanced between A and B; with counts per step."""
    by_id = {p.id: p for p in pairs}
    examples: list[Example] = []
    stats = {
        "pairs": len(rows), "samples": 0, "forced_samples": 0, "valid_samples": 0, "correct_samples": 0,
        "pair_orders_kept": 0,
    }
    for row in rows:
        for result in row["orders"]:
            stats["samples"] += result["samples"]
            stats["forced_samples"] += result.get("forced", 0)
            stats["valid_samples"] += result["valid"]
            stats["correct_samples"] += result["correct"]
            if result["kept"]:
                stats["pair_orders_kept"] += 1
                pair = by_id[row["key"]]
                examples.append(
                    Example(
                        pair_id=pair.id,
                        order=result["order"],
                        prompt=build_prompt(pair, result["order"], template),
                        judgment=result["kept"],
                        shown_verdict=result["shown_verdict"],
                        rejected=result["rejected"],
                    )
                )
    stats["pairs_kept"] = len({e.pair_id for e in examples})
    stats["examples_before_balance"] = len(examples)
    if balance:
        examples = balance_examples(examples, seed)
    stats["examples"] = len(examples)
    stats["examples_A"] = sum(e.shown_verdict == "A" for e in examples)
    stats["examples_B"] = sum(e.shown_verdict == "B" for e in examples)
    return examples, stats


def balance_examples(examples: list[Example], seed: int) -> list[Example]:
    """Down-sample the larger side so A-verdict and B-verdict examples are equally many.

    A judge trained on mostly-A targets learns a position bias instead of a preference.
    """
    a = [e for e in examples if e.shown_verdict == "A"]
    b = [e for e in examples if e.shown_verdict == "B"]
    size = min(len(a), len(b))
    rng = random.Random(seed)
    keep = {id(e) for e in rng.sample(a, size) + rng.sample(b, size)}
    return [e for e in examples if id(e) in keep]
