"""The dtype a judge computes in, per CPU (st_eval.native_dtype): chosen from the CPU's flags
(injected here, so every case runs on any machine), overridden by ``dtype``, recorded by the
engine, the training recipe and the judge card; and bfloat16 close to float32 at tiny size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from st_eval import native_dtype
from st_eval.errors import EngineError, InputError
from st_eval.native_dtype import cpu_kind, isa_names, native_bfloat16, resolve_dtype

AVX2 = {"sse4_2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_bf16", "amx_tile", "amx_int8"}


@pytest.mark.parametrize(
    ("flags", "kind", "auto"),
    [(AVX2, "avx2", "float32"), (AVX512, "avx512", "float32"), (AVX512_BF16, "avx512-bf16", "bfloat16"), (AMX, "amx", "bfloat16")],
)
def test_auto_is_bfloat16_only_where_the_cpu_computes_it_natively(flags, kind, auto):
    assert cpu_kind(flags) == kind
    assert native_bfloat16(flags) is (auto == "bfloat16")
    assert resolve_dtype("auto", "cpu", flags) == auto
    assert resolve_dtype("auto", "cuda:1", flags) == "bfloat16"  # GPUs compute bfloat16 whatever the host CPU
    for chosen in ("float32", "bfloat16"):  # an explicit dtype wins over the flags
        assert resolve_dtype(chosen, "cpu", flags) == chosen


def test_report_names_of_the_flags_that_matter():
    assert isa_names(AVX2) == ["AVX2"]
    assert isa_names(AMX) == ["AVX2", "AVX-512", "AVX512-BF16", "AMX"]
    assert isa_names(set()) == [] and not native_bfloat16(set())


def test_an_unknown_dtype_is_refused_naming_the_option():
    with pytest.raises(EngineError, match=r"dtype must be one of auto, float32, bfloat16, float16, got 'fp8'"):
        resolve_dtype("fp8", "cpu", AMX)


def test_this_machines_flags_are_read_from_cpuinfo():
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo here")
    flags = native_dtype.cpu_flags()
    assert "fpu" in flags or not flags  # x86 lists fpu; other architectures name no "flags" line
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if native_bfloat16(flags) else "float32")


# -- the hf engine ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory, embedded_model) -> str:
    """A 2-layer Llama with random weights and the embedded judge's tokenizer (its chat template)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-judge")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(("flags", "expected"), [(AVX2, "float32"), (AVX512, "float32"), (AMX, "bfloat16")])
def test_the_hf_engine_picks_its_dtype_from_the_cpu(tiny_judge, monkeypatch, flags, expected):
    from st_eval.engines import make_engine

    monkeypatch.setattr(native_dtype, "cpu_flags", lambda: frozenset(flags))
    engine = make_engine("hf", tiny_judge, device="cpu")
    assert engine.dtype == expected
    assert f":{expected}:verdict-stop" in engine.identity  # cache keys part by dtype
    # and by how a bfloat16 judge's ratings are read (float32 output head, hf_rating.float32_head)
    assert engine.identity.endswith(":head-float32") == (expected == "bfloat16")


def test_engine_arg_dtype_overrides_the_cpus_choice(tiny_judge, monkeypatch):
    from st_eval.cli_options import parse_engine_args
    from st_eval.engines import make_engine

    monkeypatch.setattr(native_dtype, "cpu_flags", lambda: frozenset(AMX))
    assert make_engine("hf", tiny_judge, device="cpu", **parse_engine_args(["dtype=float32"])).dtype == "float32"
    monkeypatch.setattr(native_dtype, "cpu_flags", lambda: frozenset(AVX2))
    assert make_engine("hf", tiny_judge, device="cpu", **parse_engine_args(["dtype=bfloat16"])).dtype == "bfloat16"
    with pytest.raises(EngineError, match="dtype must be one of"):
        make_engine("hf", tiny_judge, device="cpu", dtype="half-ish")


