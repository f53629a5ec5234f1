"""DeepMind Control suite tasks as gymnasium environments that observe pixels.

Importing this module selects the headless OpenGL backend (``envs.gl``) before dm_control is
imported, because dm_control reads ``MUJOCO_GL`` only once, at import time.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from curl_moco.envs.gl import select_gl_backend
from curl_moco.envs.tasks import default_camera_id, unknown_task_error
from curl_moco.io.console import quiet_third_party
from curl_moco.io.errors import UsageError

select_gl_backend()
quiet_third_party()  # dm_control's and PyOpenGL's start-up lines, MuJoCo's settotalmass warning

from dm_control import suite  # noqa: E402
from dm_control.mujoco import Camera  # noqa: E402

__all__ = ["DMCPixelEnv", "check_positive_int", "scale_action", "task_seed"]

#: Bounds at or beyond this magnitude count as "unbounded" (dm_control's LQR tasks use +-1e10).
_UNBOUNDED = 1e6


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise ValueError naming the setting if it is not >= 1."""
    if isinstance(value, bool):
        raise UsageError(f"{name}={value!r} must be a positive integer")
    try:
        ivalue = operator.index(value)
    except TypeError:
        raise UsageError(f"{name}={value!r} must be a positive integer") from None
    if ivalue <= 0:
        raise UsageError(f"{name}={value!r} must be a positive integer (>= 1)")
    return ivalue


def task_seed(seed: int) -> int:
    """The ``numpy.random.RandomState`` seed for a gymnasium seed: ``seed`` itself when it fits
    in 32 bits (so ``reset(seed=s)`` matches ``suite.load(..., task_kwargs={"random": s})``),
    else a 32-bit value derived from it. ValueError naming ``seed`` if it is not an int >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"seed={seed!r} must be a non-negative integer")
    seed = int(seed)
    if seed < 2**32:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1)[0])


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map a normalised action in [-1, 1] (clipped first) affinely onto ``[low, high]``.

    Shapes: all ``(A,)``. Dimensions whose bounds are infinite or huge (|bound| >= 1e6, e.g.
    dm_control's LQR tasks) are passed through unscaled: an affine map onto +-1e10 would make
    every normalised action an enormous force.
    """
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    bounded = np.isfinite(low) & np.isfinite(high) & (np.abs(low) < _UNBOUNDED) & (
        np.abs(high) < _UNBOUNDED
    )
    scaled = low + (a + 1.0) * 0.5 * (high - low)
    return np.where(bounded, scaled, a)


