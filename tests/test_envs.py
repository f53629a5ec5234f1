"""Tests for envs/: DMCPixelEnv, wrappers and the task registry.

Rendering is real (software GL, tens of frames per second on 2 cores), so images are small and
episodes short; every environment is closed by its fixture or a ``with closing(...)``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from dm_control import suite
from dm_control.mujoco import engine
from gymnasium.utils.env_checker import check_env

import curl_moco.envs as envs
from curl_moco.envs.dmc import DMCPixelEnv, scale_action
from curl_moco.envs.registry import make_env
from curl_moco.envs.tasks import (
    CURL_ACTION_REPEAT,
    default_action_repeat,
    default_camera_id,
    list_tasks,
    parse_task,
)
from curl_moco.envs.wrappers import FrameStack

REPO = Path(__file__).resolve().parents[1]
SIZE = 48  # small frames keep software rendering cheap


@pytest.fixture
def cartpole() -> Iterator[DMCPixelEnv]:
    env = DMCPixelEnv("cartpole", "swingup", image_size=SIZE, action_repeat=4)
    yield env
    env.close()


@pytest.fixture
def stacked() -> Iterator[gym.Env]:
    env = make_env("cartpole-swingup", image_size=SIZE, frame_stack=3, seed=0)
    yield env
    env.close()


@pytest.fixture
def render_counter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Records (height, width) of every MuJoCo camera render, wherever it is called from."""
    calls: list[tuple[int, int]] = []
    original = engine.Camera.render

    def counting_render(self: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        calls.append((self.height, self.width))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine.Camera, "render", counting_render)
    return calls


def _raw_dmc(domain: str, task: str, seed: int, **task_kwargs: Any) -> Any:
    """The plain dm_control environment, seeded like ``reset(seed=seed)``."""
    return suite.load(domain, task, task_kwargs={"random": seed, **task_kwargs})


def _check_env_quietly(env: gym.Env) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    # Expected: no registry spec (alternative render modes untested) and, for wrapped envs,
    # the "not the unwrapped env" notice. Anything else is a real complaint.
    other = [
        str(w.message)
        for w in caught
        if "spec" not in str(w.message) and "unwrapped" not in str(w.message)
    ]
    assert other == []


# --------------------------------------------------------------------------- gymnasium API
def test_check_env_raw(cartpole: DMCPixelEnv) -> None:
    _check_env_quietly(cartpole)


def test_check_env_stacked(stacked: gym.Env) -> None:
    _check_env_quietly(stacked)


def test_spaces_and_attributes(stacked: gym.Env) -> None:
    assert stacked.observation_space == gym.spaces.Box(0, 255, (9, SIZE, SIZE), np.uint8)
    assert stacked.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert stacked.action_repeat == 8  # CURL's preset for cartpole-swingup
    assert stacked.frame_stack == 3
    assert stacked.task_name == "cartpole-swingup"
    raw = stacked.unwrapped
    assert isinstance(raw, DMCPixelEnv)
    assert (raw.action_repeat, raw.frame_stack, raw.camera_id) == (8, 1, 0)
    assert raw.metadata["render_fps"] == round(1 / (0.01 * 8))


# --------------------------------------------------------------------------- observations
def test_observation_is_the_camera_image(cartpole: DMCPixelEnv) -> None:
    obs, info = cartpole.reset(seed=3)
    assert obs.shape == (3, SIZE, SIZE) and obs.dtype == np.uint8
    expected = cartpole.physics.render(SIZE, SIZE, camera_id=0)  # (H, W, 3)
    np.testing.assert_array_equal(obs, expected.transpose(2, 0, 1))
    assert obs.std() > 5  # a real scene, not a blank frame
    obs2, *_ = cartpole.step(np.ones(1, dtype=np.float32))
    np.testing.assert_array_equal(
        obs2, cartpole.physics.render(SIZE, SIZE, camera_id=0).transpose(2, 0, 1)
    )
    assert not np.array_equal(obs, obs2)  # the cart moved


