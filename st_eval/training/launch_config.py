"""What an accelerate config file asks for: processes, machines, sharding, offload.

The loop hands ``train.accelerate_config`` to ``accelerate launch`` as it is; st-eval reads it too,
because what a training stage needs (GPUs, memory per GPU, DeepSpeed installed, a worker command
per extra machine) follows from it: the plan, the checks before a run and the worker command
all read it through :func:`read_launch_config`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from st_eval.errors import InputError
from st_eval.yaml_text import load_yaml

#: accelerate's ``distributed_type`` values whose optimizer keeps float32 master weights of
#: bfloat16 parameters (FSDP upcasts them, DeepSpeed keeps them in its optimizer)
SHARDED = ("FSDP", "DEEPSPEED")


@dataclass(frozen=True)
class LaunchConfig:
    """The parts of an accelerate config file that decide where and how a job trains.

    distributed_type: accelerate's (``NO``, ``MULTI_GPU``, ``FSDP``, ``DEEPSPEED``, ...).
    machines, processes: ``num_machines`` and ``num_processes`` (all machines together).
    zero_stage: DeepSpeed's ZeRO stage (None without DeepSpeed).
    offload_optimizer, offload_params: where DeepSpeed (or FSDP, params only) keeps them:
        ``none``, ``cpu`` or ``nvme``.
    multinode_launcher: DeepSpeed's ``deepspeed_multinode_launcher`` (accelerate's default is
        ``pdsh``: an ssh fan-out from a host file, not one launch per node).
    main_process_ip, main_process_port: where rank 0 listens.
    """

    path: Path
    distributed_type: str
    machines: int
    processes: int
    zero_stage: int | None
    offload_optimizer: str
    offload_params: str
    multinode_launcher: str | None
    main_process_ip: str | None
    main_process_port: int | None

    @property
    def sharded(self) -> bool:
        """FSDP or DeepSpeed: weights (and with ZeRO-3 or FSDP, parameters) split over processes."""
        return self.distributed_type in SHARDED

    @property
    def shards_parameters(self) -> bool:
        """Each process holds 1/processes of the weights (FSDP, ZeRO-3), not a full copy."""
        return self.distributed_type == "FSDP" or (self.distributed_type == "DEEPSPEED" and (self.zero_stage or 0) >= 3)

    @property
    def processes_per_machine(self) -> int:
        return max(1, self.processes // max(1, self.machines))


def read_launch_config(path: str | Path) -> LaunchConfig:
    """Read an accelerate config (YAML or JSON); a DeepSpeed JSON it names is read for ZeRO settings."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the accelerate config: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: an accelerate config must be a mapping")
    deepspeed = data.get("deepspeed_config") or {}
    zero = _zero_settings(path, deepspeed)
    fsdp_offload = str((data.get("fsdp_config") or {}).get("fsdp_offload_params", False)).lower() == "true"
    return LaunchConfig(
        path=path,
        distributed_type=str(data.get("distributed_type", "NO")).upper(),
        machines=int(data.get("num_machines", 1)),
        processes=int(data.get("num_processes", 1)),
        zero_stage=zero.get("stage"),
        offload_optimizer=str(zero.get("offload_optimizer") or "none").lower(),
        offload_params=str(zero.get("offload_params") or ("cpu" if fsdp_offload else "none")).lower(),
        multinode_launcher=deepspeed.get("deepspeed_multinode_launcher"),
        main_process_ip=data.get("main_process_ip"),
        main_process_port=int(data["main_process_port"]) if data.get("main_process_port") else None,
    )


def _zero_settings(path: Path, deepspeed: dict[str, Any]) -> dict[str, Any]:
    """ZeRO stage and offload devices, from accelerate's keys or the DeepSpeed JSON they point to."""
    if deepspeed.get("deepspeed_config_file"):
        file = Path(deepspeed["deepspeed_config_file"])
        file = file if file.is_absolute() else path.parent / file
        try:
            zero = json.loads(file.read_text(encoding="utf-8")).get("zero_optimization") or {}
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read its deepspeed_config_file {file}: {exc}") from exc
        return {
            "stage": zero.get("stage"),
            "offload_optimizer": (zero.get("offload_optimizer") or {}).get("device"),
            "offload_params": (zero.get("offload_param") or {}).get("device"),
        }
    if not deepspeed:
        return {}
    return {
        "stage": deepspeed.get("zero_stage"),
        "offload_optimizer": deepspeed.get("offload_optimizer_device"),
        "offload_params": deepspeed.get("offload_param_device"),
    }


__all__ = ["LaunchConfig", "read_launch_config"]