class DMCPixelEnv(gym.Env):
    """One dm_control suite task observed through a camera, as a gymnasium environment.

    Observation: ``(3, image_size, image_size)`` uint8 RGB, rendered once per agent step, after
    the last of ``action_repeat`` physics control steps. Action: ``(A,)`` float32 in [-1, 1],
    mapped affinely onto the actuators' bounds (see :func:`scale_action`).
    Reward: the sum of dm_control rewards over the repeated control steps (each in [0, 1]).
    ``truncated`` is True when the episode hits its time limit (dm_control's last step with
    discount > 0; 1000 control steps for most tasks); ``terminated`` is True only for tasks that
    end early with discount 0 (the LQR tasks). ``info``: ``"state"`` flat physics state
    (qpos, qvel, act; float64), ``"discount"`` (float), ``"internal_state"`` dm_control's
    proprioceptive observation flattened in key order (float64; what state-based SAC observes).

    ``shadow_size`` (None: the model's own, 2048 in most suite models) is the side of MuJoCo's
    shadow map. With software GL (Mesa llvmpipe) that 2048x2048 pass is most of the cost of a frame:
    1024 renders cartpole/walker/finger about 1.5-2x faster with 100 px frames differing by
    < 0.02 grey levels on average from the default's. Keep None to reproduce CURL's images.

    Attributes the trainer can rely on: ``action_repeat``, ``frame_stack`` (1), ``task_name``
    ("domain-task"), ``domain``, ``task``, ``image_size``, ``camera_id``, ``render_size``,
    ``shadow_size``, ``physics``, ``dm_env``, ``control_timestep`` (seconds per control step).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        image_size: int = 100,
        camera_id: int | None = None,
        action_repeat: int = 1,
        render_size: int = 256,
        task_kwargs: Mapping[str, Any] | None = None,
        shadow_size: int | None = None,
    ) -> None:
        self.image_size = check_positive_int("image_size", image_size)
        self.render_size = check_positive_int("render_size", render_size)
        self.action_repeat = check_positive_int("action_repeat", action_repeat)
        self.frame_stack = 1
        if shadow_size is not None:
            shadow_size = check_positive_int("shadow_size", shadow_size)
        if (domain, task) not in suite.ALL_TASKS:
            raise unknown_task_error(f"{domain}-{task}")
        self.domain, self.task = domain, task
        self.task_name = f"{domain}-{task}"
        if camera_id is None:
            camera_id = default_camera_id(domain)
        self.render_mode = "rgb_array"

        self._env = suite.load(domain, task, task_kwargs=dict(task_kwargs or {}))
        self._cameras: dict[tuple[int, int], Camera] = {}
        self._closed = False
        physics = self._env.physics
        ncam = int(physics.model.ncam)
        if isinstance(camera_id, bool) or not isinstance(camera_id, int | np.integer):
            self.close()
            raise UsageError(f"camera_id={camera_id!r} must be an integer")
        if not -1 <= camera_id < ncam:
            self.close()
            raise UsageError(
                f"camera_id={camera_id} is invalid for {self.task_name}: its model has {ncam} "
                f"fixed cameras, so use 0..{ncam - 1}, or -1 for the free camera"
            )
        self.camera_id = int(camera_id)
        # The offscreen framebuffer (640x480 in most suite models) bounds every rendered frame;
        # enlarge it before the first render creates the GL context.
        vis = physics.model.vis.global_
        size = max(self.image_size, self.render_size)
        vis.offwidth = max(int(vis.offwidth), size)
        vis.offheight = max(int(vis.offheight), size)
        if shadow_size is not None:
            physics.model.vis.quality.shadowsize = shadow_size
        self.shadow_size = int(physics.model.vis.quality.shadowsize)

        spec = self._env.action_spec()
        self._action_low = np.asarray(spec.minimum, dtype=np.float64).reshape(spec.shape)
        self._action_high = np.asarray(spec.maximum, dtype=np.float64).reshape(spec.shape)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=spec.shape, dtype=np.float32)
        self.observation_space = gym.spaces.Box(
            0, 255, shape=(3, self.image_size, self.image_size), dtype=np.uint8
        )
        self.control_timestep = float(self._env.control_timestep())
        self.metadata = {
            **self.metadata,
            "render_fps": max(1, round(1.0 / (self.control_timestep * self.action_repeat))),
        }
        self._needs_reset = True

    # ------------------------------------------------------------------ properties
    @property
    def physics(self) -> Any:
        """The dm_control ``Physics`` (do not keep it past ``close()``)."""
        return self._env.physics

    @property
    def dm_env(self) -> Any:
        """The wrapped ``dm_control.rl.control.Environment``."""
        return self._env

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The physics' actuator bounds ``(low (A,), high (A,))`` that [-1, 1] maps onto."""
        return self._action_low.copy(), self._action_high.copy()

    # ------------------------------------------------------------------ rendering
    def _camera(self, size: int, camera_id: int | None = None) -> Camera:
        camera_id = self.camera_id if camera_id is None else camera_id
        cam = self._cameras.get((size, camera_id))
        if cam is None:
            cam = Camera(self._env.physics, height=size, width=size, camera_id=camera_id)
            self._cameras[size, camera_id] = cam
        return cam

    @property
    def num_cameras(self) -> int:
        """Fixed cameras of the model (ids ``0 .. num_cameras - 1``; -1 is the free camera)."""
        return int(self._env.physics.model.ncam)

    def _observe(self) -> np.ndarray:
        """Render the observation camera: ``(3, image_size, image_size)`` uint8."""
        frame = self._camera(self.image_size).render()
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def render(self, camera_id: int | None = None) -> np.ndarray:
        """A ``(render_size, render_size, 3)`` uint8 frame of the current state (for videos),
        seen by ``camera_id`` (None: the observation's camera; -1: the free camera)."""
        self._check_open()
        if camera_id is not None and not -1 <= camera_id < self.num_cameras:
            raise UsageError(f"camera_id={camera_id} is invalid for {self.task_name}: its model "
                             f"has cameras 0..{self.num_cameras - 1} (and -1, the free camera)")
        return np.array(self._camera(self.render_size, camera_id).render(), dtype=np.uint8,
                        copy=True)

    # ------------------------------------------------------------------ gymnasium API
    def _info(self, time_step: Any) -> dict[str, Any]:
        obs = time_step.observation
        internal = [np.asarray(v, dtype=np.float64).ravel() for v in obs.values()]
        discount = 1.0 if time_step.discount is None else float(time_step.discount)
        return {
            "state": np.array(self._env.physics.get_state(), dtype=np.float64, copy=True),
            "discount": discount,
            "internal_state": np.concatenate(internal) if internal else np.zeros(0),
        }

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.task_name} environment was closed")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``seed`` reseeds the task's RandomState exactly as
        ``suite.load(..., task_kwargs={"random": seed})`` would; without a seed the task's
        random stream simply continues (so seeded-then-unseeded resets are reproducible)."""
        self._check_open()
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(task_seed(seed))
        time_step = self._env.reset()
        self._needs_reset = False
        return self._observe(), self._info(time_step)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` for ``action_repeat`` control steps (fewer if the episode ends),
        then render once."""
        self._check_open()
        if self._needs_reset:
            raise RuntimeError(f"{self.task_name}: call reset() before step() (episode is over)")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(
                f"action has shape {a.shape}, expected {self.action_space.shape} for "
                f"{self.task_name}"
            )
        physical = scale_action(a, self._action_low, self._action_high)
        reward = 0.0
        time_step = None
        for _ in range(self.action_repeat):
            time_step = self._env.step(physical)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        assert time_step is not None
        terminated = truncated = False
        if time_step.last():
            self._needs_reset = True
            if float(time_step.discount) > 0.0:
                truncated = True
            else:
                terminated = True
        return self._observe(), reward, terminated, truncated, self._info(time_step)

    def close(self) -> None:
        """Free the cameras, the GL/MuJoCo render contexts and the physics. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for cam in self._cameras.values():
            cam.scene.free()
        self._cameras.clear()
        self._env.physics.free()
        super().close()

    def __repr__(self) -> str:
        return (
            f"DMCPixelEnv({self.task_name!r}, image_size={self.image_size}, "
            f"camera_id={getattr(self, 'camera_id', None)}, action_repeat={self.action_repeat})"
        )
