"""The gate from inputs to decision, independent of the command line (so tests can drive it).

Order of work: read and validate every input first (bad input fails fast, before any model
loads), then qualify the judge, then generate missing outputs, then judge the pairs (both
orders; the generation cache supplies judge outputs it already has) and apply the policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from st_eval.engines.base import Engine, SamplingConfig
from st_eval.errors import InputError
from st_eval.gate.decision import EXIT_CODES, UNCATEGORIZED, Decision, Policy, check_categories, decide
from st_eval.gate.generate import generate_outputs, outputs_path
from st_eval.gate.outputs import ModelOutputs, PromptItem, apply_references, build_pairs, load_outputs, load_prompts, resolve_prompts
from st_eval.gate.qualification import Qualification, load_benchmark, qualification
from st_eval.judge import Judge
from st_eval.records import Judgment, Pair


@dataclass
class Side:
    """One side of the comparison: an outputs file, or a model that answers the prompts first."""

    outputs: Path | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if (self.outputs is None) == (self.model is None):
            raise InputError("give each side either an outputs FILE or a model to generate them, not both or neither")


@dataclass
class GateConfig:
    """Everything the gate needs besides the judge itself.

    prompts: prompt set (required when a side is generated; else optional, for outputs that
        carry only ids).
    references: optional reference answers by prompt id (an outputs file).
    outputs_dir: where generated outputs are written (and found again on a re-run).
    qualify_on / qualify_subsets / qualify_limit / min_judge_accuracy: optional judge
        qualification benchmark (``rewardbench``, an LLMBar folder or RewardBench-schema files),
        its subsets to use, how many pairs to use (seeded sample), and the accuracy to reach.
    generation: decoding for generated outputs.
    """

    candidate: Side
    baseline: Side
    policy: Policy
    prompts: Path | None = None
    references: Path | None = None
    outputs_dir: Path = Path(".st-eval-gate/outputs")
    qualify_on: str | None = None
    qualify_subsets: list[str] | None = None
    qualify_limit: int | None = None
    min_judge_accuracy: float = 0.6
    generation: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=512))
    progress: bool = False


class LazyJudge:
    """Builds the judge on first use, so bad input is reported before any model loads."""

    def __init__(self, factory: Callable[[], Judge]) -> None:
        self._factory = factory
        self._judge: Judge | None = None

    def get(self) -> Judge:
        if self._judge is None:
            self._judge = self._factory()
        return self._judge

    def judge(self, pairs: list[Pair], progress: bool, info: dict[str, Any], phase: str) -> list[Judgment]:
        """Judge ``pairs``; records how many raw judge outputs the generation cache supplied."""
        judge = self.get()
        engine = judge.engine
        hits, misses = getattr(engine, "hits", None), getattr(engine, "misses", None)
        judgments = judge.judge(pairs, progress=progress)
        info["judge"] = engine.identity
        if hits is not None and misses is not None:
            info[f"{phase}_outputs_cached"] = engine.hits - hits  # type: ignore[attr-defined]
            info[f"{phase}_outputs_generated"] = engine.misses - misses  # type: ignore[attr-defined]
        return judgments


@dataclass
class GateResult:
    """What the gate decided, with the material behind it."""

    status: str
    errors: list[str]
    decision: Decision | None
    pairs: list[Pair]
    judgments: list[Judgment]
    qualification: Qualification | None
    info: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def run_gate(config: GateConfig, judge: LazyJudge, make_generator: Callable[[str], Engine] | None = None, log: Callable[[str], None] = lambda _: None) -> GateResult:
    """Run the whole gate. Errors in the inputs raise InputError; untrustworthy runs return status ``error``."""
    timings: dict[str, float] = {}
    info: dict[str, Any] = {"timings_s": timings}
    prompts = load_prompts(config.prompts) if config.prompts else None
    references = load_outputs(config.references) if config.references else None
    sides = {name: load_outputs(side.outputs) if side.outputs else None for name, side in (("candidate", config.candidate), ("baseline", config.baseline))}
    if prompts is None and any(s is None for s in sides.values()):
        raise InputError("generating outputs needs the prompt set: give --prompts FILE")
    benchmark = load_benchmark(config.qualify_on, config.qualify_subsets, config.qualify_limit) if config.qualify_on else None
    # With both outputs given, every input problem surfaces now, before any model loads.
    pairs = _pairs(sides["candidate"], sides["baseline"], prompts, references, config.policy) if all(sides.values()) else None

    qualified = None
    if benchmark is not None:
        start = time.perf_counter()
        log(f"qualifying the judge on {config.qualify_on} ({len(benchmark)} pairs)")
        judged = judge.judge(benchmark, config.progress, info, "qualification")
        qualified = qualification(config.qualify_on, judged, config.min_judge_accuracy)
        timings["qualification"] = time.perf_counter() - start
        if not qualified.passed:
            message = (
                f"judge not qualified: accuracy {qualified.accuracy:.3f} on {qualified.benchmark} "
                f"({qualified.n} pairs) is below --min-judge-accuracy {config.min_judge_accuracy}"
            )
            return GateResult("error", [message], None, [], [], qualified, info)

    outputs = {name: loaded for name, loaded in sides.items() if loaded is not None}
    for name, side in (("candidate", config.candidate), ("baseline", config.baseline)):
        if name not in outputs:
            start = time.perf_counter()
            if make_generator is None:
                raise InputError(f"no engine to generate the {name} outputs with")
            engine = make_generator(side.model)  # type: ignore[arg-type]
            path = outputs_path(config.outputs_dir, engine.identity, config.generation)
            log(f"generating {name} outputs with {engine.identity} into {path}")
            outputs[name] = generate_outputs(engine, list(prompts.values()), path, config.generation, progress=config.progress)  # type: ignore[union-attr]
            timings[f"generate_{name}"] = time.perf_counter() - start
    if pairs is None:
        pairs = _pairs(outputs["candidate"], outputs["baseline"], prompts, references, config.policy)
    info["candidate"] = {"source": str(outputs["candidate"].path), "model": outputs["candidate"].model}
    info["baseline"] = {"source": str(outputs["baseline"].path), "model": outputs["baseline"].model}

    start = time.perf_counter()
    log(f"judging {len(pairs)} prompts in both orders")
    judgments = judge.judge(pairs, config.progress, info, "gate")
    timings["judging"] = time.perf_counter() - start
    decision = decide(judgments, config.policy)
    return GateResult(decision.status, decision.errors, decision, pairs, judgments, qualified, info)


def _pairs(
    candidate: ModelOutputs, baseline: ModelOutputs, prompts: dict[str, PromptItem] | None, references: ModelOutputs | None, policy: Policy
) -> list[Pair]:
    """Validated pairs (candidate = response A) and a check that category thresholds name real categories."""
    items = resolve_prompts(candidate, baseline, prompts)
    if references is not None:
        items = apply_references(items, references)
    check_categories(policy, {item.category or UNCATEGORIZED for item in items})
    return build_pairs(items, candidate, baseline)
