"""The generation cache: hits and misses, concurrent writer processes, crashes mid-write."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
from collections.abc import Sequence

import pytest

from st_eval.cache import CachedEngine, GenerationCache, generation_key, model_revision
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig

GREEDY = SamplingConfig(max_new_tokens=16)
SAMPLED = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=16, seed=3)


class CountingEngine(Engine):
    """A deterministic fake engine that records what it was asked to generate."""

    name = "fake"

    def __init__(self, model: str = "m") -> None:
        super().__init__(model)
        self.calls: list[tuple[int, int, int]] = []  # (prompts, n, seed)

    def generate(self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None):
        sampling = sampling or SamplingConfig()
        self.calls.append((len(prompts), n, sampling.seed))
        return [[f"{p[-1]['content']}|seed{sampling.seed}|{i}" for i in range(n)] for p in prompts]


def prompt(text: str) -> ChatPrompt:
    return [{"role": "system", "content": "judge"}, {"role": "user", "content": text}]


def test_rerun_hits_and_only_missing_prompts_are_generated(tmp_path):
    engine = CountingEngine()
    cached = CachedEngine(engine, GenerationCache(tmp_path / "c.sqlite"))
    first = cached.generate([prompt("a"), prompt("b")], n=1, sampling=GREEDY)
    assert engine.calls == [(2, 1, 0)] and cached.misses == 2 and cached.hits == 0

    again = cached.generate([prompt("b"), prompt("c"), prompt("a")], n=1, sampling=GREEDY)
    assert again[0] == first[1] and again[2] == first[0]
    assert engine.calls[-1] == (1, 1, 0), "only the new prompt may reach the engine"
    assert cached.hits == 2 and cached.misses == 3


def test_key_changes_with_everything_that_determines_an_output():
    base = generation_key("hf:m@r1:float32", prompt("a"), SAMPLED, 0)
    assert base != generation_key("hf:m@r2:float32", prompt("a"), SAMPLED, 0)
    assert base != generation_key("hf:m@r1:float32", prompt("b"), SAMPLED, 0)
    assert base != generation_key("hf:m@r1:float32", [{"role": "user", "content": "a"}], SAMPLED, 0)
    assert base != generation_key("hf:m@r1:float32", prompt("a"), SAMPLED, 1)
    for change in ({"temperature": 0.8}, {"top_p": 0.95}, {"seed": 4}, {"max_new_tokens": 17}, {"stop": ("x",)}):
        other = SamplingConfig(**{**SAMPLED.to_dict(), "stop": SAMPLED.stop, **change})
        assert base != generation_key("hf:m@r1:float32", prompt("a"), other, 0), change
    # Greedy output ignores seed, top_p and the sample index.
    g = generation_key("e", prompt("a"), GREEDY, 0)
    assert g == generation_key("e", prompt("a"), SamplingConfig(max_new_tokens=16, seed=9, top_p=0.5), 3)


def test_extra_samples_are_generated_with_a_shifted_seed(tmp_path):
    engine = CountingEngine()
    cached = CachedEngine(engine, GenerationCache(tmp_path / "c.sqlite"))
    two = cached.generate([prompt("a")], n=2, sampling=SAMPLED)
    five = cached.generate([prompt("a"), prompt("z")], n=5, sampling=SAMPLED)
    assert five[0][:2] == two[0]
    assert engine.calls[1:] == [(1, 5, 3), (1, 3, 5)]  # z from scratch; a's samples 2..4
    assert len(set(five[0])) == 5, "new samples must not repeat cached ones"
    assert cached.generate([prompt("a"), prompt("z")], n=5, sampling=SAMPLED) == five
    assert len(engine.calls) == 3


def test_wrapper_passes_through_engine_attributes(tmp_path):
    engine = CountingEngine("model-x")
    engine.tokenizer = "tok"  # type: ignore[attr-defined]
    cached = CachedEngine(engine, GenerationCache(tmp_path / "c.sqlite"))
    assert (cached.name, cached.model, cached.identity, cached.tokenizer) == ("fake", "model-x", "fake:model-x", "tok")


def test_model_revision_tracks_weight_content(tmp_path):
    folder = tmp_path / "judge"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * (10 << 20))
    first = model_revision(str(folder))
    assert model_revision(str(folder)) == first
    with (folder / "model.safetensors").open("r+b") as handle:
        handle.seek(5 << 20)
        handle.write(b"\1")  # a fine-tuned copy of the same size
    assert model_revision(str(folder)) != first


def _writer(path: str, worker: int, rounds: int) -> None:
    cache = GenerationCache(path)
    for r in range(rounds):
        # Every worker writes its own keys and one key all workers race on.
        cache.put_many([(f"w{worker}-{r}-{j}", "e", f"out{worker}-{r}-{j}") for j in range(20)] + [(f"shared-{r}", "e", f"w{worker}")])
        assert cache.get(f"w{worker}-{r}-0") == f"out{worker}-{r}-0"


def test_concurrent_writer_processes(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(path, w, 15)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    cache = GenerationCache(path)
    assert len(cache) == 4 * 15 * 20 + 15
    assert cache.get("w3-14-19") == "out3-14-19"
    assert cache.get("shared-7") in {"w0", "w1", "w2", "w3"}


def _die_mid_write(path: str) -> None:
    cache = GenerationCache(path)
    cache.put_many([("committed", "e", "kept")])
    conn = cache._connection()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO generations (key, engine, output, created) VALUES (?, 'e', ?, 0)",
        [(f"torn-{i}", "x" * 1000) for i in range(2000)],
    )
    os._exit(1)  # killed before COMMIT: no cleanup, no rollback by Python


def test_crash_mid_write_keeps_committed_entries_and_drops_the_torn_batch(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_die_mid_write, args=(path,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 1
    cache = GenerationCache(path)
    assert cache.get("committed") == "kept"
    assert cache.get("torn-0") is None and len(cache) == 1
    cache.put_many([("after", "e", "ok")])  # still writable: no stale lock left behind
    assert cache.get("after") == "ok"
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_cache_survives_pickling_into_another_process(tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    cache.put_many([("k", "e", "v")])
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(GenerationCache.get, (cache, "k")) == "v"


def test_cli_build_engine_wraps_in_the_cache_unless_disabled(tmp_path, monkeypatch):
    from st_eval import cli_options

    monkeypatch.setattr(cli_options, "make_engine", lambda name, model, **options: CountingEngine(model or "m"))
    wrapped = cli_options.build_engine("openai", "m", cache_path=tmp_path / "x.sqlite")
    assert isinstance(wrapped, CachedEngine) and wrapped.cache.path == tmp_path / "x.sqlite"
    assert not isinstance(cli_options.build_engine("openai", "m", cache=False), CachedEngine)


@pytest.mark.slow
def test_judge_cli_rerun_is_served_from_the_cache(tmp_path, embedded_model, monkeypatch):
    """A second ``st-eval judge`` run on the same pair generates nothing (real model, 8 tokens)."""
    from typer.testing import CliRunner

    from st_eval.cli import app

    args = [
        "judge", "--model", embedded_model, "--instruction", "2+2?", "--response-a", "4", "--response-b", "5",
        "--max-new-tokens", "8", "--cache-path", str(tmp_path / "c.sqlite"),
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    cache = GenerationCache(tmp_path / "c.sqlite")
    assert len(cache) == 1
    (identity,) = cache.stats()
    assert identity.startswith(f"hf:{embedded_model}@")
    from st_eval.engines.hf import HFEngine

    def no_generation(*args, **kwargs):
        raise AssertionError("a cached judgment was generated again")

    monkeypatch.setattr(HFEngine, "generate", no_generation)
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0 and second.stdout == first.stdout
    assert len(cache) == 1
