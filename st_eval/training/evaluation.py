"""Stage 6: score a judge on the held-out synthetic slice and on labelled benchmarks.

Evaluation goes through the core ``Judge`` with the recipe's template, so the measured judge
is exactly the judge that users run. Checkpoint selection uses the held-out synthetic slice
by default; a test benchmark is only used for selection when the recipe says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_eval.engines import Engine, SamplingConfig
from st_eval.errors import InputError
from st_eval.judge import Judge, JudgeConfig
from st_eval.pair_files import parse_json, read_text
from st_eval.records import Judgment, Message, Pair
from st_eval.summary import summarize
from st_eval.training.artifacts import resumable_chunks
from st_eval.training.config import BenchmarkSpec, EvaluationConfig, Recipe, resolve_path


def load_benchmark(recipe: Recipe, spec: BenchmarkSpec) -> list[Pair]:
    """Pairs of a benchmark: an st-eval pair file, an LLMBar-style JSON list, a folder of the
    five LLMBar sets (each pair's ``subset`` names its set; ``limit`` then applies per set), or
    PandaLM's test set (a release file or its folder: the pairs whose gold is not a tie)."""
    from st_eval.benchmarks.pandalm import load_pandalm, non_tie
    from st_eval.benchmarks.rewardbench import load_llmbar
    from st_eval.pair_files import load_pairs

    path = resolve_path(recipe, spec.path, shared=True)
    if _is_pandalm(path):
        pairs = non_tie(load_pandalm(path)[0])
        return pairs[: spec.limit] if spec.limit else pairs
    if path.is_dir():
        pairs = load_llmbar(path)
        if spec.limit:
            counts: dict[str, int] = {}
            kept = []
            for pair in pairs:
                subset = pair.metadata["subset"]
                counts[subset] = counts.get(subset, 0) + 1
                if counts[subset] <= spec.limit:
                    kept.append(pair)
            pairs = kept
        return pairs
    pairs = _llmbar(path) if _is_llmbar(path) else load_pairs(path)
    return pairs[: spec.limit] if spec.limit else pairs


def load_benchmarks(recipe: Recipe) -> tuple[dict[str, list[Pair]], dict[str, str]]:
    """The recipe's benchmarks by name, and the optional ones skipped because their file is absent
    (name -> reason). Loaded before any generation, so a bad file fails the run at once."""
    loaded: dict[str, list[Pair]] = {}
    skipped: dict[str, str] = {}
    for spec in recipe.evaluation.benchmarks:
        if not spec.required:
            try:
                resolve_path(recipe, spec.path, shared=True)
            except InputError as exc:
                skipped[spec.name] = str(exc)
                continue
        loaded[spec.name] = load_benchmark(recipe, spec)
    return loaded, skipped


def _is_pandalm(path: Path) -> bool:
    from st_eval.benchmarks.pandalm import FILES

    if path.is_dir():
        return any((path / name).is_file() for name in FILES)
    return path.suffix == ".json" and '"annotator1"' in read_text(path)[:4000]


def _is_llmbar(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    head = read_text(path)[:2000]
    return '"output_1"' in head and '"output_2"' in head


def _llmbar(path: Path) -> list[Pair]:
    """LLMBar rows ``{input, output_1, output_2, label: 1|2}`` as labelled pairs."""
    rows = parse_json(read_text(path), str(path))
    if not isinstance(rows, list):
        raise InputError(f"{path}: an LLMBar file must hold a list of objects")
    pairs = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"{path}: item {number}: expected an object, got {type(row).__name__}")
        for key in ("input", "output_1", "output_2"):
            if not isinstance(row.get(key), str):
                raise InputError(f"{path}: item {number}: field {key!r} is missing or not a string")
        if row.get("label") not in (1, 2):
            raise InputError(f"{path}: item {number}: field 'label' must be 1 or 2")
        pairs.append(
            Pair(
                id=f"{path.stem}-{number}",
                conversation=[Message("user", row["input"])],
                response_a=row["output_1"],
                response_b=row["output_2"],
                label="A" if row["label"] == 1 else "B",
            )
        )
    return pairs


def evaluation_judge(engine: Engine, recipe: Recipe) -> Judge:
    config: EvaluationConfig = recipe.evaluation
    sampling = SamplingConfig(
        temperature=config.temperature, top_p=0.9 if config.temperature else 1.0,
        max_new_tokens=config.max_new_tokens, seed=recipe.seed,
    )
    return Judge(
        engine,
        JudgeConfig(
            template=recipe.template, samples=config.samples, order=config.order, sampling=sampling,
            verdict_step=recipe.verdict_step,
        ),
    )


def evaluate(judge: Judge, pairs: list[Pair], *, partial: Path, desc: str, batch: int = 8) -> dict[str, Any]:
    """Judge ``pairs`` (resumable through ``partial``) and return the metrics of the set, with the
    dtype the judge computed in (``dtype``; None where the engine cannot tell): the card says it."""

    def work(chunk: list[Pair]) -> list[dict[str, Any]]:
        return [{"key": j.pair_id, "judgment": j.to_dict()} for j in judge.judge(chunk, chunk_size=batch)]

    rows = resumable_chunks(pairs, lambda p: p.id, work, partial, chunk_size=batch, desc=desc)
    judgments = [Judgment.from_dict(r["judgment"]) for r in rows]
    return {**metrics(judgments, pairs), "dtype": judge.engine.dtype}


def pair_scores(judgment: Judgment) -> tuple[float, int]:
    """(order-averaged score, right in every order) of one labelled judgment: the score of an
    order is RewardBench's (1 right, 0 wrong, 0.5 tie or no verdict), averaged over the orders."""
    from st_eval.benchmarks.rewardbench import pair_score

    scores = [pair_score(r.verdict, judgment.label) for r in judgment.orders]
    return sum(scores) / len(scores), int(all(r.verdict == judgment.label for r in judgment.orders))


def metrics(judgments: list[Judgment], pairs: list[Pair]) -> dict[str, Any]:
    """Accuracy (both orders combined), position consistency, invalid rate, longer-response preference.

    accuracy: the combined verdict is right, i.e. right in both orders when both are judged
        (position-consistent accuracy; chance 0.25).
    order_averaged: RewardBench's score per order (a tie or no verdict counts 0.5), averaged
        over orders and pairs (chance 0.5): the expected one-random-order score.
    prefers_longer: among decided A/B verdicts, the share choosing the longer response (0.5 is
        no length bias on balanced data).
    scores: per pair id, [order-averaged score, right in both orders], for paired comparisons.
    subsets: the same figures per ``subset`` when pairs carry one (LLMBar's five sets).
    """
    result = _figures(judgments, pairs)
    subsets = sorted({p.metadata["subset"] for p in pairs if p.metadata.get("subset")})
    if len(subsets) > 1:
        by_id = {p.id: p for p in pairs}
        result["subsets"] = {
            name: _figures([j for j in judgments if by_id[j.pair_id].metadata.get("subset") == name],
                           [p for p in pairs if p.metadata.get("subset") == name])
            for name in subsets
        }
    return result


def _figures(judgments: list[Judgment], pairs: list[Pair]) -> dict[str, Any]:
    summary = summarize(judgments)
    by_id = {p.id: p for p in pairs}
    decided = [j for j in judgments if j.verdict in ("A", "B") and len(by_id[j.pair_id].response_a) != len(by_id[j.pair_id].response_b)]
    longer = sum(
        (j.verdict == "A") == (len(by_id[j.pair_id].response_a) > len(by_id[j.pair_id].response_b)) for j in decided
    )
    scores = {j.pair_id: list(pair_scores(j)) for j in judgments if j.label is not None}
    return {
        "n": summary.n,
        "accuracy": summary.accuracy,
        "order_averaged": sum(s[0] for s in scores.values()) / len(scores) if scores else None,
        "order_accuracy": summary.order_accuracy,
        "consistency": summary.consistency,
        "invalid_rate": summary.invalid_rate,
        "forced_rate": summary.forced_rate,
        "shortened_rate": summary.shortened_rate,
        "prefers_longer": longer / len(decided) if decided else None,
        "verdicts": summary.verdicts,
        "scores": scores,
    }
