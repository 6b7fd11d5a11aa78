"""Several processes training one model: torchrun and DistributedDataParallel, nothing home-made.

`torchrun --nproc_per_node N -m core train ...` starts N copies of the command line; each finds
its rank in the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK). They join one process
group (gloo on CPUs, NCCL with one GPU per local rank), train through the same `fit` loop on
their share of every global batch, and agree on everything that ends a run, so no rank is left
waiting. Without torchrun every function here is a no-op and the run is a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """Whether torchrun started this process (one of WORLD_SIZE, possibly just one)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 prints and writes files; the others train quietly."""
    return rank() == 0


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group (once); the device this rank trains on.

    On GPUs, DDP's gradients go through NCCL and the loop's small votes and sums (`agree`,
    `total`: CPU tensors) through gloo: NCCL has no CPU tensors.
    """
    if device.type == "cuda":
        device, gpus = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))), torch.cuda.device_count()
        if device.index >= gpus:
            raise ValueError(f"torchrun started more processes on this machine than it has GPUs ({gpus}): "
                             f"use --nproc_per_node {gpus} or --device cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def agree(*flags: bool) -> tuple[bool, ...]:
    """Each flag true if it is true on any rank: stop requests, time limits and a non-finite loss
    are decided together (one small all-reduce), so every rank leaves the loop at the same step."""
    if not dist.is_initialized():
        return flags
    votes = torch.tensor([float(flag) for flag in flags])
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return tuple(bool(vote) for vote in votes.tolist())


def total(*numbers: float) -> tuple[float, ...]:
    """Sums over all ranks (each rank's share of a validation loss, its counts of right answers)."""
    if not dist.is_initialized():
        return numbers
    sums = torch.tensor(numbers, dtype=torch.float64)
    dist.all_reduce(sums)
    return tuple(sums.tolist())


def my_share(count: int) -> list[int]:
    """This rank's indices of `count` items (rank, rank + world, ...): every item exactly once overall."""
    return list(range(rank(), count, world_size()))
