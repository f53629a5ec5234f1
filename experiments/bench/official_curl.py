"""Run the unmodified official CURL code (github.com/MishaLaskin/curl) inside a benchmark.

The code is not part of this project and is never committed: clone it anywhere and pass its
folder (``--official-curl DIR``, or the ``CURL_OFFICIAL_DIR`` environment variable). Its
``curl_sac.py`` and ``utils.py`` are imported as they are; ``utils.py`` imports ``gym`` (only
for a wrapper class that the update never uses) and ``skimage`` (``view_as_windows``, used by
its crops): a missing ``gym`` is replaced by an empty stand-in module, ``skimage`` must be
installed (``pip install scikit-image``) so that the crops cost what they cost there.

:func:`official_update` builds the official agent with CURL's hyper-parameters and its replay
buffer filled with the same transitions as ours, and returns one update as a closure:
``ReplayBuffer.sample_cpc()`` (NumPy crops of obs, next_obs and positive, float after cropping)
+ ``CurlSacAgent.update`` (critic, actor/alpha every 2nd, soft updates every 2nd, CURL with the
encoder stepped by two optimisers).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from curl_moco.io.errors import UsageError

ENV_VAR = "CURL_OFFICIAL_DIR"


class OfficialCodeError(UsageError):
    """The official code could not be found or imported (message says why and how to fix)."""


def locate(path: str | None) -> Path | None:
    """The official code's folder from ``path`` or ``$CURL_OFFICIAL_DIR`` (None: not asked)."""
    path = path or os.environ.get(ENV_VAR)
    if not path:
        return None
    folder = Path(path).expanduser().resolve()
    if not (folder / "curl_sac.py").is_file() or not (folder / "utils.py").is_file():
        raise OfficialCodeError(f"--official-curl {path}: no curl_sac.py and utils.py there "
                                "(clone github.com/MishaLaskin/curl into that folder)")
    return folder


def import_official(folder: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """``(curl_sac, utils)`` modules of the official code in ``folder``."""
    try:
        importlib.import_module("skimage.util.shape")
    except ImportError as error:
        raise OfficialCodeError("the official CURL crops need scikit-image: "
                                "pip install scikit-image") from error
    gym = sys.modules.get("gym")
    if gym is None:
        try:
            gym = importlib.import_module("gym")
        except ImportError:
            gym = sys.modules["gym"] = types.ModuleType("gym")
    if not hasattr(gym, "Wrapper"):
        gym.Wrapper = object  # utils.FrameStack subclasses it; the update never uses it
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("curl_sac"), importlib.import_module("utils")
    finally:
        sys.path.remove(str(folder))


class _SilentLogger:
    """The official update logs to ``L.log(...)`` every ``log_interval`` steps."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass


def official_update(folder: Path, *, obses: np.ndarray, next_obses: np.ndarray,
                    actions: np.ndarray, rewards: np.ndarray, not_dones: np.ndarray,
                    batch_size: int, crop_size: int, device: torch.device,
                    feature_dim: int = 50, hidden_dim: int = 1024, num_layers: int = 4,
                    num_filters: int = 32) -> Callable[[], None]:
    """One official CURL update per call, on replay arrays ``obses, next_obses (N, 3k, H, W)``
    uint8, ``actions (N, A)``, ``rewards, not_dones (N, 1)`` float32.

    Hyper-parameters are CURL's DMC values (its ``train.py`` flags for cartpole): lr 1e-3,
    alpha lr 1e-4 with beta 0.5, initial temperature 0.1, critic tau 0.01, encoder tau 0.05,
    actor and target updates every 2 steps."""
    curl_sac, utils = import_official(folder)
    capacity, channels = obses.shape[0], obses.shape[1]
    agent = curl_sac.CurlSacAgent(
        obs_shape=(channels, crop_size, crop_size), action_shape=actions.shape[1:],
        device=device, hidden_dim=hidden_dim, discount=0.99, init_temperature=0.1,
        alpha_lr=1e-4, alpha_beta=0.5, actor_lr=1e-3, actor_beta=0.9, critic_lr=1e-3,
        critic_beta=0.9, critic_tau=0.01, critic_target_update_freq=2, encoder_type="pixel",
        encoder_feature_dim=feature_dim, encoder_lr=1e-3, encoder_tau=0.05,
        num_layers=num_layers, num_filters=num_filters, log_interval=100, actor_update_freq=2,
        curl_latent_dim=128)
    replay = utils.ReplayBuffer(obs_shape=obses.shape[1:], action_shape=actions.shape[1:],
                                capacity=capacity, batch_size=batch_size, device=device,
                                image_size=crop_size)
    replay.obses[:], replay.next_obses[:] = obses, next_obses
    replay.actions[:], replay.rewards[:], replay.not_dones[:] = actions, rewards, not_dones
    replay.idx, replay.full = 0, True
    logger = _SilentLogger()
    step = [1]  # train.py counts from init_steps upwards; logging happens on multiples of 100

    def update() -> None:
        agent.update(replay, logger, step[0])
        step[0] += 1
    return update
