"""Benchmark data from the Hugging Face hub, with an error that says what to do offline."""

from __future__ import annotations

from typing import Any

from st_eval.errors import InputError


def load_hub_split(dataset: str, split: str, *, offline_hint: str) -> Any:
    """``datasets.load_dataset(dataset, split=split)``; a failure names the dataset and the way
    to run without the hub (``offline_hint``), instead of a raw network traceback."""
    from datasets import load_dataset

    try:
        return load_dataset(dataset, split=split)
    except Exception as exc:  # datasets raises many types for unreachable or missing datasets
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(
            f"cannot load {dataset} (split {split!r}) from the Hugging Face hub: {reason}. "
            f"Without the hub, {offline_hint}"
        ) from exc
