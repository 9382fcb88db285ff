"""Checks before a run: recipe combinations known to fail on GPUs, and the libraries they need.

A GPU run spends hours generating before its first training stage, so whatever would stop it
there is refused at start, in one line naming the recipe field. ``st-eval train`` runs
:func:`refuse_known_failures` first; ``st-eval train --plan`` shows the same recipe problems
beside those that depend on the cluster (memory per GPU, GPU counts: ``plan.py``).
"""

from __future__ import annotations

from st_eval.errors import InputError
from st_eval.training.config import Recipe
from st_eval.training.launch_config import LaunchConfig, read_launch_config
from st_eval.training.versions import SUPPORTED, installed, trl_vllm_range, within

#: (recipe field, what is wrong), read as "field 'x' <problem>"
Problem = tuple[str, str]


def launch_config(recipe: Recipe) -> LaunchConfig | None:
    """The recipe's accelerate config, when training goes through ``accelerate launch``."""
    if recipe.train.launcher != "accelerate" or not recipe.train.accelerate_config:
        return None
    return read_launch_config(recipe.train.accelerate_config)


def recipe_problems(recipe: Recipe) -> list[Problem]:
    """Combinations that fail whatever the cluster (the plan adds those that depend on it)."""
    problems: list[Problem] = []
    if recipe.engine == "openai":
        problems.append(("engine", (
            "is 'openai': a server serves a fixed model, and the loop must load each iteration's new judge "
            "(a server pool can judge with a finished judge: st-eval judge/bench); use vllm or hf"
        )))
    if recipe.engine == "vllm" and "batch_size" in recipe.engine_options:
        problems.append(("engine_options.batch_size", (
            "is not a vllm.LLM option (vLLM refuses it); the prompts per engine call are chunk_size"
        )))
    launch = launch_config(recipe)
    if launch and launch.distributed_type == "DEEPSPEED" and launch.machines > 1 and launch.multinode_launcher != "standard":
        problems.append(("train.accelerate_config", (
            f"({launch.path.name}) runs DeepSpeed on {launch.machines} machines without deepspeed_multinode_launcher: standard; "
            "accelerate then fans out over ssh from a host file (pdsh) instead of one launch per machine"
        )))
    if recipe.grpo.enabled:
        processes = launch.processes if launch else 1
        if recipe.grpo.pairs_per_step % processes:
            problems.append(("grpo.pairs_per_step", (
                f"({recipe.grpo.pairs_per_step}) must be a multiple of the training processes ({processes}): "
                "each process scores whole pairs, both orders together"
            )))
    return problems


def environment_problems(recipe: Recipe) -> list[Problem]:
    """Libraries the recipe's stages need that are missing here, or installed outside the
    versions that work (vLLM: for GRPO, the range the installed trl declares)."""
    problems: list[Problem] = []
    needs_vllm = []
    if recipe.engine == "vllm":
        needs_vllm.append(("engine", SUPPORTED["vllm"], "st-eval's vllm engine"))
    if recipe.grpo.enabled and recipe.grpo.use_vllm:
        needs_vllm.append(("grpo.use_vllm", trl_vllm_range() or SUPPORTED["vllm"], f"trl {installed('trl')}"))
    version = installed("vllm")
    for name, spec, user in needs_vllm:
        if version is None:
            problems.append((name, "needs vLLM, which is not installed: pip install 'st-eval[vllm]'"))
        elif not within(version, spec):
            problems.append((name, f"needs vLLM {spec} ({user}); vllm {version} is installed: pip install 'st-eval[vllm]'"))
    if recipe.cluster is not None:
        version = installed("ray")
        if version is None:
            problems.append(("cluster", "needs Ray, which is not installed: pip install 'st-eval[ray]'"))
        elif not within(version, SUPPORTED["ray"]):
            problems.append(("cluster", f"needs ray {SUPPORTED['ray']}; {version} is installed: pip install 'st-eval[ray]'"))
    launch = launch_config(recipe)
    if launch and launch.distributed_type == "DEEPSPEED":
        version = installed("deepspeed")
        if version is None:
            problems.append(("train.accelerate_config", (
                f"({launch.path.name}) trains with DeepSpeed, which is not installed: pip install 'st-eval[deepspeed]'"
            )))
        elif not within(version, SUPPORTED["deepspeed"]):
            problems.append(("train.accelerate_config", f"needs deepspeed {SUPPORTED['deepspeed']}; {version} is installed"))
    return problems


def refuse_known_failures(recipe: Recipe, where: str | None = None) -> None:
    """Raise InputError, naming the recipe field, for the first problem of :func:`recipe_problems`
    or :func:`environment_problems`."""
    for field, problem in recipe_problems(recipe) + environment_problems(recipe):
        raise InputError(f"{where or f'recipe {recipe.name!r}'}: field {field!r} {problem}")


__all__ = ["Problem", "environment_problems", "launch_config", "recipe_problems", "refuse_known_failures"]
