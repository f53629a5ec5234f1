"""Stopping a run whose numbers are no longer numbers (inf / NaN).

A learning rate far too large turns weights, losses and actions into inf or NaN within a few
updates. Left alone, such a run crashes far from the cause (MuJoCo refuses a NaN control with a
``PhysicsError``) or keeps writing NaN rows and checkpoints. The trainers check where the
values are already on the host (the action before it goes to the environment, the metrics when
a log row is written) and check the weights once before each checkpoint is written (one device
synchronisation per checkpoint, nothing per step), then stop with :class:`TrainingDiverged`:
one ``error:`` line (exit 2, as any mistake the user can fix) naming the setting most likely at
fault, the step and the quantity. The last checkpoint written before is left untouched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from curl_moco.io.checks import show
from curl_moco.io.errors import UsageError


class TrainingDiverged(UsageError):
    """Training produced inf/NaN; the message names the likely setting, the step and the
    quantity, and says which checkpoint is kept."""


def nonfinite_values(values: Mapping[str, float]) -> dict[str, float]:
    """The entries of ``values`` (host numbers) that are inf or NaN, in their order."""
    return {name: float(value) for name, value in values.items()
            if not math.isfinite(float(value))}


def first_nonfinite_tensor(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding an inf or NaN, else None (one host
    synchronisation for all tensors together)."""
    floats = [(name, t) for name, t in named if torch.is_tensor(t) and t.is_floating_point()
              and t.numel()]
    if not floats:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in floats]).cpu()
    for (name, _), ok in zip(floats, finite.tolist()):
        if not ok:
            return name
    return None


def likely_knob(cfg: Any, defaults: Mapping[str, float], fallback: str) -> tuple[str, str]:
    """The setting to blame and a hint: of the knobs in ``defaults`` (name -> the usual value),
    the one set furthest above its usual value; ``fallback`` when none is above it. Returns
    ``(name, "its usual value is X")``."""
    ratios = {name: getattr(cfg, name) / usual for name, usual in defaults.items()
              if usual and getattr(cfg, name) is not None}
    name = max(ratios, key=ratios.get) if ratios else fallback
    if not ratios or ratios[name] <= 1.0:
        name = fallback
    usual = defaults.get(name)
    return name, ("" if usual is None else f"the usual value is {show(usual)}")


def diverged(cfg: Any, knob: str, hint: str, where: str, what: str,
             checkpoint: str | os.PathLike | None) -> TrainingDiverged:
    """The error of a diverged run: ``knob=value: training diverged <where>: <what>; lower
    <knob> (<hint>); <which checkpoint is kept>``."""
    kept = (f"the last checkpoint, {os.fspath(checkpoint)}, was written before and is kept"
            if checkpoint is not None else "no checkpoint had been written yet")
    advice = f"lower {knob}" + (f" ({hint})" if hint else "")
    return TrainingDiverged(f"{knob}={show(getattr(cfg, knob))}: training diverged {where}: "
                            f"{what}; {advice}; {kept}")


def describe(values: Mapping[str, float], limit: int = 3) -> str:
    """``critic_loss=nan, q1=inf`` for the first ``limit`` entries."""
    items = [f"{name}={value}" for name, value in list(values.items())[:limit]]
    more = len(values) - limit
    return ", ".join(items) + (f", ... ({more} more)" if more > 0 else "")
