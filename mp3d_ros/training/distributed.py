"""Processes of a training run: one, or many started by ``torchrun`` (DDP).

``torchrun`` (``python -m torch.distributed.run``) starts one process per GPU and tells each its
place through environment variables: ``RANK`` (global index), ``LOCAL_RANK`` (index on its node =
its GPU), ``WORLD_SIZE`` (processes in all), ``MASTER_ADDR`` / ``MASTER_PORT`` (where the process
group meets; with ``--rdzv-backend c10d`` torchrun's rendezvous sets them, across nodes too).
Without them the run is a single process. The backend is NCCL on CUDA and gloo on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_gather_objects",
    "barrier",
    "init_distributed",
    "mean_over_processes",
    "shutdown_distributed",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run."""

    # Global index of this process, 0 .. world_size - 1 (rank 0 logs and writes files).
    rank: int
    # Number of processes of the run (over all nodes).
    world_size: int
    # Index of this process on its node: its GPU.
    local_rank: int
    # Device this process trains on.
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistContext:
    """This process's :class:`DistContext`, joining the process group when torchrun started several.

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.

    Raises:
        RuntimeError: ``cuda`` asked for without a GPU, or fewer GPUs than processes on the node.
    """
    world_size, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was asked for but no CUDA GPU is available")
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process {rank} has LOCAL_RANK {local_rank} but this node has "
                               f"{torch.cuda.device_count()} GPUs: start one process per GPU")
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    else:
        target = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        # The GPU is chosen by set_device above (init_process_group's device_id needs torch 2.3).
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(rank, world_size, local_rank, target)


def shutdown_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistContext) -> None:
    """Wait for every process (no-op in a single-process run)."""
    if context.distributed:
        dist.barrier()


def all_gather_objects(context: DistContext, value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), by rank."""
    if not context.distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_processes(context: DistContext, values: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the processes (a copy; the input is unchanged)."""
    values = values.detach().clone()
    if context.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= context.world_size
    return values
