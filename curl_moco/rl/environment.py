"""The environment a CURL-SAC config describes: task, render size, frame stack, action repeat,
camera and episode length, built the same way for training, evaluation and reuse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gymnasium as gym

    from curl_moco.rl.config import CurlSacConfig


def make_task_env(cfg: CurlSacConfig, seed: int | None = None, render_size: int | None = None,
                  camera_id: int | None = None) -> gym.Env:
    """The frame-stacked pixel environment of a resolved ``cfg`` (observations ``(3 x
    frame_stack, image_size, image_size)`` uint8). ``render_size`` is the side of
    ``render()`` frames (None: ``cfg.video_size``); ``camera_id`` None: ``cfg.camera_id``."""
    from curl_moco.envs.registry import make_env

    kwargs: dict[str, Any] = dict(
        image_size=cfg.image_size, frame_stack=cfg.frame_stack, action_repeat=cfg.action_repeat,
        seed=seed, camera_id=cfg.camera_id if camera_id is None else camera_id,
        render_size=cfg.video_size if render_size is None else render_size,
        min_image_size=cfg.crop_size)
    env = make_env(cfg.task, **kwargs)
    if cfg.episode_length is not None:
        # dm_control ends an episode after time_limit / control_timestep control steps;
        # half a step of margin makes the float division land on episode_length exactly.
        timestep = env.unwrapped.control_timestep
        env.close()
        limit = (cfg.episode_length - 0.5) * timestep
        env = make_env(cfg.task, task_kwargs={"time_limit": limit}, **kwargs)
    return env


@dataclass(frozen=True)
class TaskEnvFactory:
    """``make_env(seed=None, render_size=None, camera_id=None)``: environments matching a trained
    agent's config (see :func:`make_task_env`); close each one after use."""

    config: CurlSacConfig

    def __call__(self, seed: int | None = None, render_size: int | None = None,
                 camera_id: int | None = None) -> gym.Env:
        return make_task_env(self.config, seed, render_size, camera_id)
