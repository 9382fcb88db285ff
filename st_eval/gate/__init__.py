"""CI model gating: judge a candidate model's outputs against a baseline's and decide pass/fail."""
