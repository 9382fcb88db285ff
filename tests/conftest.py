"""Shared fixtures: the embedded judge (real weights) and the real data beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """``$ST_EVAL_SHARED_DATA`` or ``../shared/data`` beside the repo, if present."""
    candidate = Path(os.environ.get("ST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("real data not found: set ST_EVAL_SHARED_DATA or place shared/data beside the repo")
    return found


@pytest.fixture(scope="session")
def embedded_model() -> str:
    """Local folder of the embedded SmolLM2 judge (converted once per cache)."""
    from st_eval.embedded import embedded_model_path

    return str(embedded_model_path())


@pytest.fixture(scope="session")
def hf_engine(embedded_model):
    """One loaded hf engine on the embedded judge, shared by the session's tests; float32 on every
    CPU (``auto`` is bfloat16 where the CPU has AVX512-BF16 or AMX), so the tests' comparisons
    with plain float32 passes hold on all of them."""
    from st_eval.engines import make_engine

    return make_engine("hf", embedded_model, batch_size=8, dtype="float32")