def test_frame_stack_order_on_real_env(stacked: gym.Env) -> None:
    obs0, _ = stacked.reset(seed=1)
    np.testing.assert_array_equal(obs0[0:3], obs0[3:6])
    np.testing.assert_array_equal(obs0[3:6], obs0[6:9])
    obs1, *_ = stacked.step(np.ones(1, dtype=np.float32))
    np.testing.assert_array_equal(obs1[0:6], obs0[3:9])  # shifted by one frame
    newest = stacked.unwrapped.physics.render(SIZE, SIZE, camera_id=0).transpose(2, 0, 1)
    np.testing.assert_array_equal(obs1[6:9], newest)


def test_smaller_shadow_map_gives_nearly_the_same_image() -> None:
    with (
        closing(DMCPixelEnv("walker", "walk", image_size=64)) as default,
        closing(DMCPixelEnv("walker", "walk", image_size=64, shadow_size=1024)) as small,
    ):
        assert (default.shadow_size, small.shadow_size) == (2048, 1024)
        a, _ = default.reset(seed=0)
        b, _ = small.reset(seed=0)
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.mean() < 0.5  # grey levels; the frames are otherwise identical scenes
        assert a.std() > 5 and b.std() > 5


def test_render_frame_for_videos(render_counter: list[tuple[int, int]]) -> None:
    # 720 exceeds cartpole's 640x480 offscreen buffer: the env enlarges it.
    with closing(DMCPixelEnv("cartpole", "swingup", image_size=SIZE, render_size=720)) as env:
        env.reset(seed=0)
        frame = env.render()
        assert frame.shape == (720, 720, 3) and frame.dtype == np.uint8
        assert frame.std() > 5
        assert render_counter == [(SIZE, SIZE), (720, 720)]


# --------------------------------------------------------------------------- action repeat
def test_action_repeat_sums_rewards_and_renders_once(
    cartpole: DMCPixelEnv, render_counter: list[tuple[int, int]]
) -> None:
    seed, actions = 5, [0.75, -0.25, 1.0]  # exact in float32
    cartpole.reset(seed=seed)
    assert len(render_counter) == 1
    raw = _raw_dmc("cartpole", "swingup", seed)
    raw.reset()
    dt = cartpole.control_timestep
    for i, a in enumerate(actions, start=1):
        _, reward, terminated, truncated, info = cartpole.step(np.array([a], np.float32))
        expected = sum(raw.step(np.array([a])).reward for _ in range(4))
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert cartpole.physics.data.time == pytest.approx(4 * i * dt)
        assert len(render_counter) == 1 + i  # one render per agent step, not per physics step
        assert not terminated and not truncated
        assert info["discount"] == 1.0
    np.testing.assert_array_equal(cartpole.physics.get_state(), raw.physics.get_state())
    raw.physics.free()


def test_full_episode_with_action_repeat_8_is_125_steps(
    render_counter: list[tuple[int, int]],
) -> None:
    # shadow_size 512: 126 software renders at a quarter of the default shadow-map cost.
    env = make_env("cartpole-swingup", image_size=16, frame_stack=1, seed=0, shadow_size=512)
    with closing(env):
        env.reset()
        flags = []
        for _ in range(200):
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            flags.append((terminated, truncated))
            if terminated or truncated:
                break
        assert len(flags) == 125  # 1000 control steps / 8
        assert flags[-1] == (False, True)  # a time limit is truncation, never termination
        assert all(f == (False, False) for f in flags[:-1])
        assert info["discount"] == 1.0
        assert env.unwrapped.physics.data.time == pytest.approx(10.0)
        assert len(render_counter) == 126
        with pytest.raises(RuntimeError, match="reset"):
            env.step(env.action_space.sample())


