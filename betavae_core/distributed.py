"""Multi-process data-parallel training with torch.distributed (launched by torchrun).

torchrun sets WORLD_SIZE, RANK and the rendezvous variables; `setup()` then joins the
process group (gloo on CPU, nccl on CUDA). Every rank sees the same data and takes
its own share of each minibatch; gradients are averaged by DistributedDataParallel;
only rank 0 writes files, and only rank 0 takes the run folder's lock.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def setup(device: torch.device) -> World:
    """Join the process group when launched by torchrun; a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)  # one GPU per process, before NCCL starts
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def all_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over ranks (identity for one process)."""
    if world.active:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def agree(error: BaseException | None, world: World, device: torch.device) -> None:
    """Re-raise `error` (rank 0's, preparing the run folder) on every rank, so no rank
    goes on to wait at a collective for a rank that gave up (a single process: raise it)."""
    if world.active:
        flag = torch.tensor([0 if error is None else 1], device=device)
        failed = int(all_sum(flag, world).item())
        if error is None and failed:
            from .errors import CheckpointError

            raise CheckpointError("another process of this launch (rank 0) could not "
                                  "prepare the run folder; its error says why.")
    if error is not None:
        raise error


def teardown(world: World, synchronise: bool = True) -> None:
    """Leave the process group while the interpreter is fully alive.

    After a normal finish every rank first waits at a barrier, so no rank destroys its
    group while another still talks to it. The group is then released explicitly and
    collected: gloo's worker threads left to interpreter shutdown can abort the process.
    """
    if not (world.active and dist.is_initialized()):
        return
    if synchronise:
        dist.barrier()
    dist.destroy_process_group()
    gc.collect()
