"""Task names ("domain-task"), CURL's action-repeat presets and the :func:`make_env` factory.

Nothing here imports dm_control at module level: the task list is read from
``dm_control.suite.ALL_TASKS`` on first use (after ``envs.gl`` has chosen the GL backend).

``python -m envs.registry`` prints every task with its default action repeat.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from curl_moco.io.errors import UnknownNameError, UsageError

__all__ = [
    "CURL_ACTION_REPEAT",
    "DEFAULT_ACTION_REPEAT",
    "DEFAULT_CAMERA_ID",
    "default_action_repeat",
    "default_camera_id",
    "list_tasks",
    "make_env",
    "parse_task",
    "unknown_task_error",
]

#: Action repeats of the CURL paper (Laskin et al. 2020, Table 3 / official scripts), keyed by
#: task name. They follow PlaNet's per-task choices.
CURL_ACTION_REPEAT: dict[str, int] = {
    "finger-spin": 2,
    "cartpole-swingup": 8,
    "reacher-easy": 4,
    "cheetah-run": 4,
    "walker-walk": 2,
    "ball_in_cup-catch": 4,
}

#: Action repeat for every other task. 4 is the value PlaNet, Dreamer and DrQ use as their
#: task-agnostic default (and the mode of CURL's six presets): at the suite's 10-25 ms control
#: steps it gives the agent a 40-100 ms reaction time, enough to learn smooth behaviour from
#: pixels while keeping each 1000-step episode at 250 rendered frames (rendering dominates the
#: cost), and it shrinks the credit-assignment horizon four-fold.
DEFAULT_ACTION_REPEAT = 4

#: Camera per domain when ``camera_id`` is None; every other domain uses camera 0, its tracking
#: or overview camera. Quadruped's camera 0 ("global") looks from 10 m away, where the robot is a
#: few pixels at 84 px; CURL, DrQ and DrQ-v2 render its camera 2 ("y"), which tracks the body's
#: centre of mass from the side (quadruped.xml: 0 global, 1 x, 2 y, 3 egocentric).
DEFAULT_CAMERA_ID: dict[str, int] = {"quadruped": 2}

_LIST_HINT = "run `python -m envs.registry` to list all tasks"


@functools.lru_cache(maxsize=1)
def _all_tasks() -> tuple[tuple[str, str], ...]:
    from envs.dmc import suite  # selects the GL backend before dm_control is imported

    return tuple((str(d), str(t)) for d, t in suite.ALL_TASKS)


def list_tasks() -> list[str]:
    """Every dm_control suite task as "domain-task", e.g. "cartpole-swingup", "ball_in_cup-catch"
    (domain names keep dm_control's underscores; the first "-" separates domain from task)."""
    return [f"{d}-{t}" for d, t in _all_tasks()]


def unknown_task_error(name: str) -> KeyError:
    """A KeyError (and usage error) for an unknown task ``name`` that lists close matches and
    how to list all."""
    matches = difflib.get_close_matches(name, list_tasks(), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
    return UnknownNameError(f"unknown task {name!r}{hint} ({_LIST_HINT})")


def parse_task(name: str) -> tuple[str, str]:
    """``"ball_in_cup-catch" -> ("ball_in_cup", "catch")``; KeyError for unknown names."""
    if not isinstance(name, str):
        raise UnknownNameError(
            f"task name must be a string like 'cartpole-swingup', got {name!r}")
    domain, sep, task = name.partition("-")
    if not sep or (domain, task) not in _all_tasks():
        raise unknown_task_error(name)
    return domain, task


def default_action_repeat(name: str) -> int:
    """CURL's action repeat for its six benchmark tasks, :data:`DEFAULT_ACTION_REPEAT` (4)
    for every other known task; KeyError for unknown names."""
    parse_task(name)
    return CURL_ACTION_REPEAT.get(name, DEFAULT_ACTION_REPEAT)


def default_camera_id(domain: str) -> int:
    """Camera rendered when none is given: 2 for quadruped (as CURL/DrQ), else 0."""
    return DEFAULT_CAMERA_ID.get(domain, 0)


def make_env(
    name: str,
    *,
    image_size: int = 100,
    frame_stack: int = 3,
    action_repeat: int | None = None,
    seed: int | None = None,
    camera_id: int | None = None,
    render_size: int = 256,
    min_image_size: int | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    shadow_size: int | None = None,
) -> gym.Env:
    """Build a pixel environment for task ``name`` ("domain-task").

    Returns ``FrameStack(DMCPixelEnv(...), frame_stack)``: observations ``(3 * frame_stack,
    image_size, image_size)`` uint8, actions in [-1, 1]. Attributes: ``action_repeat``,
    ``frame_stack``, ``task_name``; ``render()`` gives ``(render_size, render_size, 3)`` uint8.

    ``action_repeat=None`` uses :func:`default_action_repeat`. ``seed`` seeds the task's first
    episode (``make_env(..., seed=s).reset()`` equals ``reset(seed=s)``) and the action space.
    ``min_image_size`` is the crop size used later (e.g. 84): a smaller ``image_size`` fails
    here rather than in the first update. ``task_kwargs`` go to ``dm_control.suite.load``
    (e.g. ``{"time_limit": 2.0}``); ``seed`` overrides its ``"random"``. ``shadow_size``: see
    :class:`envs.dmc.DMCPixelEnv` (None keeps the model's 2048; 1024 is ~1.5-2x faster on CPU).

    Raises:
        KeyError: unknown task name (with close matches).
        ValueError: a non-positive setting or ``image_size < min_image_size``, naming it.
    """
    from envs.dmc import DMCPixelEnv, check_positive_int, task_seed
    from envs.wrappers import FrameStack

    domain, task = parse_task(name)
    image_size = check_positive_int("image_size", image_size)
    frame_stack = check_positive_int("frame_stack", frame_stack)
    check_positive_int("render_size", render_size)
    if min_image_size is not None:
        min_image_size = check_positive_int("min_image_size", min_image_size)
        if image_size < min_image_size:
            raise UsageError(
                f"image_size={image_size} is smaller than min_image_size={min_image_size} "
                "(the crop size used later); render at least that large"
            )
    if action_repeat is None:
        action_repeat = default_action_repeat(name)
    action_repeat = check_positive_int("action_repeat", action_repeat)
    kwargs = dict(task_kwargs or {})
    if seed is not None:
        kwargs["random"] = task_seed(seed)
    env = DMCPixelEnv(
        domain,
        task,
        image_size=image_size,
        camera_id=camera_id,
        action_repeat=action_repeat,
        render_size=render_size,
        task_kwargs=kwargs,
        shadow_size=shadow_size,
    )
    try:
        wrapped = FrameStack(env, frame_stack)
    except BaseException:
        env.close()
        raise
    if seed is not None:
        wrapped.action_space.seed(seed)
        wrapped.observation_space.seed(seed)
    return wrapped


def main() -> None:
    """Print every task with its default action repeat (CURL presets marked)."""
    tasks = list_tasks()
    width = max(len(t) for t in tasks)
    print(f"{'task':<{width}}  action_repeat")
    for t in tasks:
        mark = "  (CURL)" if t in CURL_ACTION_REPEAT else ""
        print(f"{t:<{width}}  {default_action_repeat(t)}{mark}")
    print(f"\n{len(tasks)} tasks; make_env(name, ...) builds any of them.")


if __name__ == "__main__":
    main()
