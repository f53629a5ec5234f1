"""gymnasium ids for every DeepMind Control suite task: ``curl_moco/<task>-v0``.

``import curl_moco`` calls :func:`register_envs`, after which

    env = gymnasium.make("curl_moco/cartpole-swingup-v0", image_size=84, frame_stack=3,
                         action_repeat=8)

builds the same environment as :func:`curl_moco.envs.registry.make_env` (every keyword of the
factory is accepted: ``image_size``, ``frame_stack``, ``action_repeat``, ``render_size``,
``camera_id``, ``seed``, ``task_kwargs``, ...): observations ``(3 * frame_stack, H, W)`` uint8,
actions in [-1, 1], ``render()`` an ``(render_size, render_size, 3)`` uint8 frame (render mode
``"rgb_array"``, the only one). dm_control ends its episodes itself (truncation after the
task's time limit), so no gymnasium ``TimeLimit`` is added.

Registering imports gymnasium but not dm_control: the ids come from :data:`SUITE_TASKS`, a copy
of dm_control's ``suite.ALL_TASKS`` (tests check that it matches the installed dm_control), and
dm_control is imported by the first ``gymnasium.make``.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "curl_moco"
VERSION = 0
#: dm_control 1.0.50's ``suite.ALL_TASKS`` as "domain-task" names, in its order.
SUITE_TASKS: tuple[str, ...] = (
    "acrobot-swingup", "acrobot-swingup_sparse", "ball_in_cup-catch", "cartpole-balance",
    "cartpole-balance_sparse", "cartpole-swingup", "cartpole-swingup_sparse",
    "cartpole-two_poles", "cartpole-three_poles", "cheetah-run", "dog-stand", "dog-walk",
    "dog-trot", "dog-run", "dog-fetch", "finger-spin", "finger-turn_easy", "finger-turn_hard",
    "fish-upright", "fish-swim", "hopper-stand", "hopper-hop", "humanoid-stand", "humanoid-walk",
    "humanoid-run", "humanoid-run_pure_state", "humanoid_CMU-stand", "humanoid_CMU-walk",
    "humanoid_CMU-run", "lqr-lqr_2_1", "lqr-lqr_6_2", "manipulator-bring_ball",
    "manipulator-bring_peg", "manipulator-insert_ball", "manipulator-insert_peg",
    "pendulum-swingup", "point_mass-easy", "point_mass-hard", "quadruped-walk", "quadruped-run",
    "quadruped-escape", "quadruped-fetch", "reacher-easy", "reacher-hard", "stacker-stack_2",
    "stacker-stack_4", "swimmer-swimmer6", "swimmer-swimmer15", "walker-stand", "walker-walk",
    "walker-run",
)
RENDER_MODES: tuple[str, ...] = ("rgb_array",)


def gym_id(task: str) -> str:
    """``"cartpole-swingup"`` -> ``"curl_moco/cartpole-swingup-v0"``."""
    return f"{NAMESPACE}/{task}-v{VERSION}"


def make_gym_env(task: str, render_mode: str | None = None, **kwargs: Any):
    """The entry point of every registered id: :func:`~curl_moco.envs.registry.make_env`
    (``task`` comes from the id, ``kwargs`` from ``gymnasium.make``). ``render_mode`` may be
    None or ``"rgb_array"`` (frames of ``render_size`` pixels either way)."""
    from curl_moco.envs.registry import make_env
    from curl_moco.io.errors import UsageError

    if render_mode not in (None, *RENDER_MODES):
        raise UsageError(f"render_mode={render_mode!r} is not supported: these environments "
                         f"render off-screen, use one of {RENDER_MODES} (or None)")
    return make_env(task, **kwargs)


def register_envs() -> list[str]:
    """Register ``curl_moco/<task>-v0`` for every task of :data:`SUITE_TASKS` (ids already
    registered are left alone, so calling it again is harmless); returns the ids."""
    import gymnasium

    ids = []
    for task in SUITE_TASKS:
        env_id = gym_id(task)
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=f"{__name__}:make_gym_env",
                               kwargs={"task": task})
        ids.append(env_id)
    return ids
