"""Command-line options shared by every st-eval command that runs a judge.

Commands take the engine and decoding options through ``@with_judge_options`` (one place that
declares them), so ``judge``, ``bench`` and ``gate`` spell ``--engine``, ``--samples`` and
friends the same way and build their judge the same way.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from st_eval.cluster import ClusterConfig, check_engine, cluster_from_flags
from st_eval.engines import ENGINES, Engine, SamplingConfig, make_engine
from st_eval.errors import InputError
from st_eval.judge import Judge, JudgeConfig, SAMPLING_FOR_VOTES

EngineOpt = Annotated[str, typer.Option("--engine", "-e", help=f"Generation engine: {', '.join(ENGINES)}.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Judge model: Hugging Face id, local folder, or embedded name. Default: the embedded SmolLM2-135M judge."),
]
SamplesOpt = Annotated[int, typer.Option("--samples", "-n", min=1, help="Judgments sampled per pair and order; majority vote.")]
OrderOpt = Annotated[str, typer.Option("--order", help="Presentation order: given, swapped or both (also spelled both-orders).")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Start --output over instead of resuming it (a file another run wrote is refused otherwise).")
]
TemplateOpt = Annotated[
    str | None,
    typer.Option("--template", help="Built-in template name or path of a template YAML file. Default: the judge's own (its judge card's or an embedded judge's), else pairwise-v1."),
]
AllowTieOpt = Annotated[bool, typer.Option("--allow-tie/--no-tie", help="Let the judge answer [[C]] for a tie.")]
VerdictStepOpt = Annotated[
    bool,
    typer.Option(
        "--verdict-step/--no-verdict-step",
        help="Finish a judgment that ends without a verdict from 'Final verdict: [[' (the judge writes the letter); counted as forced.",
    ),
]
TemperatureOpt = Annotated[
    float | None, typer.Option("--temperature", min=0.0, help="Sampling temperature (default 0 for one sample, 0.7 for several).")
]
TopPOpt = Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling mass (default 1.0, or 0.9 for several samples).")]
MaxTokensOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Generation budget per judgment.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for sampling.")]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Prompts decoded together (hf engine; default 32 on CPU, 8 on GPU).")
]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible server URL (openai engine); default $OPENAI_BASE_URL.")
]
EngineArgOpt = Annotated[
    list[str] | None, typer.Option("--engine-arg", help="Extra engine option KEY=VALUE (repeatable), e.g. tensor_parallel_size=2.")
]
CacheOpt = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Reuse and store raw judge outputs in the generation cache.")
]
CachePathOpt = Annotated[
    Path | None, typer.Option("--cache-path", help="Generation cache file (default $ST_EVAL_HOME/cache/generations.sqlite).")
]

TooLongOpt = Annotated[
    str,
    typer.Option("--too-long", help="A pair beyond the judge's context window: shorten (answers cut from the middle, marked, counted) or skip (invalid)."),
]

ShardOpt = Annotated[
    str | None, typer.Option("--shard", help="Do only part i of n (0-based, e.g. 0/4), for running one job on several machines.")
]
ClusterOpt = Annotated[
    str | None,
    typer.Option("--cluster", help="Generate on a Ray cluster: auto, local, ray://HOST:10001 or HOST:PORT (needs st-eval\\[ray]; docs/scale.md)."),
]
ReplicasOpt = Annotated[int | None, typer.Option("--replicas", help="--cluster: engine replicas (Ray actors), each holding the judge. Default 1.")]
GpusPerReplicaOpt = Annotated[float | None, typer.Option("--gpus-per-replica", help="--cluster: GPUs each replica holds (0: a CPU cluster). Default 0.")]


#: one vocabulary for "judge every pair in both orders": ``--order both`` (judge, gate, the
#: harness model) and ``--mode both-orders`` (bench) each accept the other's spelling
ORDER_ALIASES = {"both-orders": "both"}
MODE_ALIASES = {"both": "both-orders"}


def check_order(order: str) -> str:
    """``--order`` in its canonical spelling; a bad value fails before any model loads."""
    from st_eval.judge import ORDER_MODES

    order = ORDER_ALIASES.get(order, order)
    if order not in ORDER_MODES:
        raise InputError(f"--order must be one of {', '.join(ORDER_MODES)} (both-orders is both), got {order!r}")
    return order


def check_mode(mode: str, modes: tuple[str, ...]) -> str:
    """``--mode`` in its canonical spelling (``both`` is ``both-orders``); a bad value fails
    before any data or model loads."""
    mode = MODE_ALIASES.get(mode, mode) if mode not in modes else mode
    if mode not in modes:
        raise InputError(f"--mode must be one of {', '.join(modes)}, got {mode!r}")
    return mode


def parse_engine_args(pairs: list[str] | None) -> dict[str, Any]:
    """Turn ``KEY=VALUE`` strings into typed keyword arguments (ints, floats, booleans kept)."""
    options: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--engine-arg {item!r}: expected KEY=VALUE")
        options[key.strip().replace("-", "_")] = _typed(value.strip())
    return options


def _typed(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def build_engine(
    engine: str,
    model: str | None,
    *,
    batch_size: int | None = None,
    base_url: str | None = None,
    engine_args: list[str] | None = None,
    cache: bool = True,
    cache_path: Path | None = None,
    cluster: ClusterConfig | None = None,
) -> Engine:
    """Create the engine a command asked for, passing only the options that engine takes.

    With ``cache`` (the default) the engine is wrapped in the generation cache, so a rerun of
    any command reuses every output it already generated. With ``cluster`` it runs as replicas
    on that Ray cluster (``engines/ray_data.py``), behind the same protocol.
    """
    options = parse_engine_args(engine_args)
    if engine == "hf":
        options.setdefault("progress", False)
        if batch_size is not None:
            options.setdefault("batch_size", batch_size)
    if engine == "openai" and base_url:
        options["base_url"] = base_url
    if cluster is not None:
        from st_eval.engines.ray_data import EngineSpec, RayEngine

        built: Engine = RayEngine(EngineSpec(engine, model, options), cluster)
    else:
        built = make_engine(engine, model, **options)
    if not cache:
        return built
    from st_eval.cache import CachedEngine, GenerationCache

    return CachedEngine(built, GenerationCache(cache_path))


def build_sampling(
    samples: int, temperature: float | None, top_p: float | None, max_new_tokens: int, seed: int
) -> SamplingConfig:
    """Decoding settings: greedy for one sample, the paper's 0.7/0.9 for votes, unless overridden."""
    base = SamplingConfig() if samples == 1 and not temperature else SAMPLING_FOR_VOTES
    return SamplingConfig(
        temperature=base.temperature if temperature is None else temperature,
        top_p=base.top_p if top_p is None else top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )


