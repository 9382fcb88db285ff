"""Closing an hf engine lets its weights go (training frees them before fine-tuning)."""

from __future__ import annotations

import gc
import weakref

import pytest

from st_eval.engines import make_engine


@pytest.mark.slow
def test_closed_engine_weights_are_freed_once_the_engine_is_dropped(embedded_model):
    engine = make_engine("hf", embedded_model, dtype="bfloat16")  # its own cache entry, not the shared fixture's
    weights = weakref.ref(engine._model)
    assert make_engine("hf", embedded_model, dtype="bfloat16")._model is weights()  # open engines share weights
    engine.close()
    del engine
    gc.collect()
    assert weights() is None
