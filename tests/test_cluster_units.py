"""The cluster setting without a cluster: flags and recipe blocks checked before anything starts,
the cache storing each block of a streaming engine as it lands, the judge sizing its calls for a
cluster engine, the ray.data.llm rows mapped back to texts and probabilities, and the plan.
The runs on a real local Ray cluster are in test_cluster_ray.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from st_eval.cache import CachedEngine, GenerationCache
from st_eval.cluster import BLOCKS_PER_REPLICA, ClusterConfig, cluster_from_flags
from st_eval.engines import ray_vllm
from st_eval.engines.base import Engine, SamplingConfig
from st_eval.engines.ray_data import EngineSpec
from st_eval.engines.ray_jobs import cluster_error
from st_eval.errors import EngineError, InputError
from st_eval.judge import CHUNK_PAIRS, Judge, JudgeConfig
from st_eval.records import Message, Pair
from st_eval.training.config import recipe_from_dict
from stub_judges import forbid_models, run_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--replicas", "2"], "--replicas needs --cluster"),
        (["--gpus-per-replica", "1"], "--gpus-per-replica needs --cluster"),
        (["--cluster", "somewhere"], "--cluster must be auto (the cluster this machine belongs to), local"),
        (["--cluster", "auto", "--replicas", "0"], "--replicas must be >= 1, got 0"),
        (["--cluster", "auto", "--gpus-per-replica", "-1"], "--gpus-per-replica must be >= 0, got -1.0"),
        (["--cluster", "auto", "-e", "openai"], "--cluster: a cluster runs st-eval's own engines (hf, vllm) on its workers"),
    ],
)
def test_bad_cluster_flags_fail_before_any_model_or_cluster(flags, error, monkeypatch, capsys, tmp_path):
    forbid_models(monkeypatch)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "1", "instruction": "q", "response_a": "a", "response_b": "b"}) + "\n")
    code, _, err = run_main(monkeypatch, capsys, "judge", str(pairs), *flags)
    assert code == 2 and error in err


def test_the_flags_make_the_cluster_the_recipe_block_makes():
    from_flags = cluster_from_flags("ray://head:10001", 16, 1)
    recipe = recipe_from_dict({"name": "r", "cluster": {"kind": "ray", "address": "ray://head:10001", "replicas": 16, "gpus_per_replica": 1}})
    assert from_flags == recipe.cluster == ClusterConfig(address="ray://head:10001", replicas=16, gpus_per_replica=1.0)
    assert cluster_from_flags(None, None, None) is None


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ({"replicas": 0}, "field 'cluster.replicas' must be >= 1, got 0"),
        ({"kind": "slurm"}, "field 'cluster.kind' must be one of ray, got 'slurm'"),
        ({"address": "head"}, "field 'cluster.address' must be auto"),
        ({"block_size": 0}, "field 'cluster.block_size' must be >= 1, got 0"),
        ({"gpus_per_replica": 0, "cpus_per_replica": 0}, "field 'cluster.cpus_per_replica' and gpus_per_replica cannot both be 0"),
        ({"nodes": 2}, "field 'cluster.nodes' is not a recipe field"),
    ],
)
def test_a_bad_cluster_block_is_refused_naming_its_field(block, error):
    with pytest.raises(InputError) as caught:
        recipe_from_dict({"name": "r", "cluster": block}, where="r.yaml")
    assert error in str(caught.value)


def test_a_cluster_recipe_with_the_openai_engine_is_refused():
    with pytest.raises(InputError, match="r.yaml: field 'cluster': a cluster runs st-eval's own engines"):
        recipe_from_dict({"name": "r", "engine": "openai", "cluster": {}}, where="r.yaml")


def test_a_cluster_recipe_hands_each_stage_call_a_whole_job():
    recipe = recipe_from_dict({"name": "r", "cluster": {"replicas": 4, "block_size": 16}})
    assert recipe.prompts_per_call == 4 * 16 * BLOCKS_PER_REPLICA
    assert recipe_from_dict({"name": "r", "chunk_size": 100, "cluster": {}}).prompts_per_call == 100  # the recipe's own wins


def test_small_jobs_get_smaller_blocks_so_every_replica_works():
    cluster = ClusterConfig(replicas=2, block_size=32)
    assert cluster.block_for(6) == 1  # 6 blocks over 2 replicas
    assert cluster.block_for(160) == 10
    assert cluster.block_for(100_000) == 32


def test_a_resumed_run_may_change_its_cluster_but_not_its_recipe(tmp_path):
    from st_eval.training.loop import prepare_run_dir

    base = {"name": "r", "cluster": {"replicas": 2}}
    prepare_run_dir(recipe_from_dict(base), tmp_path, resume=False)
    prepare_run_dir(recipe_from_dict({**base, "cluster": {"replicas": 8, "gpus_per_replica": 1}}), tmp_path, resume=True)
    prepare_run_dir(recipe_from_dict({"name": "r"}), tmp_path, resume=True)
    with pytest.raises(InputError, match="recipe field 'seed' differs"):
        prepare_run_dir(recipe_from_dict({**base, "seed": 3}), tmp_path, resume=True)


def test_a_cluster_recipe_without_ray_is_refused_before_the_run(monkeypatch):
    from st_eval.training import preflight

    monkeypatch.setattr(preflight, "installed", lambda name: None if name == "ray" else "99")
    problems = dict(preflight.environment_problems(recipe_from_dict({"name": "r", "cluster": {}})))
    assert problems["cluster"] == "needs Ray, which is not installed: pip install 'st-eval[ray]'"


class BlockEngine(Engine):
    """Yields one block per prompt, then fails: a run killed after its first block."""

    name = "blocks"
    call_size = 1000

    def __init__(self) -> None:
        super().__init__("blocks-model")
        self.calls: list[int] = []

    def generate(self, prompts, n=1, sampling=None):
        raise AssertionError("the cache must take blocks as they land")

    def generate_blocks(self, prompts, n=1, sampling=None) -> Iterator[tuple[list[int], list[list[str]]]]:
        self.calls.append(len(prompts))
        yield [1], [[f"text {prompts[1][-1]['content']}"] * n]
        raise EngineError("the driver died here")


def test_the_cache_stores_each_block_as_it_lands(tmp_path):
    engine = BlockEngine()
    cached = CachedEngine(engine, GenerationCache(tmp_path / "cache.sqlite"))
    prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(600)]
    assert cached.write_every == 1000  # one call for all 600 prompts: the engine asked for whole jobs
    with pytest.raises(EngineError):
        cached.generate(prompts)
    assert engine.calls == [600] and len(cached.cache) == 1
    assert cached.generate([prompts[1]]) == [["text p1"]]  # the finished block is not generated again


class SizedEngine(Engine):
    name = "sized"
    call_size = 512

    def generate(self, prompts, n=1, sampling=None):
        return [["[[A]]"] * n for _ in prompts]


def test_the_judge_fills_a_cluster_engines_call():
    assert Judge(SizedEngine("m"), JudgeConfig(template="pairwise-v1", order="both")).chunk_pairs == 256
    assert Judge(SizedEngine("m"), JudgeConfig(template="pairwise-v1")).chunk_pairs == 512
    plain = Judge(CachedEngine(SizedEngine("m"), GenerationCache(":memory:")), JudgeConfig(template="pairwise-v1"))
    assert plain.chunk_pairs == 512  # through the cache too
    assert Judge(type("Plain", (SizedEngine,), {"call_size": None})("m"), JudgeConfig(template="pairwise-v1")).chunk_pairs == CHUNK_PAIRS


def test_an_engine_spec_names_a_local_folder_absolutely_for_the_workers(tmp_path, monkeypatch):
    (tmp_path / "judge").mkdir()
    monkeypatch.chdir(tmp_path)
    assert EngineSpec("hf", "judge").for_workers().model == str(tmp_path / "judge")
    assert EngineSpec("hf", "smollm2-135m").for_workers().model == "smollm2-135m"  # a name each node resolves itself
    assert EngineSpec("hf", None).folder is None


def test_a_failed_ray_job_says_which_error_the_worker_raised():
    text = (
        "ray::MapWorker(MapBatches(Replica)).submit() (pid=1)\n  File \"x.py\", line 3, in f\n"
        "torch.OutOfMemoryError: CUDA out of memory\n\nThe above exception was the direct cause of the following exception:\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block."
    )
    assert str(cluster_error(RuntimeError(text))).startswith("the Ray job failed: torch.OutOfMemoryError: CUDA out of memory (")
    own = EngineError("model folder not found")
    assert cluster_error(own) is own


PROMPTS = [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "Final verdict: [["}]]


def test_ray_data_llm_rows_carry_the_in_process_sampling():
    from st_eval.engines.vllm import sampling_kwargs

    greedy = SamplingConfig(max_new_tokens=64, stop=("\n\n",))
    rows = ray_vllm.generation_rows(PROMPTS, 3, greedy)
    assert [(r["index"], r["sample"]) for r in rows] == [(0, 0), (1, 0)]  # greedy: one row, repeated
    assert rows[0]["sampling_params"] == sampling_kwargs(greedy, 1) and rows[1]["messages"] == PROMPTS[1]
    sampled = ray_vllm.generation_rows(PROMPTS, 2, SamplingConfig(temperature=0.7, top_p=0.9, seed=5))
    assert [(r["index"], r["sample"], r["sampling_params"]["seed"]) for r in sampled] == [(0, 0, 5), (0, 1, 6), (1, 0, 5), (1, 1, 6)]


def test_ray_data_llm_texts_come_back_per_prompt_once_all_its_samples_landed():
    sampling = SamplingConfig(temperature=0.7, stop=("END",))
    blocks = iter([
        [{"index": 1, "sample": 0, "text": "b0"}, {"index": 0, "sample": 1, "text": "a1 END more"}],
        [{"index": 0, "sample": 0, "text": "a0"}, {"index": 1, "sample": 1, "text": "b1"}],
    ])
    assert list(ray_vllm.texts_by_prompt(blocks, 2, sampling)) == [([0, 1], [["a0", "a1 "], ["b0", "b1"]])]
    greedy = iter([[{"index": 0, "sample": 0, "text": "g"}]])
    assert list(ray_vllm.texts_by_prompt(greedy, 3, SamplingConfig())) == [([0], [["g", "g", "g"]])]


def test_ray_data_llm_probabilities_are_read_as_the_vllm_engine_reads_them():
    row = {
        "index": 3, "sample": 0, "generated_text": " A",
        "logprobs": [{10: {"logprob": -0.1, "rank": 1, "decoded_token": " A"}, 11: {"logprob": -2.5, "rank": 2, "decoded_token": " B"}, 12: {"logprob": -0.1, "rank": 3, "decoded_token": " A"}}],
    }
    out = ray_vllm.output_row(row)
    top = json.loads(out["top"])
    assert out["index"] == 3 and out["text"] == " A" and set(top) == {" A", " B"}
    assert top[" A"] == pytest.approx(-0.1 + 0.6931, abs=1e-3)  # two ids of one text add up, as in process
    assert json.loads(ray_vllm.output_row({"index": 0, "sample": 0, "generated_text": "x"})["top"]) == {}


def test_ray_data_llm_takes_the_vllm_options_its_replicas_can_honour():
    two = ClusterConfig(replicas=4, gpus_per_replica=2)
    assert ray_vllm.engine_kwargs(EngineSpec("vllm", "m", {"progress": True, "max_model_len": 4096}), two) == {"max_model_len": 4096, "tensor_parallel_size": 2}
    assert ray_vllm.fits(EngineSpec("vllm", "m"), two) and not ray_vllm.fits(EngineSpec("vllm", "m"), ClusterConfig()) and not ray_vllm.fits(EngineSpec("hf", "m"), two)
    with pytest.raises(InputError, match="data_parallel_size does not apply on a cluster"):
        ray_vllm.engine_kwargs(EngineSpec("vllm", "m", {"data_parallel_size": 2}), two)
    with pytest.raises(InputError, match="--gpus-per-replica .* is 2, but each vLLM replica spans .* = 4 GPUs"):
        ray_vllm.engine_kwargs(EngineSpec("vllm", "m", {"tensor_parallel_size": 4}), two)


def test_the_plan_shows_the_generation_stages_on_the_cluster(tmp_path):
    from st_eval.training.plan import Cluster, make_plan, parse_size

    recipe_path = ROOT / "training" / "recipes" / "llama-3.1-70b-multinode.yaml"
    from st_eval.training.config import load_recipe

    recipe = load_recipe(recipe_path)
    recipe.cluster = ClusterConfig(address="auto", replicas=16, gpus_per_replica=4)
    recipe.engine_options = {k: v for k, v in recipe.engine_options.items() if k not in ("tensor_parallel_size", "data_parallel_size")}
    plan = make_plan(recipe, recipe_path, Cluster(parse_size("80GiB"), 8, 2), model_config=ROOT / "tests" / "data" / "model-configs" / "llama-3.1-70b-instruct.json")
    text = plan.markdown()
    assert "(Ray cluster, 16 replicas)" in text and "16 replica(s) x 4 GPU(s)" in text and "vLLM through ray.data.llm" in text
    assert "runs on the main node only" not in text and "| ray |" in text
    recipe.cluster = ClusterConfig(replicas=2, gpus_per_replica=16)
    refused = make_plan(recipe, recipe_path, Cluster(parse_size("80GiB"), 8, 2), model_config=ROOT / "tests" / "data" / "model-configs" / "llama-3.1-70b-instruct.json").refusals
    assert any(line.startswith("field 'cluster.gpus_per_replica' (16) is more than a node's 8 GPUs") for line in refused)


def test_a_chunk_sized_for_a_cluster_keeps_the_pairs_in_order():
    pairs = [Pair(id=str(i), conversation=[Message("user", f"q{i}")], response_a="a", response_b="b") for i in range(40)]
    judged = Judge(SizedEngine("m"), JudgeConfig(template="pairwise-v1")).judge(pairs)
    assert [j.pair_id for j in judged] == [p.id for p in pairs] and {j.verdict for j in judged} == {"A"}


def test_train_flags_override_the_recipes_cluster_block(monkeypatch, capsys, tmp_path):
    block = ClusterConfig(address="auto", replicas=2, block_size=256)
    assert cluster_from_flags(None, 16, None, base=block) == ClusterConfig(address="auto", replicas=16, block_size=256)
    assert cluster_from_flags("local", None, None, base=None) == ClusterConfig(address="local")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\n")
    code, _, err = run_main(monkeypatch, capsys, "train", "--recipe", str(recipe), "--replicas", "2")
    assert code == 2 and "--replicas needs --cluster" in err