def build_judge(
    engine: Engine, *, template: str | None, samples: int, order: str, allow_tie: bool, sampling: SamplingConfig,
    verdict_step: bool = False, too_long: str = "shorten",
) -> Judge:
    config = JudgeConfig(
        template=template, samples=samples, order=order, allow_tie=allow_tie, sampling=sampling,  # type: ignore[arg-type]
        verdict_step=verdict_step, too_long=too_long,
    )
    return Judge(engine, config)


@dataclass
class JudgeOptions:
    """The engine and decoding options a judge command was given (see ``with_judge_options``)."""

    engine: str
    samples: int
    template: str | None
    allow_tie: bool
    verdict_step: bool
    temperature: float | None
    top_p: float | None
    max_new_tokens: int
    seed: int
    batch_size: int | None
    base_url: str | None
    engine_arg: list[str] | None
    too_long: str
    cluster: str | None
    replicas: int | None
    gpus_per_replica: float | None

    def sampling(self) -> SamplingConfig:
        return build_sampling(self.samples, self.temperature, self.top_p, self.max_new_tokens, self.seed)

    def build_engine(self, model: str | None, *, cache: bool = True, cache_path: Path | None = None) -> Engine:
        return build_engine(
            self.engine, model, batch_size=self.batch_size, base_url=self.base_url, engine_args=self.engine_arg,
            cache=cache, cache_path=cache_path, cluster=self.cluster_config(),
        )

    def cluster_config(self) -> ClusterConfig | None:
        """The Ray cluster ``--cluster/--replicas/--gpus-per-replica`` name; None: this process."""
        return cluster_from_flags(self.cluster, self.replicas, self.gpus_per_replica)

    def check(self, model: str | None) -> None:
        """Reject bad flags before any weights load: the engine, a misspelt judge name, the
        template (named or the judge's own), the too-long policy, the engine options' form and
        the cluster flags."""
        from st_eval.context_fit import check_policy
        from st_eval.embedded import check_model_name
        from st_eval.errors import EngineError
        from st_eval.prompt import load_template

        if self.engine not in ENGINES:
            raise EngineError(f"unknown engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if model is not None and self.engine != "openai":  # a server's model name is whatever it serves
            check_model_name(model)
        if self.template or self.engine != "openai":  # a server's judge is known once it answers
            load_template(self.template_for(model))
        check_policy(self.too_long)
        parse_engine_args(self.engine_arg)
        if self.cluster_config() is not None:
            check_engine(self.engine, "--cluster")

    def template_for(self, model: str | None) -> str:
        """``--template``, else the template the judge was trained with (its card's)."""
        from st_eval.prompt import judge_template

        return self.template or judge_template(model)

    def build_judge(self, model: str | None, *, order: str, cache: bool = True, cache_path: Path | None = None) -> Judge:
        """The judge these options describe; without ``--template``, the judge's own template
        for the model the engine really runs (a server's, when no ``--model`` names it)."""
        return build_judge(
            self.build_engine(model, cache=cache, cache_path=cache_path), template=self.template, samples=self.samples,
            order=order, allow_tie=self.allow_tie, sampling=self.sampling(), verdict_step=self.verdict_step, too_long=self.too_long,
        )


def with_judge_options(*, allow_tie: bool = False, allow_tie_help: str | None = None):
    """Add the shared engine and decoding options to a typer command.

    The command declares its own options plus a ``judging: JudgeOptions`` parameter; the CLI
    shows the shared options after the command's own, and the command receives them in one
    object. ``allow_tie`` / ``allow_tie_help`` set that option's default and help per command.
    """
    tie_option = AllowTieOpt if allow_tie_help is None else Annotated[bool, typer.Option("--allow-tie/--no-tie", help=allow_tie_help)]
    shared = {
        "engine": (EngineOpt, "hf"), "samples": (SamplesOpt, 1), "template": (TemplateOpt, None),
        "allow_tie": (tie_option, allow_tie), "verdict_step": (VerdictStepOpt, False),
        "temperature": (TemperatureOpt, None), "top_p": (TopPOpt, None), "max_new_tokens": (MaxTokensOpt, 512),
        "seed": (SeedOpt, 0), "batch_size": (BatchSizeOpt, None), "base_url": (BaseUrlOpt, None),
        "engine_arg": (EngineArgOpt, None), "too_long": (TooLongOpt, "shorten"),
        "cluster": (ClusterOpt, None), "replicas": (ReplicasOpt, None), "gpus_per_replica": (GpusPerReplicaOpt, None),
    }
    assert list(shared) == [f.name for f in fields(JudgeOptions)]

    def decorate(command):
        hints = typing.get_type_hints(command, include_extras=True)  # the command's own, evaluated
        own = [
            p.replace(annotation=hints.get(name, p.annotation))
            for name, p in inspect.signature(command).parameters.items()
            if name != "judging"
        ]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for name, (annotation, default) in shared.items()
        ]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            judging = JudgeOptions(**{name: kwargs.pop(name) for name in shared})
            return command(**kwargs, judging=judging)

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        # typer reads the signature and the evaluated annotations: give it these, not the command's
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__
        return wrapper

    return decorate
