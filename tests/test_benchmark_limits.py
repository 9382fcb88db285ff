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


def test_a_bfloat16_rows_bounds_take_half_the_bytes_and_the_bfloat16_rate():
    shape = limits.ModelShape(
        weight_bytes=1_000_000, body_params=1_000_000, head_params=0, layers=2, heads=4, kv_heads=2, head_dim=8, hidden=32, intermediate=64
    )
    machine = limits.MachineLimits(bandwidth_gb_s=10.0, gflops=10.0, threads=1, bf16_gflops=1.0)
    full = limits.run_bounds(shape, machine, [1000, 3000], shared_prefix=0, generated=[50, 50], batch=8)
    half = limits.run_bounds(shape, machine, [1000, 3000], shared_prefix=0, generated=[50, 50], batch=8, dtype="bfloat16")
    assert half["bytes_per_decode_step_mb"] == pytest.approx(full["bytes_per_decode_step_mb"] / 2, abs=0.05)
    prefill_flops = 2 * 1_000_000 * 4000 + 4 * 2 * 4 * 8 * (1000**2 + 3000**2) / 2
    assert full["prefill_bound_s"] == pytest.approx(prefill_flops / 10e9, abs=0.05)
    assert half["prefill_bound_s"] == pytest.approx(prefill_flops / 1e9, abs=0.05)  # at 1 GFLOP/s, not 10
    with pytest.raises(ValueError, match="no measured rate for dtype 'bfloat16'"):
        limits.run_bounds(shape, limits.MachineLimits(10.0, 1000.0, 1), [100], 0, [5], 1, dtype="bfloat16")  # an older report


def test_prefix_reuse_counts_each_prefix_tree_token_once():
    sequences = [[1, 2, 3, 4], [1, 2, 9], [7], [1, 2, 3, 4, 5], [1, 2, 3, 4]]
    reused = limits.prefix_reuse(sequences)
    # sorted: [1,2,3,4] [1,2,3,4] [1,2,3,4,5] [1,2,9] [7]
    assert sorted(reused[i] for i in (0, 4)) == [0, 4] and reused[3] == 4 and reused[1] == 2 and reused[2] == 0
    assert sum(map(len, sequences)) - sum(reused) == len({tuple(s[:k]) for s in sequences for k in range(1, len(s) + 1)})


def test_rating_bound_is_the_prefix_tree_through_the_body_with_the_head_at_each_end():
    shape = limits.ModelShape(
        weight_bytes=1_000, body_params=1_000_000, head_params=100_000, layers=2, heads=4, kv_heads=2, head_dim=8, hidden=32, intermediate=64
    )
    machine = limits.MachineLimits(bandwidth_gb_s=10.0, gflops=1.0, threads=1, bf16_gflops=2.0)
    bound = limits.rating_bound(shape, machine, [400, 400, 200, 200], [0, 300, 100, 150])
    attention = 4 * 2 * 4 * 8 * (400**2 + (400**2 - 300**2) + (200**2 - 100**2) + (200**2 - 150**2)) / 2
    flops = 2 * 1_000_000 * (400 + 100 + 100 + 50) + attention + 4 * 2 * 100_000
    assert bound["bound_s"] == pytest.approx(flops / 1e9, abs=0.05)
    assert bound["pairs_per_s"] == pytest.approx(2 / (flops / 1e9), rel=1e-3)
    half = limits.rating_bound(shape, machine, [400, 400, 200, 200], [0, 300, 100, 150], dtype="bfloat16")
    assert half["pairs_per_s"] == pytest.approx(2 * bound["pairs_per_s"], rel=1e-2)


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


def test_machine_is_measured_with_the_threads_asked_in_both_dtypes():
    from st_eval.native_dtype import cpu_kind

    before = torch.get_num_threads()
    small = limits.model_shape(_llama(True))  # a small product: bfloat16 is emulated (slow) on some CPUs
    machine = limits.measure_machine(threads=1, repeats=2, shape=small)
    assert machine.threads == 1 and machine.bandwidth_gb_s > 0 and machine.gflops > 0 and machine.bf16_gflops > 0
    assert machine.cpu_kind == cpu_kind() and machine.gflops_in("bfloat16") == machine.bf16_gflops
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
