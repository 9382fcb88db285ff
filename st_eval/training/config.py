"""Training recipes: YAML files validated into dataclasses, with errors that name the field.

A recipe fixes everything a run depends on (seed model, prompt template, budgets per stage), so
the run directory's copy of it is the full record of how a judge was made.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from st_eval.errors import InputError
from st_eval.pair_files import read_text

#: The paper's 15 instruction categories (Wang et al. 2024, selection stage).
CATEGORIES = (
    "coding",
    "math reasoning",
    "advice",
    "brainstorming",
    "classification",
    "closed QA",
    "creative writing",
    "extraction",
    "persona",
    "open QA",
    "rewriting",
    "summarization",
    "knowledge & reasoning",
    "humanities",
    "other",
)
LENGTH_CLASSES = ("short", "medium", "long")


@dataclass
class PoolSource:
    """One place instructions come from.

    kind: ``builtin`` (the instructions shipped with st-eval), ``file`` (local JSONL, JSON or
        parquet), ``hf`` (a Hugging Face dataset, streamed), ``mt_bench`` (first turns of an
        MT-Bench ``question.jsonl``) or ``self_instruct`` (a Self-Instruct task file: each task's
        first instance gives the request and its human-written answer).
    path: file path (``file``, ``mt_bench``, ``self_instruct``); relative paths are resolved
        against the recipe's folder, then the current directory, then the shared data folder.
        For ``mt_bench`` the default is ``mt_bench/question.jsonl`` in the shared data folder.
    dataset, split, config: the Hugging Face dataset id, split and config name (``hf``).
    field: the column that holds the instruction text (``file``/``hf``); a list of chat turns
        (WildChat's ``conversation``) uses its first user turn.
    limit: read at most this many rows from this source (0 = all).
    required: when false, a missing file skips this source (and the pool stats say so) instead
        of failing the run; for data that only some machines have.
    """

    kind: Literal["builtin", "file", "hf", "mt_bench", "self_instruct"] = "builtin"
    path: str | None = None
    dataset: str | None = None
    split: str = "train"
    config: str | None = None
    field: str = "instruction"
    limit: int = 0
    required: bool = True


@dataclass
class PoolConfig:
    """Stage 1: the unlabeled instruction pool.

    sources: where instructions come from, read in order and deduplicated (case and
        whitespace insensitive).
    limit: keep at most this many instructions after dedup (0 = all), sampled with the seed.
    min_chars, max_chars: drop instructions outside this length range.
    """

    sources: list[PoolSource] = field(default_factory=lambda: [PoolSource()])
    limit: int = 0
    min_chars: int = 10
    max_chars: int = 2000


@dataclass
class SelectionConfig:
    """Stage 2: the generator model tags each instruction; the recipe keeps some.

    enabled: tag and filter at all (False keeps the whole pool).
    categories: categories to keep (empty = all); names from the paper's 15.
    min_complexity, max_complexity: keep tagged complexity in this range (1-10).
    lengths: length classes to keep (empty = all): short, medium, long.
    keep_untagged: keep instructions whose tag output could not be parsed (they are counted
        either way). Small models rarely follow the tag format; large ones almost always do.
    max_new_tokens: budget for one tag answer.
    limit: keep at most this many selected instructions (0 = all).
    """

    enabled: bool = True
    categories: list[str] = field(default_factory=list)
    min_complexity: int = 1
    max_complexity: int = 10
    lengths: list[str] = field(default_factory=list)
    keep_untagged: bool = False
    max_new_tokens: int = 48
    limit: int = 0


@dataclass
class SynthesisConfig:
    """Stage 3: synthetic preference pairs, generated once and reused by every iteration.

    method: ``similar_instruction`` (the paper's: loser answers a related-but-different
        instruction the model writes), ``worse_response`` (the paper's weaker ablation: the
        model is asked directly for a worse answer) or ``retrieval_neighbour`` (loser: the answer
        of a neighbouring instruction of the pool, as LLMBar's Neighbor set was built; no model
        call where the pool carries answers; see ``retrieval_neighbour.py``).
    neighbours: ``retrieval_neighbour``: losers per training instruction (its nearest ones).
    max_similarity: ``retrieval_neighbour``: instructions at least this similar (TF-IDF
        cosine) are near-duplicates, never neighbours.
    max_new_tokens: budget for each response; a response that uses all of it is truncated.
    truncated: ``drop`` a pair with a truncated response (default), or ``trim`` the response
        back to its last complete sentence (small models on small budgets rarely finish).
    instruction_max_new_tokens: budget for the modified instruction x'.
    answer_system: optional system message for both the winner's and the loser's answers
        (e.g. "Answer briefly."), so small budgets do not truncate most responses.
    temperature, top_p: decoding for synthesis.
    heldout: synthetic pairs set aside for evaluation and checkpoint selection (never trained on);
        for ``retrieval_neighbour``, held-out instructions (one pair each, neighbours among
        themselves).
    """

    method: Literal["similar_instruction", "worse_response", "retrieval_neighbour"] = "similar_instruction"
    neighbours: int = 2
    max_similarity: float = 0.9
    max_new_tokens: int = 256
    truncated: Literal["drop", "trim"] = "drop"
    instruction_max_new_tokens: int = 96
    answer_system: str | None = None
    temperature: float = 0.7
    top_p: float = 0.9
    heldout: int = 16


@dataclass
class AnnotationConfig:
    """Stage 4: the current judge labels the training pairs by rejection sampling.

    samples: judgments sampled per pair and order (paper: 15).
    temperature, top_p: decoding (paper: 0.7 / 0.9).
    max_new_tokens: budget per judgment.
    balance: down-sample so kept judgments choosing A and choosing B are equally many.
    hard_negatives: rating templates with ``retrieval_neighbour`` pairs, iterations after the
        first: the current judge rates each training instruction's answer and those of its
        ``hard_negatives`` nearest neighbours, and the iteration trains on the
        ``synthesis.neighbours`` losers it rates closest to the winner (0: every iteration
        trains on the nearest neighbours). See ``rating_pairs.py``.
    """

    samples: int = 15
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512
    balance: bool = True
    hard_negatives: int = 0


@dataclass
class LoraSettings:
    """LoRA adapter shape (peft). target_modules: ``all-linear`` or a list of module names."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class TrainConfig:
    """Stage 5: supervised fine-tuning on (judge prompt -> kept judgment), loss on the judgment.

    method: ``lora`` (adapter merged into the saved judge) or ``full``.
    init: ``seed`` (each iteration trains the seed model, as the authors found best) or
        ``previous`` (continue from the last iteration's judge).
    epochs, learning_rate, batch_size, gradient_accumulation_steps, max_length, warmup_ratio:
        the usual trainer settings (max_length in tokens, prompt + judgment).
    bf16: train in bfloat16 (GPUs).
    gradient_checkpointing: trade compute for memory (large models).
    padding_free: on CPU, SFT and reward (rating-judge) training lay each batch's sequences end
        to end in one row (no padding) and attend within each sequence (st-eval's CPU
        attention); same loss, less work. GPUs keep the trainer's padded batches
        (padding-free there wants flash attention).
    launcher: ``inprocess`` (one device) or ``accelerate`` (``accelerate launch`` with
        ``accelerate_config``: multi-GPU FSDP or DeepSpeed, multi-node).
    accelerate_config: path of an accelerate config file (see training/accelerate/).
    """

    method: Literal["lora", "full"] = "lora"
    init: Literal["seed", "previous"] = "seed"
    epochs: float = 2.0
    learning_rate: float = 2e-4
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    padding_free: bool = True
    lora: LoraSettings = field(default_factory=LoraSettings)
    launcher: Literal["inprocess", "accelerate"] = "inprocess"
    accelerate_config: str | None = None


@dataclass
class DPOSettings:
    """Optional stage 5b: DPO on (correct judgment, wrong or unparseable judgment) pairs.

    enabled: run it after SFT in each iteration.
    beta, learning_rate, epochs: DPO settings. One preference pair per kept judgment that has
        a wrong or unparseable sibling sample.
    """

    enabled: bool = False
    beta: float = 0.1
    learning_rate: float = 5e-6
    epochs: float = 1.0


@dataclass
class GRPOSettings:
    """Optional stage 5c: online RL of the judge (GRPO, J1-style) on the loop's synthetic pairs.

    enabled: run it in each iteration, after SFT (``after_sft``) or instead of it.
    num_generations: judgments sampled per prompt (the group GRPO compares), at ``temperature``.
    beta: KL penalty to the starting judge; learning_rate, steps: optimisation.
    max_completion_length: judgment budget in tokens.
    pairs: synthetic training pairs used (0 = all); each is shown in both orders.
    pairs_per_step: pairs per generation batch (both orders of a pair stay in one batch).
    reward_weights: ``correct`` (the verdict names the known winner), ``consistent`` (right
        in both orders of the same pair, for the judgment with the same index in the other
        order), ``format`` (a verdict was written at all).
    use_vllm: generate with vLLM colocated on the training GPU (trl's own generation otherwise).
    """

    enabled: bool = False
    after_sft: bool = True
    num_generations: int = 4
    temperature: float = 1.0
    beta: float = 0.01
    learning_rate: float = 1e-6
    steps: int = 100
    max_completion_length: int = 512
    pairs: int = 0
    pairs_per_step: int = 1
    reward_weights: dict[str, float] = field(default_factory=lambda: {"correct": 1.0, "consistent": 1.0, "format": 0.0})
    use_vllm: bool = False


@dataclass
class BenchmarkSpec:
    """A labelled benchmark scored after every iteration.

    name: how it appears in reports and cards.
    path: a pair file (st-eval's JSONL/JSON/parquet) or an LLMBar-style JSON list
        (``input, output_1, output_2, label``); relative paths are looked up beside the
        recipe, then in the shared data folder ($ST_EVAL_SHARED_DATA or ../shared/data).
    limit: score the first ``limit`` pairs (0 = all).
    required: when false, a run without the file skips this benchmark (and says so in the
        report) instead of failing; for data that only some machines have.
    """

    name: str
    path: str
    limit: int = 0
    required: bool = True


@dataclass
class EvaluationConfig:
    """Stage 6: score each judge (seed included) and keep the best.

    max_new_tokens, samples, temperature: decoding for evaluation (greedy by default).
    order: presentation order; ``both`` measures position consistency.
    benchmarks: labelled benchmarks to report.
    select_on: ``synthetic`` (the held-out synthetic slice, default) or a benchmark name; a
        benchmark is then used for selection and is no longer an unbiased test.
    """

    max_new_tokens: int = 512
    samples: int = 1
    temperature: float = 0.0
    order: Literal["given", "swapped", "both"] = "both"
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    select_on: str = "synthetic"


@dataclass
class Recipe:
    """A whole training run.

    name: recipe name (recorded in the card).
    seed_model: the judge that starts it all (embedded name, folder or Hugging Face id).
    generator_model: model used for tagging and pair synthesis (default: seed_model).
    engine: generation engine for every stage (``hf``, ``vllm``, ``openai``).
    engine_options: extra engine options (``batch_size``, ``tensor_parallel_size``, ...).
    template: judge prompt template used at annotation, training and evaluation alike.
    verdict_step: finish judgments that end without a verdict by continuing them from
        "Final verdict: [[" (the core's verdict step), at annotation and evaluation alike. It
        bootstraps seed judges too small to conclude on their own; reports show the forced rate.
    iterations: self-training iterations.
    cache: keep every generation in st-eval's generation cache ($ST_EVAL_HOME/cache), so a new
        run of the same recipe and models (or a judge command on the same prompts) regenerates
        nothing it already has; off for timing runs.
    seed: random seed for sampling, shuffling and balancing.
    """

    name: str
    seed_model: str = "smollm2-135m"
    generator_model: str | None = None
    engine: str = "hf"
    engine_options: dict[str, Any] = field(default_factory=dict)
    template: str = "pairwise-v1"
    verdict_step: bool = False
    iterations: int = 1
    cache: bool = True
    seed: int = 0
    pool: PoolConfig = field(default_factory=PoolConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    annotation: AnnotationConfig = field(default_factory=AnnotationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dpo: DPOSettings = field(default_factory=DPOSettings)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    #: folder of the recipe file, for resolving relative paths (not a YAML field)
    base_dir: str = "."

    @property
    def generator(self) -> str:
        return self.generator_model or self.seed_model

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("base_dir")
        return data


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe file; ``overrides`` replace top-level fields (CLI flags)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: recipe file not found")
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe must be a mapping of fields")
    data.update(overrides or {})
    recipe = recipe_from_dict(data, where=str(path))
    recipe.base_dir = str(path.resolve().parent)
    if recipe.train.accelerate_config:
        try:
            recipe.train.accelerate_config = str(resolve_path(recipe, recipe.train.accelerate_config).resolve())
        except InputError as exc:
            raise InputError(f"{path}: field 'train.accelerate_config': {exc}") from exc
    return recipe


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a mapping into a Recipe; errors read ``<where>: field 'a.b': problem``."""
    recipe = _build(Recipe, data, where, "")
    _check(recipe, where)
    return recipe


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"{where}: field {prefix.rstrip('.') or 'recipe'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "base_dir"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"{where}: field {prefix + unknown[0]!r} is not a recipe field (known: {', '.join(sorted(known))})"
        )
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise InputError(f"{where}: field {prefix + f.name!r} is required")
            continue
        values[f.name] = _convert(hints[f.name], data[f.name], where, prefix + f.name)
    return cls(**values)


def _convert(hint: Any, value: Any, where: str, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is PoolSource and isinstance(value, str):  # "builtin" is short for {kind: builtin}
        value = {"kind": value}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, name + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where, name)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(errors[0])
    if origin is Literal:
        if value not in args:
            raise InputError(f"{where}: field {name!r} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"{where}: field {name!r} must be a list")
        return [_convert(args[0], item, where, f"{name}[{i}]") for i, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: field {name!r} must be a mapping")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise InputError(f"{where}: field {name!r} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _check(recipe: Recipe, where: str) -> None:
    """Cross-field rules the types alone cannot express."""

    def fail(name: str, problem: str) -> None:
        raise InputError(f"{where}: field {name!r} {problem}")

    from st_eval.engines import ENGINES

    if recipe.engine not in ENGINES:
        fail("engine", f"must be one of {', '.join(ENGINES)}, got {recipe.engine!r}")
    if recipe.iterations < 1:
        fail("iterations", "must be >= 1")
    for i, source in enumerate(recipe.pool.sources):
        if source.kind in ("file", "self_instruct") and not source.path:
            fail(f"pool.sources[{i}].path", f"is required for kind {source.kind!r}")
        if source.kind == "hf" and not source.dataset:
            fail(f"pool.sources[{i}].dataset", "is required for kind 'hf'")
        if source.limit < 0:
            fail(f"pool.sources[{i}].limit", "must be >= 0")
    if not recipe.pool.sources:
        fail("pool.sources", "must name at least one source")
    sel = recipe.selection
    for i, category in enumerate(sel.categories):
        if category not in CATEGORIES:
            fail(f"selection.categories[{i}]", f"must be one of the 15 categories ({', '.join(CATEGORIES)}), got {category!r}")
    for i, length in enumerate(sel.lengths):
        if length not in LENGTH_CLASSES:
            fail(f"selection.lengths[{i}]", f"must be one of {', '.join(LENGTH_CLASSES)}, got {length!r}")
    if not 1 <= sel.min_complexity <= sel.max_complexity <= 10:
        fail("selection.min_complexity", "and max_complexity must satisfy 1 <= min <= max <= 10")
    for name, value in (
        ("synthesis.max_new_tokens", recipe.synthesis.max_new_tokens),
        ("synthesis.instruction_max_new_tokens", recipe.synthesis.instruction_max_new_tokens),
        ("selection.max_new_tokens", sel.max_new_tokens),
        ("annotation.samples", recipe.annotation.samples),
        ("annotation.max_new_tokens", recipe.annotation.max_new_tokens),
        ("train.batch_size", recipe.train.batch_size),
        ("train.gradient_accumulation_steps", recipe.train.gradient_accumulation_steps),
        ("train.max_length", recipe.train.max_length),
        ("evaluation.max_new_tokens", recipe.evaluation.max_new_tokens),
        ("evaluation.samples", recipe.evaluation.samples),
    ):
        if value < 1:
            fail(name, f"must be >= 1, got {value}")
    if recipe.synthesis.heldout < 0:
        fail("synthesis.heldout", "must be >= 0")
    if recipe.synthesis.neighbours < 1:
        fail("synthesis.neighbours", "must be >= 1")
    if not 0 < recipe.synthesis.max_similarity <= 1:
        fail("synthesis.max_similarity", f"must be in (0, 1], got {recipe.synthesis.max_similarity}")
    for name, value in (("synthesis.top_p", recipe.synthesis.top_p), ("annotation.top_p", recipe.annotation.top_p)):
        if not 0 < value <= 1:
            fail(name, f"must be in (0, 1], got {value}")
    if recipe.train.epochs <= 0:
        fail("train.epochs", "must be > 0")
    if recipe.train.launcher == "accelerate" and not recipe.train.accelerate_config:
        fail("train.accelerate_config", "is required when train.launcher is 'accelerate'")
    names = [b.name for b in recipe.evaluation.benchmarks]
    if len(set(names)) != len(names):
        fail("evaluation.benchmarks", "has duplicate names")
    if recipe.evaluation.select_on != "synthetic" and recipe.evaluation.select_on not in names:
        fail("evaluation.select_on", f"must be 'synthetic' or a benchmark name ({', '.join(names) or 'none defined'})")
    if recipe.evaluation.select_on == "synthetic" and recipe.synthesis.heldout < 1:
        fail("synthesis.heldout", "must be >= 1 when evaluation.select_on is 'synthetic'")
    from st_eval.prompt import load_template

    try:
        template = load_template(recipe.template)
    except InputError as exc:
        fail("template", str(exc))
    if template.is_rating:
        if recipe.verdict_step:
            fail("verdict_step", f"does not apply to the rating template {template.name!r}")
        if recipe.evaluation.samples != 1:
            fail("evaluation.samples", f"must be 1 for the rating template {template.name!r} (it reads probabilities)")
        if recipe.train.method != "lora":
            fail("train.method", "must be 'lora' for a rating template")
        if recipe.dpo.enabled:
            fail("dpo.enabled", "does not apply to a rating template (its training is already a preference objective)")
        if recipe.grpo.enabled:
            fail("grpo.enabled", "needs a template whose judge writes its verdict (a pairwise template)")
    if recipe.grpo.enabled:
        for name, value in (("grpo.num_generations", recipe.grpo.num_generations), ("grpo.steps", recipe.grpo.steps),
                            ("grpo.max_completion_length", recipe.grpo.max_completion_length), ("grpo.pairs_per_step", recipe.grpo.pairs_per_step)):
            if value < 1:
                fail(name, f"must be >= 1, got {value}")
        if recipe.grpo.num_generations < 2:
            fail("grpo.num_generations", "must be >= 2 (GRPO compares judgments within a group)")
        unknown = sorted(set(recipe.grpo.reward_weights) - {"correct", "consistent", "format"})
        if unknown:
            fail("grpo.reward_weights", f"unknown reward(s) {', '.join(unknown)}: use correct, consistent, format")
    if recipe.annotation.hard_negatives and not (template.is_rating and recipe.synthesis.method == "retrieval_neighbour"):
        fail("annotation.hard_negatives", "needs a rating template and synthesis.method retrieval_neighbour")
    if recipe.annotation.hard_negatives and recipe.annotation.hard_negatives < recipe.synthesis.neighbours:
        fail("annotation.hard_negatives", f"must be >= synthesis.neighbours ({recipe.synthesis.neighbours}) to leave a choice")


def resolve_path(recipe: Recipe, value: str, *, shared: bool = False) -> Path:
    """Find a recipe-relative path: as given, beside the recipe, then in the shared data folder."""
    candidates = [Path(value).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(Path(recipe.base_dir) / value)
        if shared:
            folder = shared_data_folder()
            if folder is not None:
                candidates.append(folder / value)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise InputError(f"{value}: file not found (looked in {', '.join(str(c) for c in candidates)})")


def shared_data_folder() -> Path | None:
    """``$ST_EVAL_SHARED_DATA``, else ``../shared/data`` beside the current directory."""
    import os

    value = os.environ.get("ST_EVAL_SHARED_DATA")
    candidate = Path(value) if value else Path.cwd().parent / "shared" / "data"
    return candidate if candidate.is_dir() else None
