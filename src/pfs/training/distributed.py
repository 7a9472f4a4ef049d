"""Where a job runs: the device it asks for, and the process group of a torchrun job (set-up, the GPU-count check,
collective sums). Starting torchrun is pfs.stages.launch's."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from pfs.core.errors import PfsError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device named by a config's ``device`` (auto: CUDA when there is one), refused when absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PfsError(f"device {name!r} requested but CUDA is not available; set device: auto or cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (world_size 1: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str = "auto", expected_gpus: int | None = None) -> tuple[Dist, torch.device]:
    """Read torchrun's environment, check the GPUs, pick this rank's device, start the process group.

    NCCL on GPU, gloo on CPU. ``expected_gpus`` is what the job was given (resources.gpu): a job that sees
    fewer GPUs stops here, before any work, instead of silently sharing one.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = resolve_device(device_name)
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        needed = max(local_world, expected_gpus or 0)
        if visible < needed:
            raise PfsError(f"this job was given {needed} GPU(s) (resources.gpu / --nproc_per_node) but sees {visible}"
                           " (CUDA_VISIBLE_DEVICES); lower resources.gpu or ask the scheduler for more GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank), device


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over all ranks (identity in a single process)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return tensor.tolist()


def cleanup() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