def test_episode_end_inside_repeat_loop_stops_early() -> None:
    # time_limit 0.5 s = 50 control steps of 10 ms; action_repeat 8 -> 6 full steps + 2 steps.
    seed = 2
    with closing(
        DMCPixelEnv(
            "cartpole", "swingup", image_size=16, action_repeat=8,
            task_kwargs={"time_limit": 0.5},
        )
    ) as env:
        env.reset(seed=seed)
        raw = _raw_dmc("cartpole", "swingup", seed, time_limit=0.5)
        raw.reset()
        raw_rewards = []
        while True:
            ts = raw.step(np.array([0.5]))
            raw_rewards.append(ts.reward)
            if ts.last():
                break
        raw.physics.free()
        assert len(raw_rewards) == 50
        rewards, truncated = [], False
        while not truncated:
            _, r, terminated, truncated, _ = env.step(np.array([0.5], np.float32))
            assert not terminated
            rewards.append(r)
        assert len(rewards) == 7
        assert rewards[-1] == pytest.approx(sum(raw_rewards[48:]))
        assert sum(rewards) == pytest.approx(sum(raw_rewards))
        assert env.physics.data.time == pytest.approx(0.5)


# --------------------------------------------------------------------------- seeding and info
def _rollout(env: gym.Env, seed: int, actions: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, *_ = env.step(a)
        frames.append(obs)
        rewards.append(r)
    return frames, rewards


def test_same_seed_same_observations() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, size=(4, 1)).astype(np.float32)
    with (
        closing(make_env("cartpole-swingup", image_size=SIZE, frame_stack=2)) as a,
        closing(make_env("cartpole-swingup", image_size=SIZE, frame_stack=2)) as b,
    ):
        frames_a, rewards_a = _rollout(a, 11, actions)
        frames_b, rewards_b = _rollout(b, 11, actions)
        for fa, fb in zip(frames_a, frames_b, strict=True):
            np.testing.assert_array_equal(fa, fb)
        assert rewards_a == rewards_b
        # Re-seeding the same env reproduces the episode too.
        frames_c, _ = _rollout(a, 11, actions)
        np.testing.assert_array_equal(frames_c[-1], frames_a[-1])


def test_different_seeds_different_initial_states(cartpole: DMCPixelEnv) -> None:
    states = [cartpole.reset(seed=s)[1]["state"] for s in (0, 1, 2)]
    assert not np.allclose(states[0], states[1])
    assert not np.allclose(states[1], states[2])
    np.testing.assert_array_equal(cartpole.reset(seed=1)[1]["state"], states[1])


def test_make_env_seed_seeds_first_episode(cartpole: DMCPixelEnv) -> None:
    _, info_reset_seed = cartpole.reset(seed=7)
    with closing(make_env("cartpole-swingup", image_size=SIZE, frame_stack=1, seed=7)) as env:
        _, info = env.reset()
        np.testing.assert_array_equal(info["state"], info_reset_seed["state"])
        # Same initial state as plain dm_control with task_kwargs={"random": 7}.
        raw = _raw_dmc("cartpole", "swingup", 7)
        raw.reset()
        np.testing.assert_array_equal(info["state"], raw.physics.get_state())
        raw.physics.free()


def test_large_seeds_are_accepted_and_deterministic(cartpole: DMCPixelEnv) -> None:
    big = 2**40 + 3
    s1 = cartpole.reset(seed=big)[1]["state"]
    s2 = cartpole.reset(seed=big)[1]["state"]
    s3 = cartpole.reset(seed=big + 1)[1]["state"]
    np.testing.assert_array_equal(s1, s2)
    assert not np.allclose(s1, s3)


def test_info_carries_state(cartpole: DMCPixelEnv) -> None:
    _, info = cartpole.reset(seed=0)
    assert set(info) == {"state", "discount", "internal_state"}
    physics = cartpole.physics
    np.testing.assert_array_equal(info["state"], np.concatenate([physics.data.qpos,
                                                                 physics.data.qvel]))
    assert info["state"].dtype == np.float64
    _, _, _, _, info = cartpole.step(np.zeros(1, np.float32))
    obs_dict = cartpole.dm_env.task.get_observation(physics)
    np.testing.assert_array_equal(
        info["internal_state"], np.concatenate([np.ravel(v) for v in obs_dict.values()])
    )
    assert info["internal_state"].shape == (5,)  # cartpole: position (3) + velocity (2)
    assert info["discount"] == 1.0
    info["state"][:] = 123.0  # the caller owns the arrays
    assert not np.any(physics.get_state() == 123.0)


