"""The bounds the throughput benchmark prints beside its measurements (benchmarks/limits.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

_SPEC = importlib.util.spec_from_file_location("bench_limits", Path(__file__).resolve().parent.parent / "benchmarks" / "limits.py")
limits = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_limits"] = limits  # dataclasses look their module up
_SPEC.loader.exec_module(limits)


def _llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_model_shape_counts_a_tied_matrix_once(tied):
    model = _llama(tied)
    shape = limits.model_shape(model)
    layer = 32 * 32 * 2 + 32 * 16 * 2 + 3 * 32 * 64 + 2 * 32  # q,o + k,v + MLP + two norms
    assert shape.body_params == 2 * layer + 32  # + final norm
    assert shape.head_params == 100 * 32
    matrices = 1 if tied else 2
    assert shape.weight_bytes == 4 * (shape.body_params + matrices * 100 * 32)
    assert (shape.layers, shape.heads, shape.kv_heads, shape.head_dim) == (2, 4, 2, 8)
    assert shape.kv_bytes_per_token() == 2 * 2 * 2 * 8 * 4


@pytest.mark.parametrize("tied", [True, False])
def test_a_saved_models_shape_is_read_without_its_weights(tied, tmp_path, monkeypatch):
    """The benchmarks size the judge from a skeleton on the meta device, holding no weights."""
    from transformers import AutoModelForCausalLM

    model = _llama(tied)
    model.save_pretrained(tmp_path)
    built = []
    real_from_config = AutoModelForCausalLM.from_config
    monkeypatch.setattr(AutoModelForCausalLM, "from_config", lambda *a, **k: built.append(real_from_config(*a, **k)) or built[-1])
    assert limits.model_shape_of(str(tmp_path)) == limits.model_shape(model)
    assert next(built[0].parameters()).is_meta


def test_decode_bound_is_bandwidth_over_bytes_per_step():
    shape = limits.ModelShape(
        weight_bytes=1_000_000, body_params=200_000, head_params=50_000, layers=2, heads=4, kv_heads=2, head_dim=8, hidden=32, intermediate=64
    )
    machine = limits.MachineLimits(bandwidth_gb_s=10.0, gflops=1000.0, threads=1)
    bounds = limits.run_bounds(shape, machine, [100, 300], shared_prefix=0, generated=[50, 50], batch=8)
    context = 200 + 25  # mean prompt + half the mean generated length
    step_bytes = 1_000_000 + 2 * context * shape.kv_bytes_per_token()
    assert bounds["decode_bound_tok_s"] == pytest.approx(2 * 10e9 / step_bytes, rel=1e-3)
    assert bounds["bytes_per_decode_step_mb"] == pytest.approx(step_bytes / 1e6, abs=0.05)
    assert bounds["decode_step_limit"] == "bandwidth"  # 1 TFLOP/s: arithmetic is cheap here
    # half-width keys and values: fewer bytes per step, a higher bound
    narrow = limits.run_bounds(shape, machine, [100, 300], shared_prefix=0, generated=[50, 50], batch=8, kv_element_bytes=2)
    assert narrow["decode_bound_tok_s"] > bounds["decode_bound_tok_s"]


def test_run_bound_counts_prefill_and_the_shared_prefix_once():
    shape = limits.ModelShape(
        weight_bytes=1_000, body_params=1_000_000, head_params=100_000, layers=2, heads=4, kv_heads=2, head_dim=8, hidden=32, intermediate=64
    )
    slow = limits.MachineLimits(bandwidth_gb_s=1000.0, gflops=1.0, threads=1)
    alone = limits.run_bounds(shape, slow, [400, 400], shared_prefix=0, generated=[10, 10], batch=2)
    shared = limits.run_bounds(shape, slow, [400, 400], shared_prefix=300, generated=[10, 10], batch=2)
    assert alone["decode_step_limit"] == "arithmetic"
    assert shared["prefill_bound_s"] < alone["prefill_bound_s"]
    assert shared["run_bound_tok_s"] > alone["run_bound_tok_s"]
    attention = 4 * 2 * 4 * 8 * 400 * 400 / 2 * 2
    assert alone["prefill_bound_s"] == pytest.approx((2 * 1_000_000 * 800 + attention) / 1e9, abs=0.05)


def test_machine_is_measured_with_the_threads_asked():
    before = torch.get_num_threads()
    machine = limits.measure_machine(threads=1, repeats=2)
    assert machine.threads == 1 and machine.bandwidth_gb_s > 0 and machine.gflops > 0
    assert torch.get_num_threads() == before


def test_training_bound_counts_body_twice_more_when_weights_learn_and_the_head_on_the_loss_only():
    shape = limits.model_shape(_llama(True))
    machine = limits.MachineLimits(bandwidth_gb_s=10.0, gflops=1.0, threads=1)
    attention = 4 * 2 * 4 * 8  # per key: layers x heads x head_dim x (q.k + p.v, 2 FLOPs each)
    lora = limits.training_bound_s(shape, machine, [10, 20], [3, 5])
    expected = 4 * shape.body_params * 30 + 3 * attention * (100 + 400) / 2 + 4 * shape.head_params * 8
    assert lora == pytest.approx(expected / 1e9)
    full = limits.training_bound_s(shape, machine, [10, 20], [3, 5], frozen_body=False)
    assert full - lora == pytest.approx(2 * shape.body_params * 30 / 1e9)