def test_a_folder_with_a_merged_lora_stays_float32_on_every_cpu(tiny_judge, tmp_path, monkeypatch):
    """A LoRA's merged update is below bfloat16's resolution: ``write_merged`` writes float32
    marked so, and ``auto`` keeps it there on a CPU with native bfloat16 (not on CUDA, nor
    against an explicit dtype)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from st_eval.engines import make_engine

    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_judge), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    model = native_dtype.write_merged(tiny_judge, adapter, merged)
    AutoTokenizer.from_pretrained(tiny_judge).save_pretrained(merged)
    assert str(model.dtype) == "torch.float32"
    assert native_dtype.folder_dtype(merged) == "float32" and native_dtype.folder_dtype(tiny_judge) is None
    assert resolve_dtype("auto", "cpu", AMX, pinned="float32") == "float32"
    assert resolve_dtype("auto", "cuda", AMX, pinned="float32") == "bfloat16"
    assert resolve_dtype("bfloat16", "cpu", AVX2, pinned="float32") == "bfloat16"
    monkeypatch.setattr(native_dtype, "cpu_flags", lambda: frozenset(AMX))
    assert make_engine("hf", str(merged), device="cpu").dtype == "float32"
    assert make_engine("hf", tiny_judge, device="cpu").dtype == "bfloat16"


def test_bfloat16_rounding_drops_a_small_merged_update():
    """Why merged folders stay float32: an update of a thousandth of a weight (a LoRA's after a
    short run) is under half a bfloat16 step (1/256 of the weight), so rounding loses all of it."""
    import torch

    weight = torch.full((4,), 0.05)
    update = weight * 1e-3
    assert torch.equal((weight + update).to(torch.bfloat16), weight.to(torch.bfloat16))
    assert not torch.equal(weight + update, weight)


def _relative(a, b) -> float:
    """``a``'s distance from ``b`` over ``b``'s norm, both centred: log-probabilities share a
    large offset (the log of the normaliser) that would hide a difference in their shape."""
    a, b = a - a.mean(), b - b.mean()
    return float((a - b).norm() / b.norm())


def test_bfloat16_rating_probabilities_are_close_to_float32s(tiny_judge):
    """The same prompts rated by the same weights in both dtypes: each prompt's next-token
    log-probabilities agree to bfloat16's precision relative to their spread (8 bits of mantissa;
    measured 1.3-1.6% on this tiny judge), so the bound holds on any CPU, emulated or native."""
    import torch

    from st_eval.engines import make_engine

    prompts = [[{"role": "user", "content": text}] for text in ("Rate this answer.", "Is 2 + 2 = 4?", "A longer question " * 20)]
    tops = {dtype: make_engine("hf", tiny_judge, device="cpu", dtype=dtype).next_token_logprobs(prompts, top_k=50) for dtype in ("float32", "bfloat16")}
    for full, half in zip(tops["float32"], tops["bfloat16"]):
        shared = sorted(set(full) & set(half))
        assert len(shared) >= 25  # the two top-50 lists are mostly the same tokens
        assert _relative(torch.tensor([half[t] for t in shared]), torch.tensor([full[t] for t in shared])) < 0.05


def test_float32_weights_can_rate_in_bfloat16_and_still_decode_in_float32(tiny_judge):
    """``rating_dtype=bfloat16`` rates under bfloat16 autocast with the one float32 weight copy:
    its log-probabilities are bfloat16's (close to float32's within the bound above, not equal to
    them), generation is float32's exactly, and the engine's dtype and identity say so (the cache
    keeps the two apart)."""
    import torch

    from st_eval.engines import EngineError, SamplingConfig, make_engine

    prompts = [[{"role": "user", "content": text}] for text in ("Rate this answer.", "A longer question " * 20)]
    full = make_engine("hf", tiny_judge, device="cpu", dtype="float32")
    mixed = make_engine("hf", tiny_judge, device="cpu", dtype="float32", rating_dtype="bfloat16")
    assert mixed.dtype == "float32 (rating: bfloat16)" and full.dtype == "float32" and mixed.identity != full.identity
    ratings = {name: engine.next_token_logprobs(prompts, top_k=50) for name, engine in (("full", full), ("mixed", mixed))}
    assert ratings["full"] != ratings["mixed"]
    for a, b in zip(ratings["full"], ratings["mixed"]):
        shared = sorted(set(a) & set(b))
        assert len(shared) >= 25
        assert _relative(torch.tensor([b[t] for t in shared]), torch.tensor([a[t] for t in shared])) < 0.05
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=8)
    assert mixed.generate(prompts, 1, greedy) == full.generate(prompts, 1, greedy)
    assert make_engine("hf", tiny_judge, device="cpu", dtype="float32", rating_dtype="float32").dtype == "float32"
    with pytest.raises(EngineError, match="rating_dtype=bfloat16 needs float32 weights"):
        make_engine("hf", tiny_judge, device="cpu", dtype="float16", rating_dtype="bfloat16")


# -- the float32/bfloat16 agreement check (benchmarks/dtype_agreement.py) -----------------


def _bench(name: str):
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))  # the benchmark imports its sibling tables.py
    spec = importlib.util.spec_from_file_location(f"bench_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agreement_counts_each_orders_verdict_and_the_largest_rating_difference():
    from st_eval.records import Judgment, OrderResult

    def judgment(pair: str, verdicts: list, ratings=None, label="A", texts=("", "")) -> Judgment:
        orders = [
            OrderResult(order=o, verdict=v, votes={}, confidence=0.0, rationale="", raw=[text])
            for o, v, text in zip(("given", "swapped"), verdicts, texts)
        ]
        return Judgment(pair_id=pair, verdict=verdicts[0], confidence=0.0, rationale="", orders=orders, consistent=None,
                        engine="hf", model="m", template="t", sampling={}, label=label, ratings=ratings)

    agreement = _bench("dtype_agreement").agreement
    full = [judgment("1", ["A", "A"], {"A": 0.9, "B": 0.2}), judgment("2", ["B", None], {"A": 0.4, "B": 0.5})]
    half = [judgment("1", ["A", "B"], {"A": 0.88, "B": 0.2}), judgment("2", ["B", None], {"A": 0.4, "B": 0.53})]
    figures = agreement(full, half)
    assert figures["verdict_agreement"] == 0.75  # 3 of 4 (pair, order) verdicts; no verdict = no verdict
    assert figures["max_rating_difference"] == pytest.approx(0.03)
    assert figures["score_float32"] == pytest.approx((1.0 + 0.25) / 2)  # pair 2: wrong, then no verdict (0.5)
    assert figures["score_compared"] == pytest.approx((0.5 + 0.25) / 2)
    assert figures["verdicts_given"] == {"float32": 0.75, "compared": 0.75}
    assert figures["same_text"] is None  # rating judges write no text
    written = [judgment("1", ["A", None], texts=("[[A]]", "hmm")), judgment("2", ["B", "B"], texts=("[[B]]", "[[B]]"))]
    rewritten = [judgment("1", ["A", None], texts=("[[A]]", "hm")), judgment("2", ["B", "B"], texts=("[[B]]", "[[B]]"))]
    assert agreement(written, rewritten)["same_text"] == 0.75 and agreement(written, rewritten)["verdict_agreement"] == 1.0
    assert agreement(full, full)["verdict_agreement"] == 1.0
    with pytest.raises(ValueError, match="different pairs"):
        agreement(full, half[::-1])


def _agreement_args(cache: Path | None = None):
    """The options ``dtype_agreement.judge_in`` reads, as its command line would give them at tiny size."""
    import argparse

    return argparse.Namespace(max_new_tokens=4, threads=1, cache=cache, verdict_step=False)


def test_the_agreement_check_runs_both_dtypes_at_tiny_size(tiny_judge):
    from st_eval.records import Message, Pair

    bench = _bench("dtype_agreement")
    pairs = [
        Pair(id=str(i), conversation=[Message("user", q)], response_a=a, response_b=b, label="A")
        for i, (q, a, b) in enumerate([("Capital of France?", "Paris.", "Rome."), ("2 + 2?", "4", "5")])
    ]
    args = _agreement_args()
    for template in bench.TEMPLATES.values():
        runs = {name: bench.judge_in(tiny_judge, compute, template, pairs, args, "tiny") for name, compute in bench.COMPUTE.items()}
        for compared in bench.COMPUTE_NAMES:
            figures = bench.agreement(runs["float32"][0], runs[compared][0])
            assert figures["pairs"] == 2 and 0.0 <= figures["verdict_agreement"] <= 1.0
            assert all(len(j.orders) == 2 for j in runs[compared][0])  # both orders judged
        assert all(run[2] == 0.0 for run in runs.values())  # no cache: nothing read back


def test_the_agreement_check_resumes_from_its_cache(tiny_judge, tmp_path):
    """A pairwise run stopped midway is not lost: the same command with ``--cache`` reads back
    what was judged and says how much it read, so its seconds are not taken for a full run's."""
    from st_eval.records import Message, Pair

    bench = _bench("dtype_agreement")
    pairs = [Pair(id=str(i), conversation=[Message("user", f"Is {i} even?")], response_a="Yes.", response_b="No.", label="A") for i in range(3)]
    args = _agreement_args(tmp_path / "cache.sqlite")
    first, _, first_cached = bench.judge_in(tiny_judge, bench.COMPUTE["float32"], bench.TEMPLATES["pairwise"], pairs[:2], args, "tiny")
    again, _, again_cached = bench.judge_in(tiny_judge, bench.COMPUTE["float32"], bench.TEMPLATES["pairwise"], pairs, args, "tiny")
    assert first_cached == 0.0 and again_cached == pytest.approx(4 / 6, abs=1e-4)  # 2 of 3 pairs, both orders, read back
    assert [o.raw for j in again[:2] for o in j.orders] == [o.raw for j in first for o in j.orders]


