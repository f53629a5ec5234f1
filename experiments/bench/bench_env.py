"""Environment steps per second (physics + render + frame stack) per GL backend and image size.

Ours renders once per agent step (after the last action repeat). The baseline renders after every
physics step, as a generic "render every step, then repeat the action" wrapper does. Figures are
environment steps (agent steps x action repeat) per second, like the paper's step counts.

    python -m experiments.bench.bench_env [--seconds 8] [--task cartpole-swingup]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from curl_moco.experiments.bench.common import (
    command_line,
    machine_info,
    print_table,
    write_results,
)

BACKENDS = ("egl", "osmesa")


def measure(task: str, image_size: int, seconds: float, render_every_physics_step: bool) -> dict:
    """Runs in a child process whose MUJOCO_GL is already set."""
    import numpy as np

    from curl_moco.envs import make_env

    env = make_env(task, image_size=image_size, frame_stack=3, seed=0)
    repeat = env.action_repeat
    physics = env.unwrapped.physics if hasattr(env.unwrapped, "physics") else None
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    agent_steps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        action = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
        if render_every_physics_step and physics is not None:
            for _ in range(repeat - 1):  # the extra renders a per-physics-step wrapper makes
                physics.render(height=image_size, width=image_size, camera_id=0)
        _, _, terminated, truncated, _ = env.step(action)
        agent_steps += 1
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - started
    env.close()
    return {"env_steps_per_s": agent_steps * repeat / elapsed,
            "agent_steps_per_s": agent_steps / elapsed, "action_repeat": repeat}


def _child(backend: str, args: argparse.Namespace, size: int, baseline: bool) -> dict | None:
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    command = [sys.executable, "-m", "experiments.bench.bench_env", "--child", "--task", args.task,
               "--seconds", str(args.seconds), "--size", str(size)]
    if baseline:
        command.append("--baseline")
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=120 + 4 * args.seconds)
    if done.returncode != 0:
        print(f"[{backend}] unavailable: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cartpole-swingup")
    parser.add_argument("--seconds", type=float, default=8.0, help="time per measurement")
    parser.add_argument("--sizes", type=int, nargs="*", default=[84, 100])
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.task, args.size, args.seconds, args.baseline)))
        return

    rows, records = [], []
    for backend in args.backends:
        for size in args.sizes:
            ours = _child(backend, args, size, baseline=False)
            if ours is None:
                break
            base = _child(backend, args, size, baseline=True)
            ratio = ours["env_steps_per_s"] / base["env_steps_per_s"] if base else float("nan")
            rows.append([backend, size, ours["action_repeat"], ours["env_steps_per_s"],
                         base["env_steps_per_s"] if base else float("nan"), ratio])
            records.append({"backend": backend, "image_size": size, "ours": ours,
                            "baseline_render_every_physics_step": base, "speedup": ratio})
    print_table(f"bench_env: {args.task}, frame stack 3, environment steps per second",
                ["backend", "pixels", "repeat", "ours env-steps/s", "baseline env-steps/s",
                 "ratio"], rows)
    write_results("bench_env", {"machine": machine_info(),
                                "command": command_line("experiments.bench.bench_env", argv),
                                "task": args.task,
                                "seconds_per_measurement": args.seconds, "results": records},
                  args.out_dir)


if __name__ == "__main__":
    main()
