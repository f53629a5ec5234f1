"""DeepMind Control pixel environments for curl_moco (gymnasium API).

``make_env("cartpole-swingup", image_size=100, frame_stack=3)`` gives observations
``(9, 100, 100)`` uint8 and actions in [-1, 1]. Importing this package does not import
dm_control: the first use of a name below that needs it selects the headless GL backend
(:func:`envs.gl.select_gl_backend`) and then imports dm_control.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it. Everything is imported on first access (PEP 562), so that
# `python -m envs.registry` does not find the module pre-imported and `import envs` stays cheap.
_EXPORTS: dict[str, str] = {
    "CURL_ACTION_REPEAT": "curl_moco.envs.tasks",
    "CURL_TASKS": "curl_moco.envs.tasks",
    "DEFAULT_ACTION_REPEAT": "curl_moco.envs.tasks",
    "default_action_repeat": "curl_moco.envs.tasks",
    "list_tasks": "curl_moco.envs.tasks",
    "parse_task": "curl_moco.envs.tasks",
    "task_facts": "curl_moco.envs.tasks",
    "make_env": "curl_moco.envs.registry",
    "gym_id": "curl_moco.envs.gymnasium_ids",
    "register_envs": "curl_moco.envs.gymnasium_ids",
    "FrameStack": "curl_moco.envs.wrappers",
    "select_gl_backend": "curl_moco.envs.gl",
    "DMCPixelEnv": "curl_moco.envs.dmc",  # the only module that imports dm_control
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'envs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
