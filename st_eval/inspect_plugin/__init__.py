"""st-eval as an inspect-ai extension: judge tasks, a pairwise judge scorer and a model provider.

inspect-ai finds these through the ``inspect_ai`` entry point (``st_eval.inspect_plugin.registry``),
so after ``pip install st-eval`` they are available as ``st_eval/rewardbench``,
``st_eval/mtbench_agreement``, ``st_eval/pairwise_judge`` and the model provider ``st_judge/<model>``.
"""