# --------------------------------------------------------------------------- actions
def test_scale_action_maps_onto_bounds() -> None:
    low, high = np.array([-1.0, -0.8, 0.0, -1e10]), np.array([1.0, 0.8, 2.0, 1e10])
    np.testing.assert_allclose(scale_action(np.array([-1, -1, -1, -1.0]), low, high),
                               [-1, -0.8, 0.0, -1.0])
    np.testing.assert_allclose(scale_action(np.array([1, 1, 1, 0.5]), low, high),
                               [1, 0.8, 2.0, 0.5])  # unbounded dims pass through
    np.testing.assert_allclose(scale_action(np.array([0, 0.5, 0, 3.0]), low, high),
                               [0, 0.4, 1.0, 1.0])  # clipped to [-1, 1] first


def test_quadruped_actions_reach_physics_bounds_and_camera_2() -> None:
    with closing(DMCPixelEnv("quadruped", "walk", image_size=16)) as env:
        assert env.camera_id == 2  # CURL/DrQ camera for quadruped
        low, high = env.action_bounds
        spec = env.dm_env.action_spec()
        np.testing.assert_array_equal(low, spec.minimum)
        np.testing.assert_array_equal(high, spec.maximum)
        assert not np.allclose(low, -1.0) and not np.allclose(high, 1.0)
        env.reset(seed=0)
        n = env.action_space.shape[0]
        env.step(-np.ones(n, np.float32))
        np.testing.assert_allclose(env.physics.data.ctrl, low)
        env.step(np.full(n, 5.0, np.float32))  # out of range: clipped to +1
        np.testing.assert_allclose(env.physics.data.ctrl, high)
        with pytest.raises(ValueError, match="action has shape"):
            env.step(np.zeros(n + 1, np.float32))


# --------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"action_repeat": 0}, r"action_repeat=0 "),
        ({"action_repeat": -2}, r"action_repeat=-2 "),
        ({"action_repeat": 1.5}, r"action_repeat=1.5 "),
        ({"frame_stack": 0}, r"frame_stack=0 "),
        ({"image_size": 0}, r"image_size=0 "),
        ({"image_size": 64, "min_image_size": 84}, r"image_size=64 .*min_image_size=84"),
        ({"render_size": 0}, r"render_size=0 "),
        ({"shadow_size": 0}, r"shadow_size=0 "),
        ({"camera_id": 2}, r"camera_id=2 is invalid for cartpole-swingup.* 2 fixed cameras"),
        ({"camera_id": -2}, r"camera_id=-2 is invalid"),
        ({"seed": -1}, r"seed=-1 "),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make_env("cartpole-swingup", **kwargs)


def test_free_camera_and_other_cameras_are_valid() -> None:
    for cam in (-1, 1):
        with closing(make_env("cartpole-swingup", image_size=16, camera_id=cam)) as env:
            assert env.unwrapped.camera_id == cam


def test_bad_settings_on_raw_env_and_wrappers(cartpole: DMCPixelEnv) -> None:
    with pytest.raises(ValueError, match="action_repeat=0"):
        DMCPixelEnv("cartpole", "swingup", action_repeat=0)
    with pytest.raises(ValueError, match="image_size=-1"):
        DMCPixelEnv("cartpole", "swingup", image_size=-1)
    with pytest.raises(ValueError, match="frame_stack=0"):
        FrameStack(cartpole, 0)
    with pytest.raises(KeyError, match="cartpole-swingupp"):
        DMCPixelEnv("cartpole", "swingupp")


def test_close_is_idempotent_and_final() -> None:
    env = DMCPixelEnv("cartpole", "swingup", image_size=16)
    env.reset(seed=0)
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.step(np.zeros(1, np.float32))


