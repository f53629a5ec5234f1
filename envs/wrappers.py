"""Gymnasium wrappers for pixel control: channel-wise frame stacking and action repeat.

gymnasium >= 1.0 wrappers no longer forward unknown attributes to the wrapped env, so these
wrappers expose ``action_repeat``, ``frame_stack`` and ``task_name`` explicitly (the RL trainer
relies on them), taking them from the wrapped env when it has them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["FrameStack", "PixelWrapper"]


def _check_k(name: str, k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise ValueError(f"{name}={k!r} must be a positive integer (>= 1)")
    return int(k)


class PixelWrapper(gym.Wrapper):
    """Base wrapper forwarding ``action_repeat`` (default 1), ``frame_stack`` (default 1) and
    ``task_name`` (default None) from the wrapped environment."""

    @property
    def action_repeat(self) -> int:
        env = self.env
        return int(env.get_wrapper_attr("action_repeat")) if env.has_wrapper_attr(
            "action_repeat"
        ) else 1

    @property
    def frame_stack(self) -> int:
        env = self.env
        return int(env.get_wrapper_attr("frame_stack")) if env.has_wrapper_attr(
            "frame_stack"
        ) else 1

    @property
    def task_name(self) -> str | None:
        env = self.env
        return env.get_wrapper_attr("task_name") if env.has_wrapper_attr("task_name") else None


class FrameStack(PixelWrapper):
    """Concatenate the last ``k`` observations along the channel axis.

    Wrapped observations ``(C, H, W)`` become ``(C * k, H, W)`` with the oldest frame first
    (channels ``[0:C]``) and the newest last. At reset the first frame fills all ``k`` slots.
    Every returned observation is a fresh array.
    """

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        self.k = _check_k("frame_stack", k)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
            raise ValueError(
                f"FrameStack needs a (C, H, W) Box observation space, got {space}"
            )
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([space.low] * self.k, axis=0),
            high=np.concatenate([space.high] * self.k, axis=0),
            dtype=space.dtype,
        )
        self._frames: deque[np.ndarray] = deque(maxlen=self.k)

    @property
    def frame_stack(self) -> int:
        """Frames per observation: ``k`` times any stacking done below this wrapper."""
        return self.k * super().frame_stack

    def _stacked(self) -> np.ndarray:
        return np.concatenate(list(self._frames), axis=0)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames.clear()
        for _ in range(self.k):
            self._frames.append(obs)
        return self._stacked(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(obs)
        return self._stacked(), reward, terminated, truncated, info
