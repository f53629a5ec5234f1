"""The one episode loop of evaluation: the trainer's periodic evaluations and the evaluate command
both play their episodes here, so that the same agent, environment and seed give the same return
in both (``experiments/evaluate.py`` reproduces ``eval.csv`` by construction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``policy(obs (3k, H, W) uint8) -> action (A,) float32 in [-1, 1]``
Policy = Callable[[np.ndarray], np.ndarray]
#: Called after the reset (``reward`` None, ``step`` 0) and after every agent step.
StepHook = Callable[["StepView"], None]


@dataclass(frozen=True)
class StepView:
    """What a hook sees: the observation ``(3k, H, W)`` uint8 after agent step ``step`` (0 = the
    reset), that step's reward (None at the reset) and the return so far."""

    obs: np.ndarray
    step: int
    reward: float | None
    episode_return: float


@dataclass(frozen=True)
class EpisodeResult:
    """Return (sum of rewards) and length (agent steps) of one episode."""

    episode_return: float
    length: int


class EpisodeAborted(Exception):  # noqa: N818 - control flow, not an error
    """``should_stop`` asked to abandon the episode."""


def play_episode(env: Any, policy: Policy, seed: int, *, on_step: StepHook | None = None,
                 should_stop: Callable[[], bool] | None = None) -> EpisodeResult:
    """Play one episode of ``env`` reset with ``seed``, acting with ``policy`` until it
    terminates or is truncated. Raises :class:`EpisodeAborted` when ``should_stop()`` becomes
    true before a step."""
    obs, _ = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    if on_step is not None:
        on_step(StepView(obs, 0, None, 0.0))
    while not done:
        if should_stop is not None and should_stop():
            raise EpisodeAborted
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        length += 1
        done = terminated or truncated
        if on_step is not None:
            on_step(StepView(obs, length, float(reward), total))
    return EpisodeResult(total, length)


def real_time_fps(env: Any) -> float:
    """Frames per second of a video with one frame per agent step played in real time:
    ``1 / (control timestep x action repeat)`` (cartpole: 1 / (0.01 s x 8) = 12.5)."""
    base = env.unwrapped
    return 1.0 / (float(base.control_timestep) * int(base.action_repeat))