# --------------------------------------------------------------------------- wrappers (fake env)
class _CountingEnv(gym.Env):
    """Observation (2, 3, 3) filled with the step count; reward = step count; ends at step 5."""

    observation_space = gym.spaces.Box(0, 255, (2, 3, 3), np.uint8)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self) -> None:
        self.t = 0
        self.task_name = "fake-count"

    def _obs(self) -> np.ndarray:
        return np.full((2, 3, 3), self.t, np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any):
        self.t += 1
        return self._obs(), float(self.t), False, self.t >= 5, {"t": self.t}


def test_frame_stack_wrapper_values() -> None:
    env = FrameStack(_CountingEnv(), 3)
    assert env.observation_space.shape == (6, 3, 3)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[:, 0, 0], [0, 0, 0, 0, 0, 0])
    obs, *_ = env.step(np.zeros(1))
    np.testing.assert_array_equal(obs[:, 0, 0], [0, 0, 0, 0, 1, 1])
    obs, *_ = env.step(np.zeros(1))
    obs, *_ = env.step(np.zeros(1))
    np.testing.assert_array_equal(obs[:, 0, 0], [1, 1, 2, 2, 3, 3])  # oldest first
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[:, 0, 0], [0] * 6)
    assert (env.frame_stack, env.action_repeat, env.task_name) == (3, 1, "fake-count")


# --------------------------------------------------------------------------- registry
def test_registry_covers_every_suite_task() -> None:
    tasks = list_tasks()
    assert len(tasks) == len(suite.ALL_TASKS) == len(set(tasks))
    assert {"ball_in_cup-catch", "point_mass-easy", "cartpole-swingup"} <= set(tasks)
    for name, (domain, task) in zip(tasks, suite.ALL_TASKS, strict=True):
        assert parse_task(name) == (domain, task)
    assert CURL_ACTION_REPEAT == {
        "finger-spin": 2, "cartpole-swingup": 8, "reacher-easy": 4,
        "cheetah-run": 4, "walker-walk": 2, "ball_in_cup-catch": 4,
    }
    for name in tasks:
        expected = CURL_ACTION_REPEAT.get(name, 4)
        assert default_action_repeat(name) == expected
    assert default_camera_id("quadruped") == 2 and default_camera_id("walker") == 0
    assert envs.make_env is make_env and envs.list_tasks is list_tasks
    assert envs.CURL_ACTION_REPEAT is CURL_ACTION_REPEAT
    assert envs.default_action_repeat is default_action_repeat


def test_every_domain_builds_with_default_camera() -> None:
    # One task per domain (building all 51 takes ~8 s here); no rendering, so no GL cost.
    seen: set[str] = set()
    for name in list_tasks():
        domain, task = parse_task(name)
        if domain in seen:
            continue
        seen.add(domain)
        with closing(DMCPixelEnv(domain, task, image_size=16)) as env:
            assert -1 <= env.camera_id < env.physics.model.ncam
            assert env.action_space.shape == env.dm_env.action_spec().shape
    assert len(seen) == len({d for d, _ in suite.ALL_TASKS})


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("cartpole-swingupp", "'cartpole-swingup'"),
        ("pointmass-easy", "'point_mass-easy'"),
        ("ball_in_cup_catch", "'ball_in_cup-catch'"),
        ("cartpole", "'cartpole-"),
    ],
)
def test_unknown_name_suggests_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(KeyError) as excinfo:
        make_env(name)
    message = str(excinfo.value)
    assert suggestion in message
    assert "python -m envs.registry" in message
    with pytest.raises(KeyError):
        default_action_repeat(name)


def test_registry_cli_lists_tasks_with_repeats() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "envs.registry"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {
        line.split()[0]: int(line.split()[1])
        for line in proc.stdout.splitlines()
        if "-" in line and line.split()[1:2] and line.split()[1].isdigit()
    }
    assert set(rows) == set(list_tasks())
    assert rows["cartpole-swingup"] == 8 and rows["walker-walk"] == 2
    assert rows["quadruped-walk"] == 4
    assert "RuntimeWarning" not in proc.stderr
