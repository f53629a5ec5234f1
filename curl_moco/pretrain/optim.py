"""Optimisers and per-step schedules of MoCo pretraining.

Schedules are pure functions of the global step, so a resumed run recomputes exactly the value
an uninterrupted run would use; the checkpoint only needs the step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017), as MoCo v3 uses
    it: for weights (``ndim > 1``) the update ``g + wd * p`` is rescaled by
    ``trust * ||p|| / ||g + wd * p||``; biases and normalisation parameters get plain momentum SGD
    without weight decay."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, *, momentum: float = 0.9,
                 weight_decay: float = 0.0, trust_coefficient: float = 0.001) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr={lr}, momentum={momentum}, weight_decay={weight_decay} "
                             "must be >= 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:
                    update = update.add(p, alpha=group["weight_decay"])
                    p_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    ratio = torch.where((p_norm > 0) & (u_norm > 0),
                                        group["trust_coefficient"] * p_norm / u_norm,
                                        torch.ones_like(p_norm))
                    update = update.mul(ratio)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(update)
                p.add_(mu, alpha=-group["lr"])
        return loss


def build_optimizer(name: str, params: Iterable[nn.Parameter], *, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """``"sgd"`` (MoCo v1/v2), ``"lars"`` (v3 ResNet) or ``"adamw"`` (v3 ViT) over ``params``
    (only those with ``requires_grad``)."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise KeyError(f"unknown optimizer={name!r}; valid: sgd, lars, adamw")


def learning_rate(step: int, total_steps: int, base_lr: float, *, schedule: str,
                  warmup_steps: int = 0, milestones: Sequence[float] = (0.6, 0.8)) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``.

    Linear warm-up from ``base_lr / warmup_steps`` to ``base_lr`` over ``warmup_steps``, then
    ``"cosine"`` half-cycle decay to 0 (MoCo v2/v3), ``"step"`` division by 10 at each milestone
    (fractions of training; MoCo v1: epochs 120 and 160 of 200) or ``"constant"``.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))
    if schedule == "step":
        drops = sum(step >= round(m * total_steps) for m in milestones)
        return base_lr * 0.1**drops
    raise KeyError(f"unknown schedule={schedule!r}; valid: cosine, step, constant")


def momentum_at(step: int, total_steps: int, base: float, schedule: str) -> float:
    """Key-encoder momentum m at ``step``: constant, or MoCo v3's half-cycle cosine increase
    ``1 - (1 - base) * (1 + cos(pi * step / total)) / 2`` from ``base`` to 1."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return 1.0 - (1.0 - base) * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total_steps)))
    raise KeyError(f"unknown momentum_schedule={schedule!r}; valid: constant, cosine")
