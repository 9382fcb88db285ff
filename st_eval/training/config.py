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

from st_eval.cluster import ClusterConfig, check_engine
from st_eval.errors import InputError
from st_eval.pair_files import read_text
from st_eval.yaml_text import load_yaml

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
#: prompts per vLLM call when the recipe does not say (``Recipe.chunk_size``): vLLM schedules its
#: own batches, and large calls keep every replica busy
VLLM_CHUNK = 1024


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
class PairSourceSpec:
    """One source of label-free pairs for answered instructions (``synthesis.method:
    pair_sources``; see ``st_eval/training/pair_sources``).

    kind: ``neighbour`` (the nearest other request's answer), ``degraded`` (a damaged copy of
        the answer), ``term_swap`` (the answer to a similar request, made by swapping the
        request's key term), ``weak_policy`` (the generator's hot, short answer) or
        ``assistant_style`` (the nearest request's answer, the winner or the loser dressed in an
        assistant's framing) or ``constraint`` (a constraint added to the request and the answer
        rewritten to meet it: the same two texts win on one request and lose on the other).
    share: the fraction of instructions that get a pair from this source, drawn at random
        (seeded per instruction and source), in (0, 1].
    degradations: ``degraded``: which damages to draw from (default all: truncated, repeated,
        echoed, off_topic_tail).
    count: ``degraded``: different damages per drawn instruction, one pair each (default 1).
    temperature, max_new_tokens: ``weak_policy``: how the generator writes the loser.
    constraints: ``constraint``: which constraints to draw from (default: one_sentence,
        word_limit, uppercase, lowercase; the format constraints numbered_list, json_object and
        repeat_request only when named).
    mirror: ``constraint``: also the pair on the plain request (for numbered_list: on the
        request stating the opposite), where the own answer wins.
    """

    kind: Literal["neighbour", "degraded", "term_swap", "weak_policy", "assistant_style", "constraint"]
    share: float = 1.0
    degradations: list[str] = field(default_factory=list)
    count: int = 1
    temperature: float = 1.2
    max_new_tokens: int = 48
    constraints: list[str] = field(default_factory=list)
    mirror: bool = True


