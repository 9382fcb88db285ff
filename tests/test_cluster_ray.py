"""Generation on a real Ray cluster on this machine (2 CPUs, 2 replicas): blocks stream back and
each prompt is generated once, a dead replica is replaced and its block redone, the embedded
judge's judgments on LLMBar pairs equal those of one process (directly, through a training stage,
and through the CLI after ``kill -9`` of its driver), and a node that cannot see a judge folder
or the run folder stops the command before any work.

Marked ``ray``: ``scripts/test.sh --ray`` runs them (CI does), the default run leaves them out.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="the Ray cluster tests need st-eval[ray]")

from st_eval.cluster import ClusterConfig  # noqa: E402
from st_eval.engines.base import SamplingConfig  # noqa: E402
from st_eval.engines.ray_data import EngineSpec, RayEngine  # noqa: E402
from st_eval.errors import EngineError  # noqa: E402
from st_eval.judge import Judge, JudgeConfig  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]
REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
#: a test cluster: no login token, no usage report, and no 30 s drain when it is stopped
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
STUB = "ray_stub_engine:EchoEngine"
#: the Ray Client port of the test cluster: below Ray's worker ports (10002 on), as Ray's own default 10001 is
CLIENT_PORT = 10001
MAX_NEW = 24
PAIRS = 6


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_node(args: list[str], prefix: list[str] | None = None) -> subprocess.Popen:
    """``ray start ... --block`` in a session of its own, so stopping it stops what it started.
    Its workers can import the stand-in engine (as a real cluster's nodes have st-eval installed)."""
    return subprocess.Popen(
        [*(prefix or []), str(RAY), "start", *args, "--block", "--disable-usage-stats"],
        env={**os.environ, **RAY_ENV, "PYTHONPATH": str(REPO / "tests")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=REPO,
    )


def _stop_node(node: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start_cluster(cpus: int, client_port: int | None = None) -> tuple[str, subprocess.Popen]:
    """A head node of ``cpus`` CPUs (with a Ray Client server on ``client_port``); its GCS address."""
    port = _free_port()
    client = [f"--ray-client-server-port={client_port}"] if client_port else []
    head = _start_node(["--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false", "--node-ip-address=127.0.0.1", *client])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return f"127.0.0.1:{port}", head
        time.sleep(0.5)
    _stop_node(head)
    pytest.fail("the local Ray head did not start within 60 s")


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU local cluster this process drives (as ``st-eval --cluster HOST:PORT`` would)."""
    saved = {name: os.environ.get(name) for name in RAY_ENV}
    os.environ.update(RAY_ENV)
    client_port = CLIENT_PORT
    address, head = _start_cluster(2, client_port)
    try:
        yield address, f"ray://127.0.0.1:{client_port}"
    finally:
        import ray

        ray.shutdown()
        _stop_node(head)
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


def _prompts(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"p{i}"}] for i in range(count)]


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_blocks_stream_back_and_each_prompt_is_generated_once(cluster, tmp_path):
    cluster, _ = cluster
    log = tmp_path / "blocks.jsonl"
    engine = RayEngine(EngineSpec(STUB, None, {"log": str(log)}), ClusterConfig(address=cluster, replicas=2, block_size=3))
    assert (engine.name, engine.model, engine.identity) == ("echo", "echo-model", "echo:echo-model")  # the wrapped engine's own
    blocks = list(engine.generate_blocks(_prompts(10), 2, SamplingConfig()))
    assert len(blocks) > 1
    texts = {i: samples for indices, found in blocks for i, samples in zip(indices, found)}
    assert texts == {i: [f"echo p{i} #0", f"echo p{i} #1"] for i in range(10)}
    done = _log(log)
    assert sorted(p for block in done for p in block["prompts"]) == sorted(f"p{i}" for i in range(10))
    assert len({block["pid"] for block in done}) == 2  # both replicas worked
    assert engine.next_token_logprobs(_prompts(2)) == [{" A": -0.2, " B": -1.0}] * 2


def test_a_dead_replica_is_replaced_and_its_block_redone(cluster, tmp_path):
    cluster, _ = cluster
    log, marker = tmp_path / "blocks.jsonl", tmp_path / "died"
    engine = RayEngine(EngineSpec(STUB, None, {"log": str(log), "die_once": str(marker)}), ClusterConfig(address=cluster, replicas=2, block_size=2))
    assert engine.generate(_prompts(8)) == [[f"echo p{i} #0"] for i in range(8)]
    dead = int(marker.read_text())
    done = _log(log)
    assert sorted(p for block in done for p in block["prompts"]) == sorted(f"p{i}" for i in range(8))  # each once
    assert dead not in {block["pid"] for block in done}  # the dead replica's block was redone elsewhere


def test_an_st_eval_error_in_a_replica_reaches_the_driver_as_it_was(cluster):
    cluster, _ = cluster
    engine = RayEngine(EngineSpec(STUB, None, {"fail": True}), ClusterConfig(address=cluster, replicas=1))
    with pytest.raises(EngineError, match="^echo engine: asked to fail$"):
        engine.generate(_prompts(2))


def test_a_command_elsewhere_joins_by_ray_client(cluster):
    """``--cluster ray://HOST:10001`` (a laptop's command): the job still runs inside the cluster."""
    _, client = cluster
    script = (
        "from st_eval.cluster import ClusterConfig; from st_eval.engines.ray_data import EngineSpec, RayEngine; "
        f"engine = RayEngine(EngineSpec({STUB!r}), ClusterConfig(address={client!r}, replicas=2)); "
        "print(engine.generate([[{'role': 'user', 'content': f'p{i}'}] for i in range(3)]))"
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, **RAY_ENV}, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[['echo p0 #0'], ['echo p1 #0'], ['echo p2 #0']]"


# -- the embedded judge ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llmbar_pairs(shared_data):
    from st_eval.benchmarks.rewardbench import load_llmbar

    pairs = [p for p in load_llmbar(shared_data / "llmbar") if p.id.startswith("llmbar-natural")]
    return sorted(pairs, key=lambda p: len(p.instruction) + len(p.response_a) + len(p.response_b))[:PAIRS]


def _config() -> JudgeConfig:
    return JudgeConfig(template="pairwise-v1", order="given", sampling=SamplingConfig(max_new_tokens=MAX_NEW))


@pytest.fixture(scope="module")
def in_process(llmbar_pairs, embedded_model):
    """The judgments of one process, one torch thread (as each replica has), in float32: in
    bfloat16 (``auto`` on CPUs with AVX512-BF16 or AMX) a batch's make-up moves near-tied greedy
    choices, and the replicas batch the prompts differently from one process."""
    from st_eval.engines import make_engine

    engine = make_engine("hf", embedded_model, threads=1, progress=False, dtype="float32")
    try:
        return [j.to_dict() for j in Judge(engine, _config()).judge(llmbar_pairs)]
    finally:
        engine.close()


@pytest.mark.slow
def test_the_cluster_judges_llmbar_pairs_as_one_process_does(cluster, llmbar_pairs, embedded_model, in_process):
    cluster, _ = cluster
    engine = RayEngine(EngineSpec("hf", embedded_model, {"threads": 1, "progress": False, "dtype": "float32"}), ClusterConfig(address=cluster, replicas=2))
    judged = [j.to_dict() for j in Judge(engine, _config()).judge(llmbar_pairs)]
    assert judged == in_process  # verdicts, texts, engine, model, template, sampling: all the same


@pytest.mark.slow
def test_a_training_stage_runs_on_the_cluster_with_the_same_judgments(cluster, llmbar_pairs, embedded_model, in_process, tmp_path):
    cluster, _ = cluster
    from st_eval.jsonl import read_jsonl
    from st_eval.training.config import recipe_from_dict
    from st_eval.training.loop import EngineCache, _evaluate_iteration

    recipe = recipe_from_dict({
        "name": "cluster-stage", "seed_model": embedded_model, "template": "pairwise-v1", "engine_options": {"threads": 1, "dtype": "float32"}, "cache": False,
        "evaluation": {"order": "given", "max_new_tokens": MAX_NEW}, "cluster": {"address": cluster, "replicas": 2},
    })
    engines = EngineCache(recipe)
    try:
        result = _evaluate_iteration(recipe, tmp_path, 0, embedded_model, {"llmbar": llmbar_pairs}, engines, {})
    finally:
        engines.release()
    rows = {r["key"]: r["judgment"] for r in read_jsonl(tmp_path / "eval.llmbar.partial.jsonl")}
    assert [rows[j["pair_id"]] for j in in_process] == in_process
    correct = sum(j["verdict"] == j["label"] for j in in_process)
    assert result["eval"]["llmbar"]["accuracy"] == pytest.approx(correct / PAIRS)


def _cache_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.OperationalError:  # created but no table yet
        return 0


@pytest.mark.slow
def test_a_killed_driver_loses_nothing_and_its_rerun_generates_nothing_twice(cluster, llmbar_pairs, embedded_model, in_process, tmp_path):
    cluster, _ = cluster
    pairs_file, output, cache = tmp_path / "pairs.jsonl", tmp_path / "judgments.jsonl", tmp_path / "cache.sqlite"
    pairs_file.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in llmbar_pairs))
    command = [
        sys.executable, "-m", "st_eval.cli", "judge", str(pairs_file), "--cluster", cluster, "--replicas", "2", "-m", embedded_model,
        "--template", "pairwise-v1", "--max-new-tokens", str(MAX_NEW), "--engine-arg", "threads=1", "--engine-arg", "dtype=float32", "-o", str(output), "--cache-path", str(cache),
    ]
    env = {**os.environ, **RAY_ENV, "COLUMNS": "200"}  # the summary table on one line per row
    first = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _cache_rows(cache) == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.kill()  # kill -9 of the driver, mid-job
    first.wait()
    kept = _cache_rows(cache)
    assert 0 < kept < PAIRS, f"the kill came {'too late' if kept else 'too early'}: {kept} judge outputs stored ({first.stderr.read().decode()[-2000:]})"
    second = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{PAIRS - kept} generated, {kept} from the generation cache" in " ".join(second.stderr.split()), second.stderr[-3000:]
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["pair_id"] for r in rows) == sorted(p.id for p in llmbar_pairs)  # each pair once
    by_id = {r["pair_id"]: r for r in rows}
    assert [(by_id[j["pair_id"]]["verdict"], by_id[j["pair_id"]]["orders"][0]["raw"]) for j in in_process] == [
        (j["verdict"], j["orders"][0]["raw"]) for j in in_process
    ]


