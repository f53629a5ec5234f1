"""Exponential moving averages of modules: momentum (key) encoders and SAC target networks.

Convention: ``tau`` is the weight of the *source* (online) module,
``p_target <- tau * p_source + (1 - tau) * p_target``. CURL: critic_tau=0.01, encoder_tau=0.05;
MoCo's momentum m=0.999 is tau = 1 - m = 0.001.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

BUFFER_MODES: tuple[str, ...] = ("copy", "ema", "keep")


def _check_structure(
    kind: str, target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]
) -> None:
    if target.keys() != source.keys():
        missing = sorted(source.keys() - target.keys())
        extra = sorted(target.keys() - source.keys())
        raise ValueError(
            f"target and source {kind} differ: missing in target {missing[:5]}, "
            f"only in target {extra[:5]}"
        )
    for name, t in target.items():
        if t.shape != source[name].shape:
            raise ValueError(
                f"{kind[:-1]} {name!r} has shape {tuple(t.shape)} in target but "
                f"{tuple(source[name].shape)} in source"
            )


def _lerp_(targets: list[torch.Tensor], sources: list[torch.Tensor], tau: float) -> None:
    """In place ``t <- tau * s + (1 - tau) * t``; exact copy for tau=1, no-op for tau=0."""
    if not targets or tau == 0.0:
        return
    if tau == 1.0:
        torch._foreach_copy_(targets, sources)
        return
    torch._foreach_lerp_(targets, [s.to(t.device, t.dtype) for t, s in zip(targets, sources)], tau)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, tau: float, buffers: str = "copy") -> None:
    """Move ``target``'s parameters towards ``source``'s: ``p_t <- tau * p_s + (1 - tau) * p_t``.

    ``tau=1`` copies exactly, ``tau=0`` leaves the target unchanged. Buffers (e.g. BatchNorm
    running statistics): ``"copy"`` copies all buffers from source; ``"ema"`` EMAs floating buffers
    with the same tau and copies the others (e.g. ``num_batches_tracked``); ``"keep"`` leaves
    target buffers untouched (the target keeps its own statistics). Both modules must have the
    same parameter (and, unless ``"keep"``, buffer) names and shapes.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau={tau} must be in [0, 1]")
    if buffers not in BUFFER_MODES:
        raise ValueError(f"buffers={buffers!r} is not one of {BUFFER_MODES}")
    t_params = dict(target.named_parameters())
    s_params = dict(source.named_parameters())
    _check_structure("parameters", t_params, s_params)
    names = list(t_params)
    _lerp_([t_params[n] for n in names], [s_params[n] for n in names], tau)

    if buffers == "keep":
        return
    t_bufs = dict(target.named_buffers())
    s_bufs = dict(source.named_buffers())
    _check_structure("buffers", t_bufs, s_bufs)
    floats = [n for n, b in t_bufs.items() if b.is_floating_point()]
    others = [n for n, b in t_bufs.items() if not b.is_floating_point()]
    if buffers == "ema":
        _lerp_([t_bufs[n] for n in floats], [s_bufs[n] for n in floats], tau)
    else:
        others = floats + others
    for n in others:
        t_bufs[n].copy_(s_bufs[n])


class MomentumEncoder(nn.Module):
    """Key encoder: a deep copy of a query encoder updated only by EMA, never by gradients.

    All parameters have ``requires_grad=False`` and :meth:`forward` runs under ``torch.no_grad()``,
    so its outputs are detached and no optimiser sees it. Choices about buffers and modes:

    - ``buffers="keep"`` (default): BatchNorm running statistics are NOT copied from the query
      encoder; the key encoder keeps its own, computed from the key batches (as in MoCo, where the
      key encoder runs in train mode and normalises keys with its own batch statistics). Use
      ``"copy"`` or ``"ema"`` to track the query encoder's statistics instead.
    - Train/eval mode follows the parent module like any submodule (``model.train()`` puts the key
      encoder in train mode, so BatchNorm uses batch statistics for keys). CURL's pixel encoder has
      no BatchNorm and no dropout, so mode does not matter there.

    ``state_dict()`` keys are ``encoder.<name>``.
    """

    def __init__(self, query_encoder: nn.Module, buffers: str = "keep") -> None:
        super().__init__()
        if buffers not in BUFFER_MODES:
            raise ValueError(f"buffers={buffers!r} is not one of {BUFFER_MODES}")
        self.buffers_mode = buffers
        self.encoder = copy.deepcopy(query_encoder)
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    @property
    def out_dim(self) -> int:
        """The wrapped encoder's ``out_dim``."""
        return self.encoder.out_dim  # type: ignore[return-value]

    @torch.no_grad()
    def update(self, query_encoder: nn.Module, tau: float) -> None:
        """EMA step towards ``query_encoder`` (see :func:`ema_update`; MoCo: tau = 1 - m)."""
        ema_update(self.encoder, query_encoder, tau, buffers=self.buffers_mode)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the key encoder under ``torch.no_grad()``; the output is detached."""
        with torch.no_grad():
            return self.encoder(*args, **kwargs)
