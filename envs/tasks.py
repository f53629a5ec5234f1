"""Task names ("domain-task") and ONE table of per-task facts.

:data:`CURL_TASKS` holds one row per task of CURL's DMControl benchmark: action repeat, CURL's
learning rate and batch size, the CURL paper's scores and other methods' scores. The presets
(``experiments/configs/curl_dmc.py``), the config defaults (``curl_moco.rl.config``), the plots
(``experiments/plot_results.py``) and ``scripts/run_curl_benchmark.sh`` all read it: adding a
task preset is one row here. :data:`DOMAIN_CAMERA` holds the camera of domains whose camera 0
does not show the agent.

Importing this module does not import dm_control; the list of suite tasks is read on first use
(after :func:`envs.gl.select_gl_backend` has chosen the GL backend).

``python -m envs.tasks`` prints the table; ``--curl-tasks`` prints CURL's task names on one line
(longest runs first: action repeat 2 before 8), for shell scripts.
"""

from __future__ import annotations

import argparse
import difflib
import functools
from dataclasses import dataclass, field

from curl_moco.io.errors import UnknownNameError

#: CURL's learning rate and batch size for tasks without their own (paper appendix).
CURL_LR, CURL_BATCH = 1e-3, 512

#: Action repeat for every task without a row. 4 is the value PlaNet, Dreamer and DrQ use as their
#: task-agnostic default (and the mode of CURL's six presets): at the suite's 10-25 ms control
#: steps it gives the agent a 40-100 ms reaction time, enough to learn smooth behaviour from
#: pixels while keeping each 1000-step episode at 250 rendered frames (rendering dominates the
#: cost), and it shrinks the credit-assignment horizon four-fold.
DEFAULT_ACTION_REPEAT = 4


@dataclass(frozen=True)
class TaskFacts:
    """What is known about one benchmark task. Scores are mean evaluation returns at
    environment steps (agent steps x action repeat)."""

    action_repeat: int
    lr: float = CURL_LR
    batch_size: int = CURL_BATCH
    #: CURL (Laskin et al. 2020), Table 1, pixel CURL, mean of 10 seeds: {env steps: return}.
    curl_scores: dict[int, float] = field(default_factory=dict)
    #: Other methods at 100k environment steps (CURL paper, Table 1): {method: return}. Its
    #: pixel SAC trains on unaugmented frames (no random crop), unlike `--curl-update-freq 0`;
    #: that table gives pixel SAC the same entries in its 100k and 500k rows (cartpole: 419 ± 40
    #: in both), so its 100k figure is not a measurement at 100k (the label says so).
    other_methods_100k: dict[str, float] = field(default_factory=dict)


#: CURL's six DMControl tasks (paper order). Action repeats: paper Table 3 / official scripts
#: (PlaNet's per-task choices); lr 2e-4 for cheetah; batch 128 for cartpole as in the public
#: script, 512 elsewhere.
CURL_TASKS: dict[str, TaskFacts] = {
    "finger-spin": TaskFacts(2, curl_scores={100_000: 767.0, 500_000: 926.0}),
    "cartpole-swingup": TaskFacts(
        8, batch_size=128, curl_scores={100_000: 582.0, 500_000: 841.0},
        other_methods_100k={"pixel SAC (no augmentation; same entry at 500k)": 419.0,
                            "SAC+AE": 311.0, "state SAC": 835.0}),
    "reacher-easy": TaskFacts(4, curl_scores={100_000: 538.0, 500_000: 929.0}),
    "cheetah-run": TaskFacts(4, lr=2e-4, curl_scores={100_000: 299.0, 500_000: 518.0}),
    "walker-walk": TaskFacts(2, curl_scores={100_000: 403.0, 500_000: 902.0}),
    "ball_in_cup-catch": TaskFacts(4, curl_scores={100_000: 769.0, 500_000: 959.0}),
}
#: ``{task: action repeat}`` of :data:`CURL_TASKS` (a view of the table, not a second fact).
CURL_ACTION_REPEAT: dict[str, int] = {t: f.action_repeat for t, f in CURL_TASKS.items()}

#: Camera per domain when ``camera_id`` is None; every other domain uses camera 0, its tracking
#: or overview camera. Quadruped's camera 0 ("global") looks from 10 m away, where the robot is a
#: few pixels at 84 px; CURL, DrQ and DrQ-v2 render its camera 2 ("y"), which tracks the body's
#: centre of mass from the side (quadruped.xml: 0 global, 1 x, 2 y, 3 egocentric).
DOMAIN_CAMERA: dict[str, int] = {"quadruped": 2}

_LIST_HINT = "run `python -m envs.registry` to list all tasks"


@functools.lru_cache(maxsize=1)
def _all_tasks() -> tuple[tuple[str, str], ...]:
    from curl_moco.envs.gl import select_gl_backend

    select_gl_backend()  # before dm_control is imported: it reads MUJOCO_GL once
    from dm_control import suite

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


def task_facts(name: str) -> TaskFacts:
    """The row of task ``name``; tasks outside CURL's benchmark get :data:`DEFAULT_ACTION_REPEAT`
    and CURL's general lr and batch, without scores. KeyError for unknown names."""
    parse_task(name)
    return CURL_TASKS.get(name, TaskFacts(DEFAULT_ACTION_REPEAT))


def default_action_repeat(name: str) -> int:
    """CURL's action repeat for its six benchmark tasks, :data:`DEFAULT_ACTION_REPEAT` (4)
    for every other known task; KeyError for unknown names."""
    return task_facts(name).action_repeat


def default_camera_id(domain: str) -> int:
    """Camera rendered when none is given: 2 for quadruped (as CURL/DrQ), else 0."""
    return DOMAIN_CAMERA.get(domain, 0)


def curl_tasks_longest_first() -> list[str]:
    """CURL's tasks ordered by action repeat (the longest runs first), ties in table order."""
    return sorted(CURL_TASKS, key=lambda t: CURL_TASKS[t].action_repeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m envs.tasks", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--curl-tasks", action="store_true",
                        help="print CURL's task names on one line, longest runs first")
    args = parser.parse_args(argv)
    if args.curl_tasks:
        print(" ".join(curl_tasks_longest_first()))
        return
    print(f"{'task':<18} {'repeat':>6} {'lr':>7} {'batch':>5}  CURL paper (env steps: return)")
    for name, facts in CURL_TASKS.items():
        scores = ", ".join(f"{s // 1000}k: {v:g}" for s, v in facts.curl_scores.items())
        print(f"{name:<18} {facts.action_repeat:>6} {facts.lr:>7g} {facts.batch_size:>5}  "
              f"{scores}")
    print(f"other tasks: action repeat {DEFAULT_ACTION_REPEAT}, lr {CURL_LR:g}, batch "
          f"{CURL_BATCH}; cameras: {DOMAIN_CAMERA} (else 0)")


if __name__ == "__main__":
    main()
