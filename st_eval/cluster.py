"""Where generation runs: in this process, or on a Ray cluster.

One setting for every door: ``st-eval judge|bench|gate --cluster ADDRESS --replicas N
--gpus-per-replica G`` and a recipe's block ``cluster: {kind: ray, address: ..., replicas: ...,
gpus_per_replica: ...}`` both become a :class:`ClusterConfig`. The engine a command or a training
stage asks for then runs as replicas on the cluster (``engines/ray_data.py``) behind the same
engine protocol, so the judge core, the generation cache and resumable outputs are those of one
process.

Workers load what the driver names by path (a judge folder of the training loop, a model
folder), so such a folder must be on a file system every node mounts at the same path; that is
checked before any work starts (:func:`check_model_folder`, :func:`check_shared_folder`), not
found out hours later by a worker that fails to load.

Ray is optional (``pip install 'st-eval[ray]'``) and imported only when a cluster is used.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from st_eval.errors import EngineError, InputError

INSTALL_HINT = "the cluster setting needs Ray: pip install 'st-eval[ray]'"
ADDRESS_FORMS = (
    "auto (the cluster this machine belongs to), local (a cluster started by this process), "
    "ray://HOST:10001 (Ray Client) or HOST:PORT (a cluster's GCS)"
)
_ADDRESS = re.compile(r"^(auto|local|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")
#: blocks each replica gets per job: enough that a slow block does not leave the others idle at
#: the job's end, few enough that a job (whose replicas load the weights) covers a wave of work
BLOCKS_PER_REPLICA = 8
#: the command-line flag of each field, for errors about flags
FLAGS = {"address": "--cluster", "replicas": "--replicas", "gpus_per_replica": "--gpus-per-replica"}
#: where a probe token is left for the workers to read
PROBE_FILE = ".st-eval-cluster-probe"
log = logging.getLogger(__name__)


@dataclass
class ClusterConfig:
    """A Ray cluster that runs generation (a recipe's ``cluster`` block; ``--cluster`` flags).

    kind: ``ray`` (the only kind).
    address: ``auto`` (the cluster this machine belongs to: run the command on its head node, or
        as a Ray job), ``local`` (start a cluster in this process, on this machine's cores),
        ``ray://HOST:10001`` (Ray Client) or ``HOST:PORT`` (a cluster's GCS address).
    replicas: engine replicas (Ray actors), each holding one engine and generating its share of
        the prompts.
    gpus_per_replica: GPUs each replica holds (0 on a CPU cluster); a vLLM replica splits its
        model over them (``tensor_parallel_size``).
    cpus_per_replica: CPU cores each replica holds (the hf engine's threads).
    block_size: the most prompts per block, the unit a replica generates at once, the cache
        stores as it lands, and a replacement replica redoes when one dies (a small job gets
        smaller blocks, so that every replica has work: :meth:`block_for`).
    """

    kind: Literal["ray"] = "ray"
    address: str = "auto"
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    block_size: int = 32

    @property
    def prompts_per_job(self) -> int:
        """Prompts one job gets: every replica's share of :data:`BLOCKS_PER_REPLICA` blocks."""
        return self.replicas * self.block_size * BLOCKS_PER_REPLICA

    def block_for(self, prompts: int) -> int:
        """Prompts per block in a job of ``prompts``: ``block_size``, or fewer when that would
        leave replicas without :data:`BLOCKS_PER_REPLICA` blocks each."""
        return max(1, min(self.block_size, -(-prompts // (self.replicas * BLOCKS_PER_REPLICA))))

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for each bad value, so the CLI and recipes name their own spelling."""
        found = []
        if not _ADDRESS.match(self.address):
            found.append(("address", f"must be {ADDRESS_FORMS}, got {self.address!r}"))
        if self.replicas < 1:
            found.append(("replicas", f"must be >= 1, got {self.replicas}"))
        for name in ("gpus_per_replica", "cpus_per_replica"):
            if getattr(self, name) < 0:
                found.append((name, f"must be >= 0, got {getattr(self, name)}"))
        if self.cpus_per_replica == 0 and self.gpus_per_replica == 0:
            found.append(("cpus_per_replica", "and gpus_per_replica cannot both be 0: a replica needs somewhere to run"))
        if self.block_size < 1:
            found.append(("block_size", f"must be >= 1, got {self.block_size}"))
        return found


def cluster_from_flags(
    address: str | None, replicas: int | None, gpus_per_replica: float | None, base: ClusterConfig | None = None
) -> ClusterConfig | None:
    """The cluster ``--cluster/--replicas/--gpus-per-replica`` describe, over ``base`` (a recipe's
    block) when there is one; None: this process. Bad values fail here, before any model loads."""
    if address is None and base is None:
        for flag, value in (("--replicas", replicas), ("--gpus-per-replica", gpus_per_replica)):
            if value is not None:
                raise InputError(f"{flag} needs --cluster (the Ray cluster the replicas run on)")
        return None
    flags = {"address": address, "replicas": replicas, "gpus_per_replica": gpus_per_replica}
    cluster = replace(base or ClusterConfig(), **{name: value for name, value in flags.items() if value is not None})
    for name, problem in cluster.problems():
        raise InputError(f"{FLAGS.get(name, name)} {problem}")
    return cluster


def check_engine(engine: str, where: str) -> None:
    """Refuse the openai engine on a cluster (``where``: the flag or recipe field that asked)."""
    if engine == "openai":
        raise InputError(f"{where}: a cluster runs st-eval's own engines (hf, vllm) on its workers; the openai engine already sends its work to servers")


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs ray[data]; plain ray lacks it)
    except ImportError as exc:
        raise EngineError(f"{INSTALL_HINT} ({exc})") from exc
    return ray


def connect(cluster: ClusterConfig) -> Any:
    """Join the cluster (once per process) and quiet Ray's own bars: st-eval shows its own."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(
                # "local" always starts a cluster here: None would join the one named in
                # /tmp/ray/ray_current_cluster, which a killed run leaves behind (and hang on it)
                address=cluster.address,
                log_to_driver=False, logging_level=logging.WARNING, configure_logging=True,
            )
        except ConnectionError as exc:
            raise EngineError(
                f"--cluster {cluster.address}: no Ray cluster answers there ({exc}); start one (`ray start --head`, "
                "KubeRay, Slurm: see docs/scale.md) or use --cluster local"
            ) from exc
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


def replica_nodes(cluster: ClusterConfig) -> list[dict[str, Any]]:
    """The alive nodes with room for one replica (the nodes whose file systems matter)."""
    ray = import_ray()
    return [
        node for node in ray.nodes()
        if node.get("Alive")
        and node["Resources"].get("CPU", 0) >= cluster.cpus_per_replica
        and node["Resources"].get("GPU", 0) >= cluster.gpus_per_replica
    ]


def on_every_node(cluster: ClusterConfig, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` run once on each node of :func:`replica_nodes`, by node (address and id:
    nodes may share an address)."""
    ray = connect(cluster)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(fn)
    nodes = replica_nodes(cluster)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(*args) for node in nodes]
    return {f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})": result for node, result in zip(nodes, ray.get(refs))}


def _folder_revision(folder: str) -> str | None:
    from st_eval.cache import model_revision

    return model_revision(folder) if Path(folder).is_dir() else None


def _read_probe(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def check_model_folder(folder: Path, cluster: ClusterConfig, what: str = "model folder") -> None:
    """Refuse a model folder some replica node does not see as this machine does (missing, or
    other files at that path), before any replica starts loading it."""
    from st_eval.cache import model_revision

    expected = model_revision(str(folder))
    for node, seen in on_every_node(cluster, _folder_revision, str(folder)).items():
        if seen != expected:
            raise InputError(_unreachable(node, folder, what, "is missing there" if seen is None else "holds other files there"))


def check_shared_folder(folder: Path, cluster: ClusterConfig, what: str) -> None:
    """Refuse a folder that some replica node does not share with this machine: a token written
    here must read back the same there (the training loop's run folder, where each iteration's
    judge is saved for the workers to load)."""
    probe = folder / PROBE_FILE
    token = uuid.uuid4().hex
    probe.write_text(token, encoding="utf-8")
    try:
        for node, seen in on_every_node(cluster, _read_probe, str(probe)).items():
            if seen != token:
                raise InputError(_unreachable(node, folder, what, "is not the same folder there" if seen else "is missing there"))
    finally:
        probe.unlink(missing_ok=True)


def _unreachable(node: str, folder: Path, what: str, problem: str) -> str:
    return (
        f"cluster: node {node} cannot use the {what} {folder}: it {problem}. Replicas load it by path, so it must be on a file "
        "system every node mounts at the same path (NFS, a shared volume; KubeRay: a ReadWriteMany volume; see docs/scale.md)"
    )


__all__ = [
    "ADDRESS_FORMS", "BLOCKS_PER_REPLICA", "ClusterConfig", "check_engine", "check_model_folder", "check_shared_folder", "cluster_from_flags",
    "connect", "import_ray", "on_every_node", "replica_nodes",
]
