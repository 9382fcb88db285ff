"""Self-taught judge training (Wang et al. 2024): every stage is a function; ``loop.run`` chains them.

Stages: ``instruction_pool.build_pool`` -> ``selection.select_instructions`` ->
``similar_instruction.synthesize_pairs`` -> per iteration ``annotation.annotate`` /
``annotation.select_examples`` -> ``sft.run_job`` (and ``dpo.train_dpo``) ->
``evaluation.evaluate`` -> ``report.write_report`` and ``judge_card.write_card``.
"""
