"""st-eval's lm-evaluation-harness task YAMLs (this folder is what ``--include_path`` takes)."""