@dataclass
class SynthesisConfig:
    """Stage 3: synthetic preference pairs, generated once and reused by every iteration.

    method: ``similar_instruction`` (the paper's: loser answers a related-but-different
        instruction the model writes), ``worse_response`` (the paper's weaker ablation: the
        model is asked directly for a worse answer), ``pair_sources`` (every instruction gets an
        answer, its own where the pool carries one, and ``sources`` make losers from it; see
        ``pair_sources/``) or ``retrieval_neighbour`` (``pair_sources`` with the ``neighbour``
        source alone: the loser is the answer of a neighbouring instruction of the pool, as
        LLMBar's Neighbor set was built; no model call where the pool carries answers).
    sources: ``pair_sources``: the sources and the share of instructions each one serves.
    balance_cues: subsample the training pairs so that neither the longer answer nor the one
        sharing more of the request's words wins more often than it loses
        (``pair_sources.cue_balanced``): a request's own answer out-overlaps most losers, and a
        judge trained on that picks the answer that repeats the request. Held-out pairs are kept
        as the sources made them.
    length_bins: ``balance_cues``: edges of ``|log(len(winner) / len(loser))|`` (e.g. ``[0.3, 0.7]``);
        the length cue is then balanced within each band of how much longer one answer is, not
        only in sign (default: in sign only).
    neighbours: ``neighbour`` source: losers per training instruction (its nearest ones).
    max_similarity: instructions at least this similar (TF-IDF cosine) are near-duplicates,
        never neighbours.
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

    method: Literal["similar_instruction", "worse_response", "retrieval_neighbour", "pair_sources"] = "similar_instruction"
    sources: list[PairSourceSpec] = field(default_factory=list)
    balance_cues: bool = False
    length_bins: list[float] = field(default_factory=list)
    neighbours: int = 2
    max_similarity: float = 0.9
    max_new_tokens: int = 256
    truncated: Literal["drop", "trim"] = "drop"
    instruction_max_new_tokens: int = 96
    answer_system: str | None = None
    temperature: float = 0.7
    top_p: float = 0.9
    heldout: int = 16

    @property
    def from_answers(self) -> bool:
        """Whether pairs are made from each instruction's answer by pair sources."""
        return self.method in ("retrieval_neighbour", "pair_sources")

    def pair_sources(self) -> list[PairSourceSpec]:
        """The sources this recipe mixes (``retrieval_neighbour``: the neighbour source alone)."""
        return list(self.sources) if self.method == "pair_sources" else [PairSourceSpec("neighbour")]


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
    dtype: the precision training computes in (weights of a LoRA base, or autocast of full
        fine-tuning; see ``sft.weights_dtype``) and the saved judge's: ``auto`` (bfloat16 on CUDA
        and on a CPU with AVX512-BF16 or AMX, float32 on other CPUs, which emulate bfloat16
        ~50x slower), ``float32`` or ``bfloat16``.
    bf16: true is ``dtype: bfloat16`` (the name recipes used before ``dtype``).
    gradient_checkpointing: trade compute for memory (large models).
    padding_free: on CPU, SFT and reward (rating-judge) training lay each batch's sequences end
        to end in one row (no padding) and attend within each sequence (st-eval's CPU
        attention); same loss, less work. GPUs keep the trainer's padded batches
        (padding-free there wants flash attention).
    launcher: ``inprocess`` (one device: the loop's own process on a CPU-only machine, a
        process of its own on a GPU machine) or ``accelerate`` (``accelerate launch`` with
        ``accelerate_config``: multi-GPU DDP, FSDP or DeepSpeed, multi-node with
        ``st-eval train-worker`` on the other nodes; see ``jobs.py``).
    accelerate_config: path of an accelerate config file (see training/accelerate/).
    checkpoint_minutes: save a checkpoint (adapter or weights, optimizer and trainer state) this
        often during training, the newest one kept; a rerun with ``--resume`` continues the stage
        from it instead of from its first step. 0: none (a killed stage starts over).
    """

    method: Literal["lora", "full"] = "lora"
    init: Literal["seed", "previous"] = "seed"
    epochs: float = 2.0
    learning_rate: float = 2e-4
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.0
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    bf16: bool = False
    gradient_checkpointing: bool = False
    padding_free: bool = True
    lora: LoraSettings = field(default_factory=LoraSettings)
    launcher: Literal["inprocess", "accelerate"] = "inprocess"
    accelerate_config: str | None = None
    checkpoint_minutes: float = 10.0

    def computes_in_bfloat16(self, device: str) -> bool:
        """Whether training on ``device`` (``cpu``, ``cuda``) computes in bfloat16: ``bf16: true``,
        ``dtype: bfloat16``, or ``dtype: auto`` where the device computes bfloat16 natively."""
        from st_eval.native_dtype import resolve_dtype

        return self.bf16 or resolve_dtype(self.dtype, device) == "bfloat16"


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
    use_vllm: generate with vLLM colocated in each training process, on its GPU (trl's own
        generation otherwise); its context is the longest prompt plus ``max_completion_length``.
    vllm_gpu_memory_utilization: ``use_vllm``: the share of each GPU the colocated vLLM takes
        (weights and KV cache); the trainer has the rest (``st-eval train --plan`` sizes both).
    vllm_sleep: ``use_vllm``: vLLM frees its weights and KV cache while the trainer computes
        (trl's ``vllm_enable_sleep_mode``), so a GPU holds vLLM's share or the trainer's
        activations, not both; the weights are copied back into vLLM before each generation.
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
    vllm_gpu_memory_utilization: float = 0.3
    vllm_sleep: bool = False


@dataclass
class BenchmarkSpec:
    """A labelled benchmark scored after every iteration.

    name: how it appears in reports and cards.
    path: a pair file (st-eval's JSONL/JSON/parquet), an LLMBar-style JSON list
        (``input, output_1, output_2, label``) or folder of the five sets, or a PandaLM test-set
        file or folder (its pairs whose gold is not a tie); relative paths are looked up beside
        the recipe, then in the shared data folder ($ST_EVAL_SHARED_DATA or ../shared/data).
    limit: score the first ``limit`` pairs (0 = all; per set for an LLMBar folder).
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
    chunk_size: prompts handed to the engine per call, which is also a resumable chunk of a
        generation stage (0: ``engine_options.batch_size`` or 16 for ``hf`` and ``openai``,
        1024 for ``vllm``, whose throughput comes from large batches).
    template: judge prompt template used at annotation, training and evaluation alike.
    verdict_step: finish judgments that end without a verdict by continuing them from
        "Final verdict: [[" (the core's verdict step), at annotation and evaluation alike. It
        bootstraps seed judges too small to conclude on their own; reports show the forced rate.
    iterations: self-training iterations.
    cache: keep every generation in st-eval's generation cache ($ST_EVAL_HOME/cache), so a new
        run of the same recipe and models (or a judge command on the same prompts) regenerates
        nothing it already has; off for timing runs.
    seed: random seed for sampling, shuffling and balancing.
    cluster: run every generation stage on a Ray cluster (``{kind: ray, address, replicas,
        gpus_per_replica, cpus_per_replica, block_size}``; see ``st_eval/cluster.py``); the run
        folder must be on a file system every node mounts (checked before the run starts).
        Absent: stages run in this process. Not compared on ``--resume``: a run may go on with
        another cluster (greedy outputs are the same).
    """

    name: str
    seed_model: str = "smollm2-135m"
    generator_model: str | None = None
    engine: str = "hf"
    engine_options: dict[str, Any] = field(default_factory=dict)
    chunk_size: int = 0
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
    cluster: ClusterConfig | None = None
    #: folder of the recipe file, for resolving relative paths (not a YAML field)
    base_dir: str = "."

    @property
    def generator(self) -> str:
        return self.generator_model or self.seed_model

    @property
    def prompts_per_call(self) -> int:
        """Prompts per engine call and resumable chunk: ``chunk_size``, else the cluster's job
        size (a job loads the weights on every replica, so it gets a wave of work:
        ``ClusterConfig.prompts_per_job``), else the engine's default (``vllm``:
        :data:`VLLM_CHUNK`; others: ``engine_options.batch_size`` or 16). Not ``batch_size``
        for vLLM: ``vllm.LLM`` has no such option and refuses it."""
        if self.chunk_size:
            return self.chunk_size
        if self.cluster is not None:
            return self.cluster.prompts_per_job
        if self.engine == "vllm":
            return VLLM_CHUNK
        return int(self.engine_options.get("batch_size", 16))

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
        data = load_yaml(text)
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
    if recipe.chunk_size < 0:
        fail("chunk_size", f"must be >= 0, got {recipe.chunk_size}")
    if recipe.cluster is not None:
        for name, problem in recipe.cluster.problems():
            fail(f"cluster.{name}", problem)
        check_engine(recipe.engine, f"{where}: field 'cluster'")
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
    if recipe.train.checkpoint_minutes < 0:
        fail("train.checkpoint_minutes", f"must be >= 0 (0: no checkpoints), got {recipe.train.checkpoint_minutes}")
    if recipe.train.bf16 and recipe.train.dtype == "float32":
        fail("train.bf16", "is true but train.dtype is 'float32': set one of them (train.dtype: bfloat16 is bf16: true)")
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
    if template.reads_probabilities:
        if recipe.verdict_step:
            fail("verdict_step", f"does not apply to the {template.kind} template {template.name!r}")
        if recipe.evaluation.samples != 1:
            fail("evaluation.samples", f"must be 1 for the {template.kind} template {template.name!r} (it reads probabilities)")
        if recipe.dpo.enabled:
            fail("dpo.enabled", f"does not apply to a {template.kind} template (its training is already a preference objective)")
        if recipe.grpo.enabled:
            fail("grpo.enabled", "needs a template whose judge writes its verdict (a pairwise template)")
    if recipe.grpo.enabled:
        for name, value in (("grpo.num_generations", recipe.grpo.num_generations), ("grpo.steps", recipe.grpo.steps),
                            ("grpo.max_completion_length", recipe.grpo.max_completion_length), ("grpo.pairs_per_step", recipe.grpo.pairs_per_step)):
            if value < 1:
                fail(name, f"must be >= 1, got {value}")
        if recipe.grpo.num_generations < 2:
            fail("grpo.num_generations", "must be >= 2 (GRPO compares judgments within a group)")
        if not 0 < recipe.grpo.vllm_gpu_memory_utilization < 1:
            fail("grpo.vllm_gpu_memory_utilization", f"must be in (0, 1), got {recipe.grpo.vllm_gpu_memory_utilization}")
        unknown = sorted(set(recipe.grpo.reward_weights) - {"correct", "consistent", "format"})
        if unknown:
            fail("grpo.reward_weights", f"unknown reward(s) {', '.join(unknown)}: use correct, consistent, format")
    synthesis = recipe.synthesis
    if synthesis.balance_cues and not synthesis.from_answers:
        fail("synthesis.balance_cues", "applies to synthesis.method pair_sources or retrieval_neighbour")
    if synthesis.length_bins and not synthesis.balance_cues:
        fail("synthesis.length_bins", "applies with synthesis.balance_cues: true")
    if any(edge <= 0 for edge in synthesis.length_bins) or list(synthesis.length_bins) != sorted(set(synthesis.length_bins)):
        fail("synthesis.length_bins", f"must be increasing positive numbers, got {synthesis.length_bins}")
    if synthesis.sources and synthesis.method != "pair_sources":
        fail("synthesis.sources", f"applies to synthesis.method pair_sources, not {synthesis.method!r}")
    if synthesis.method == "pair_sources" and not synthesis.sources:
        fail("synthesis.sources", "must name at least one source for synthesis.method pair_sources")
    kinds = [spec.kind for spec in synthesis.sources]
    if len(set(kinds)) != len(kinds):
        fail("synthesis.sources", "names a source twice")
    from st_eval.training.pair_sources.constraint import CONSTRAINTS
    from st_eval.training.pair_sources.degraded import DEGRADATIONS

    for i, spec in enumerate(synthesis.sources):
        if not 0 < spec.share <= 1:
            fail(f"synthesis.sources[{i}].share", f"must be in (0, 1], got {spec.share}")
        for field_name, names, known in (("degradations", spec.degradations, DEGRADATIONS), ("constraints", spec.constraints, CONSTRAINTS)):
            for j, name in enumerate(names):
                if name not in known:
                    fail(f"synthesis.sources[{i}].{field_name}[{j}]", f"must be one of {', '.join(known)}, got {name!r}")
        if spec.max_new_tokens < 1:
            fail(f"synthesis.sources[{i}].max_new_tokens", f"must be >= 1, got {spec.max_new_tokens}")
        if not 1 <= spec.count <= len(DEGRADATIONS):
            fail(f"synthesis.sources[{i}].count", f"must be in 1..{len(DEGRADATIONS)}, got {spec.count}")
    if recipe.annotation.hard_negatives and not (template.reads_probabilities and synthesis.from_answers):
        fail("annotation.hard_negatives", "needs a rating or choice template and synthesis.method pair_sources or retrieval_neighbour")
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
