"""gymnasium.make("curl_moco/<task>-v0") after `import curl_moco`: every dm_control task, the
factory's options, gymnasium's environment checker; the import stays free of dm_control."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest

import curl_moco  # noqa: F401 - registers the ids
from curl_moco.envs.gymnasium_ids import SUITE_TASKS, gym_id
from curl_moco.envs.registry import make_env
from curl_moco.envs.tasks import list_tasks


def test_import_registers_every_task_without_importing_dm_control_or_torch():
    code = ("import sys, curl_moco, gymnasium; "
            "ids = [i for i in gymnasium.registry if i.startswith('curl_moco/')]; "
            "print(len(ids), 'dm_control' in sys.modules, 'torch' in sys.modules, "
            "'curl_moco/cartpole-swingup-v0' in ids)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(len(SUITE_TASKS)), "False", "False", "True"]


def test_registered_tasks_are_dm_controls_tasks():
    assert list(SUITE_TASKS) == list_tasks()
    assert gym_id("ball_in_cup-catch") == "curl_moco/ball_in_cup-catch-v0"


def test_make_takes_the_factorys_options_and_gives_its_observations():
    options = dict(image_size=48, frame_stack=2, action_repeat=4, render_size=32)
    env = gymnasium.make("curl_moco/cartpole-swingup-v0", **options)
    ref = make_env("cartpole-swingup", **options)
    try:
        assert env.observation_space.shape == (6, 48, 48)
        assert env.observation_space.dtype == np.uint8
        assert env.unwrapped.action_repeat == 4 and env.spec.id == "curl_moco/cartpole-swingup-v0"
        obs, _ = env.reset(seed=7)
        ref_obs, _ = ref.reset(seed=7)
        assert np.array_equal(obs, ref_obs)
        action = np.full(env.action_space.shape, 0.5, dtype=np.float32)
        obs, reward, *_ = env.step(action)
        ref_obs, ref_reward, *_ = ref.step(action)
        assert np.array_equal(obs, ref_obs) and reward == ref_reward
        assert env.render().shape == (32, 32, 3)
    finally:
        env.close()
        ref.close()


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("curl_moco/cartpole-swingup-v0", image_size=32, render_size=16,
                         render_mode="rgb_array")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
            check_env(env)  # what gymnasium.make returns (frame stack included)
    finally:
        env.close()


def test_unsupported_render_mode_is_a_usage_error():
    with pytest.raises(ValueError, match="render_mode='human' is not supported"):
        gymnasium.make("curl_moco/cartpole-swingup-v0", render_mode="human")
