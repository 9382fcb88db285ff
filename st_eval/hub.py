"""Benchmark data from the Hugging Face hub, with an error that says what to do offline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from st_eval.errors import InputError

#: how the command running now takes local data files: st-eval's own option by default; the
#: lm-eval and Inspect tasks name theirs (lm_eval has no --data-files), so the hint never
#: suggests a flag the running tool does not have
_DATA_FILES_OPTION: ContextVar[str] = ContextVar("st_eval_data_files_option", default="--data-files")


@contextmanager
def offline_option(option: str) -> Iterator[None]:
    """Within this block, the offline hint names ``option`` as the way to pass local files."""
    token = _DATA_FILES_OPTION.set(option)
    try:
        yield
    finally:
        _DATA_FILES_OPTION.reset(token)


def load_hub_split(dataset: str, split: str) -> Any:
    """``datasets.load_dataset(dataset, split=split)``; a failure names the dataset and the way
    to run without the hub (the running tool's data-files option), instead of a raw network
    traceback."""
    from datasets import load_dataset

    try:
        return load_dataset(dataset, split=split)
    except Exception as exc:  # datasets raises many types for unreachable or missing datasets
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(
            f"cannot load {dataset} (split {split!r}) from the Hugging Face hub: {reason}. "
            f"Without the hub, pass local files in its schema with {_DATA_FILES_OPTION.get()}."
        ) from exc
