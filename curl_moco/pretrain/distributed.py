"""torch.distributed plumbing for pretraining: process-group set-up from torchrun's environment,
and MoCo's shuffle BN for the key encoder.

Without torchrun (no ``WORLD_SIZE`` in the environment) everything here is a single-process
no-op, so the same code path runs in one process and under ``torchrun --nproc_per_node N``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from curl_moco.contrastive.queue import gather_from_all_ranks
from curl_moco.io.errors import UsageError
from curl_moco.runtime import launched_world_size

#: Seconds the other ranks wait after one rank refused its settings at start-up.
REFUSAL_GRACE_S = 2.0


class RefusedByOtherRank(UsageError):
    """Another rank refused its settings at start-up: this rank stops too."""

    def wait(self) -> None:
        """Give the refusing rank time to exit first, so that torchrun names it as the root
        cause (torchrun may stop this rank meanwhile: the refusing rank printed the reason)."""
        time.sleep(REFUSAL_GRACE_S)


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and device of this process (``world_size == 1`` without torchrun)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group that torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``PORT``): nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on
    CPU. Returns a single-process context when ``WORLD_SIZE`` is unset or 1."""
    world = launched_world_size()
    if world <= 1:
        return DistContext(0, 1, 0, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def start_together(ctx: DistContext, settings: dict[str, Any] | None = None) -> Iterator[None]:
    """Run start-up checks inside this block on every rank, then agree: when any rank refused
    (a :class:`UsageError`) or ``settings`` differ between ranks, every rank raises a
    :class:`UsageError` here, before the first collective of the run, so that no rank is left
    in a collective whose partner has exited (a gloo/nccl traceback, or a hang). One gather of
    small Python objects; a no-op in a single process."""
    problem: UsageError | None = None
    try:
        yield
    except UsageError as error:
        if not ctx.distributed:
            raise
        problem = error
    if not ctx.distributed:
        return
    outcomes = all_gather_objects((None if problem is None else str(problem), settings))
    if problem is not None:
        raise problem
    for other, (message, _) in enumerate(outcomes):
        if message is not None:
            raise RefusedByOtherRank(f"{message} (refused by rank {other}; every rank stops)")
    for other, (_, theirs) in enumerate(outcomes):
        for key in sorted(set(settings or {}) | set(theirs or {})):
            mine, its = (settings or {}).get(key), (theirs or {}).get(key)
            if mine != its:
                raise UsageError(
                    f"{key} differs between ranks: rank {ctx.rank} has {key}={mine!r}, rank "
                    f"{other} has {key}={its!r}; start every rank with the same settings")


def all_gather_objects(obj: object) -> list[object]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if world_size() == 1:
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks (``x`` itself in a single process)."""
    if world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of ``x`` over ranks (``x`` itself in a single process)."""
    if world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


@torch.no_grad()
def shuffled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """MoCo's shuffle BN: run ``fn`` (the key encoder) on a random redistribution of the global
    batch across ranks and return the outputs for this rank's own samples, in order.

    BatchNorm statistics of the keys are then computed on a different subset of samples than the
    queries', so the model cannot use batch statistics to find the positive. In a single process
    there is nothing to redistribute and this is just ``fn(x)``: the key batch is the same set of
    images as the query batch (use several processes, or SyncBN off and accept the leak; the
    pixel encoder has no BatchNorm at all). ``x (B, ...)`` -> ``(B, D)``.
    """
    world = world_size()
    if world == 1:
        return fn(x)
    local = x.shape[0]
    everything = gather_from_all_ranks(x)
    perm = torch.randperm(everything.shape[0], device=x.device) if rank() == 0 else None
    perm = torch.empty(everything.shape[0], dtype=torch.long, device=x.device) if perm is None \
        else perm
    dist.broadcast(perm, src=0)
    mine = perm.view(world, local)[rank()]
    out = gather_from_all_ranks(fn(everything[mine]))
    inverse = torch.argsort(perm)
    return out[inverse.view(world, local)[rank()]]
