"""Command-line options shared by every st-eval command that runs a judge.

Commands declare these typed options once, so ``judge``, ``bench``, ``gate`` and ``train``
spell ``--engine``, ``--model``, ``--samples`` and friends the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from st_eval.engines import ENGINES, Engine, SamplingConfig, make_engine
from st_eval.errors import InputError
from st_eval.judge import Judge, JudgeConfig, SAMPLING_FOR_VOTES

EngineOpt = Annotated[str, typer.Option("--engine", "-e", help=f"Generation engine: {', '.join(ENGINES)}.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Judge model: Hugging Face id, local folder, or embedded name. Default: the embedded SmolLM2-135M judge."),
]
SamplesOpt = Annotated[int, typer.Option("--samples", "-n", min=1, help="Judgments sampled per pair and order; majority vote.")]
OrderOpt = Annotated[str, typer.Option("--order", help="Presentation order: given, swapped or both.")]
TemplateOpt = Annotated[str, typer.Option("--template", help="Built-in template name or path of a template YAML file.")]
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

ShardOpt = Annotated[
    str | None, typer.Option("--shard", help="Do only part i of n (0-based, e.g. 0/4), for running one job on several machines.")
]


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
) -> Engine:
    """Create the engine a command asked for, passing only the options that engine takes.

    With ``cache`` (the default) the engine is wrapped in the generation cache, so a rerun of
    any command reuses every output it already generated.
    """
    options = parse_engine_args(engine_args)
    if engine == "hf" and batch_size is not None:
        options.setdefault("batch_size", batch_size)
    if engine == "hf":
        options.setdefault("progress", False)
    if engine == "openai" and base_url:
        options["base_url"] = base_url
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
    engine: Engine, *, template: str, samples: int, order: str, allow_tie: bool, sampling: SamplingConfig,
    verdict_step: bool = False,
) -> Judge:
    config = JudgeConfig(
        template=template, samples=samples, order=order, allow_tie=allow_tie, sampling=sampling,  # type: ignore[arg-type]
        verdict_step=verdict_step,
    )
    return Judge(engine, config)