# -- training and the judge card ----------------------------------------------------------


def test_training_dtype_follows_the_cpu_unless_the_recipe_says(monkeypatch):
    import torch

    from st_eval.training.config import TrainConfig
    from st_eval.training.sft import saved_dtype, trains_in_bfloat16, weights_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(native_dtype, "cpu_flags", lambda: frozenset(AMX))
    assert trains_in_bfloat16(TrainConfig()) and weights_dtype(TrainConfig(method="lora")) == torch.bfloat16
    assert saved_dtype(TrainConfig()) == torch.bfloat16
    assert not trains_in_bfloat16(TrainConfig(dtype="float32"))
    monkeypatch.setattr(native_dtype, "cpu_flags", lambda: frozenset(AVX2))
    assert not trains_in_bfloat16(TrainConfig()) and weights_dtype(TrainConfig(method="lora")) == torch.float32
    assert trains_in_bfloat16(TrainConfig(dtype="bfloat16")) and trains_in_bfloat16(TrainConfig(bf16=True))
    assert TrainConfig().computes_in_bfloat16("cuda")  # what a GPU plan assumes


def test_a_recipe_asking_for_bf16_and_float32_at_once_is_refused():
    from st_eval.training.config import recipe_from_dict

    with pytest.raises(InputError, match=r"field 'train.bf16' is true but train.dtype is 'float32'"):
        recipe_from_dict({"name": "x", "train": {"bf16": True, "dtype": "float32"}})
    with pytest.raises(InputError, match=r"field 'train.dtype' must be one of auto, float32, bfloat16"):
        recipe_from_dict({"name": "x", "train": {"dtype": "fp16"}})
    assert recipe_from_dict({"name": "x"}).train.dtype == "auto"


def test_the_judge_card_records_the_dtype_the_judge_was_measured_in(tmp_path):
    from st_eval.training.config import recipe_from_dict
    from st_eval.training.judge_card import card_data, write_card

    recipe = recipe_from_dict({"name": "x"})
    figures = {"n": 2, "accuracy": 0.5, "order_averaged": 0.5}
    card = card_data(recipe, 1, {}, {"synthetic": {**figures, "dtype": "bfloat16"}}, {}, commit="abc")
    assert card["measured_in"] == "bfloat16"
    _, markdown = write_card(tmp_path, card)
    assert "- measured in: bfloat16" in markdown.read_text()
    assert card_data(recipe, 1, {}, {"synthetic": figures}, {}, commit="abc")["measured_in"] == "not recorded"  # an older eval.json