# -- a node that cannot see the folder -----------------------------------------------------------


@pytest.fixture
def hidden_node_cluster(tmp_path):
    """A head and a second node on this machine; the second runs in a mount namespace of its own
    where ``tmp_path/shared`` is an empty file system: that node cannot see what is in it."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine cannot make a mount namespace (unshare -m), which hides a folder from one node")
    shared = tmp_path / "shared"
    (shared / "judge").mkdir(parents=True)
    (shared / "judge" / "config.json").write_text("{}")
    address, head = _start_cluster(1)
    node = _start_node(
        [f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"],
        prefix=["unshare", "-m", "sh", "-c", f'mount -t tmpfs tmpfs "{shared}" && exec "$0" "$@"'],
    )
    try:
        deadline = time.monotonic() + 60
        probe = [sys.executable, "-c", f"import ray; ray.init(address='{address}', log_to_driver=False); print(len([n for n in ray.nodes() if n['Alive']]))"]
        while time.monotonic() < deadline:
            alive = subprocess.run(probe, env={**os.environ, **RAY_ENV}, capture_output=True, text=True).stdout.strip()
            if alive == "2":
                break
            time.sleep(1)
        else:
            pytest.fail("the second node did not join within 60 s")
        yield address, shared
    finally:
        _stop_node(node)
        _stop_node(head)


def test_a_node_that_cannot_see_the_judge_folder_or_run_folder_stops_the_command_up_front(hidden_node_cluster, tmp_path):
    address, shared = hidden_node_cluster
    env = {**os.environ, **RAY_ENV}
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "1", "instruction": "q", "response_a": "a", "response_b": "b"}) + "\n")
    judged = subprocess.run(
        [sys.executable, "-m", "st_eval.cli", "judge", str(pairs), "--cluster", address, "--replicas", "2", "-m", str(shared / "judge"), "--template", "pairwise-v1"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    said = " ".join(judged.stderr.split())
    assert judged.returncode == 2 and f"cannot use the judge folder {shared / 'judge'}: it is missing there" in said, said[-2000:]
    assert "mounts at the same path" in said
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: cluster-check\npool: {{limit: 4}}\ncluster: {{address: '{address}', replicas: 2}}\n")
    trained = subprocess.run(
        [sys.executable, "-m", "st_eval.cli", "train", "--recipe", str(recipe), "--run-dir", str(shared / "run")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    said = " ".join(trained.stderr.split())
    assert trained.returncode == 2 and f"cannot use the run folder {shared / 'run'}: it is missing there" in said, said[-2000:]
    assert not (shared / "run" / "pool.json").exists()  # refused before the first stage
