"""A ring buffer of L2-normalised keys used as extra negatives (MoCo's dictionary queue)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed_world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@torch.no_grad()
def gather_from_all_ranks(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x (B, ...)`` from every DDP rank in rank order -> ``(world * B, ...)``.

    Returns ``x`` itself when torch.distributed is not initialised or the world has one process.
    Every rank must pass the same shape. No gradient flows through the result.
    """
    world = _distributed_world_size()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class KeyQueue(nn.Module):
    """FIFO queue of ``size`` keys of dimension ``dim``, stored as buffers (saved by state_dict).

    Buffers: ``keys (size, dim)`` float32 (random unit vectors at init, like MoCo), ``ptr`` (long
    scalar, next write row) and ``num_enqueued`` (long scalar, keys written so far, all ranks).
    The pointer stays on the queue's device: enqueueing causes no host-device synchronisation.
    """

    keys: torch.Tensor
    ptr: torch.Tensor
    num_enqueued: torch.Tensor

    def __init__(self, dim: int, size: int, seed: int | None = None) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim={dim} must be >= 1")
        if size < 1:
            raise ValueError(f"queue_size={size} must be >= 1")
        self.dim = dim
        self.size = size
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        keys = F.normalize(torch.randn(size, dim, generator=gen), dim=1)
        self.register_buffer("keys", keys)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_enqueued", torch.zeros((), dtype=torch.long))

    @staticmethod
    def check_batch(size: int, batch: int) -> None:
        """Raise ``ValueError`` unless ``size`` (queue_size) is a multiple of the global ``batch``
        (per-rank batch x world size). Call it at start-up to fail before training."""
        if batch < 1:
            raise ValueError(f"batch size {batch} must be >= 1")
        if size % batch != 0:
            raise ValueError(
                f"queue_size={size} must be a multiple of the global batch size {batch} "
                f"(batch per rank x world size)"
            )

    def __len__(self) -> int:
        return self.size

    @property
    def is_full(self) -> bool:
        """True once ``size`` real keys have been written (the random init is fully replaced)."""
        return bool(self.num_enqueued >= self.size)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, gather: bool | None = None) -> None:
        """Write ``keys (B, dim)`` (L2-normalised here, detached) at ``ptr``, wrapping around.

        ``gather``: first concatenate keys from all DDP ranks (default: True iff
        torch.distributed is initialised with world size > 1; True without a process group is the
        same as a world of one). The global batch must divide ``size``.
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be (B, dim={self.dim}), got shape {tuple(keys.shape)}")
        if gather is None:
            gather = _distributed_world_size() > 1
        keys = keys.detach()
        if gather:
            keys = gather_from_all_ranks(keys)
        batch = keys.shape[0]
        self.check_batch(self.size, batch)
        keys = F.normalize(keys.to(self.keys.device, self.keys.dtype), dim=1)
        rows = (self.ptr + torch.arange(batch, device=self.keys.device)) % self.size
        self.keys.index_copy_(0, rows, keys)
        self.ptr.copy_((self.ptr + batch) % self.size)
        self.num_enqueued.add_(batch)

    def negatives(self) -> torch.Tensor:
        """A detached copy of the stored keys ``(size, dim)``."""
        return self.keys.detach().clone()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}"
