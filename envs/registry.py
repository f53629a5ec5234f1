"""The :func:`make_env` factory: a "domain-task" name -> a frame-stacked pixel environment.

Task names and per-task facts (action repeat, camera, CURL's hyperparameters and scores) live in
:mod:`envs.tasks`; nothing here imports dm_control at module level (``envs.dmc`` is imported on
the first :func:`make_env`, after ``envs.gl`` has chosen the GL backend).

``python -m envs.registry`` prints every task with its default action repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from curl_moco.envs.tasks import CURL_TASKS, default_action_repeat, list_tasks, parse_task
from curl_moco.io.errors import UsageError

__all__ = ["main", "make_env"]


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
    from curl_moco.envs.dmc import DMCPixelEnv, check_positive_int, task_seed
    from curl_moco.envs.wrappers import FrameStack

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
        mark = "  (CURL)" if t in CURL_TASKS else ""
        print(f"{t:<{width}}  {default_action_repeat(t)}{mark}")
    print(f"\n{len(tasks)} tasks; make_env(name, ...) builds any of them.")


if __name__ == "__main__":
    main()
