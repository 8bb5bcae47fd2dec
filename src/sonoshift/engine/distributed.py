"""Data parallel across processes/machines with torch.distributed, launched by torchrun (gloo on CPU).

The engine averages gradients explicitly in ``all_reduce_grads`` (called by ``StepContext.optimizer_step``), so a
method with several optimizers and several backward passes per step needs no DDP wrapper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Position of this process: ``rank`` in [0, world_size), ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, ...), if any.

    Without those variables (or with WORLD_SIZE=1) nothing happens. ``backend`` defaults to nccl when CUDA is
    available and gloo otherwise. Calling it twice is harmless.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return dist_info()


def dist_info() -> DistInfo:
    """The current process position (rank 0 of 1 when no process group is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", str(dist.get_rank()))))
    return DistInfo()


def all_reduce_grads(params: list[torch.Tensor], world_size: int) -> None:
    """Average the gradients of ``params`` over all ranks, in one flat all-reduce per dtype."""
    if world_size <= 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= world_size
        offset = 0
        for g in group:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n


def all_reduce_mean(values: dict[str, float], device: torch.device, world_size: int) -> dict[str, float]:
    """Mean of a dict of floats over ranks (same keys on every rank), for logging."""
    if world_size <= 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= world_size
    return dict(zip(keys, t.tolist()))


def broadcast_modules(modules: dict[str, torch.nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical start)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for name in sorted(modules):
        for t in list(modules[name].parameters()) + list(modules[name].buffers()):
            dist.broadcast(t.data, src=0)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
