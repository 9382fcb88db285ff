"""Plugins that let evaluation harnesses (lm-evaluation-harness, Inspect) run st-eval judges."""
