"""inspect-ai entry point: importing this module registers st-eval's extensions.

Declared in pyproject.toml as ``[project.entry-points.inspect_ai] st_eval = ...``; inspect-ai
imports it when a name starting with ``st_eval/`` (or the ``st_judge`` provider) is looked up.
Only inspect-ai itself is imported here; torch and the models load when a provider is created.
"""

from st_eval.inspect_plugin.provider import StJudgeAPI
from st_eval.inspect_plugin.rewardbench2 import rating_judge, rewardbench2
from st_eval.inspect_plugin.scorer import pairwise_judge
from st_eval.inspect_plugin.tasks import judge_pair, mtbench_agreement, mtbench_verdict, rewardbench, rewardbench_verdict

__all__ = [
    "StJudgeAPI",
    "judge_pair",
    "mtbench_agreement",
    "mtbench_verdict",
    "pairwise_judge",
    "rating_judge",
    "rewardbench",
    "rewardbench2",
    "rewardbench_verdict",
]
