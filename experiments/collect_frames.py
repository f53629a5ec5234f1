"""Render a DeepMind Control frame data set: an image folder labelled by domain, plus the physics
state of every frame.

    python -m experiments.collect_frames --out data/dmc_frames \
        --domains cartpole,walker,cheetah,finger,reacher,ball_in_cup \
        --frames-per-domain 400 --episode-frames 50 --image-size 84

Writes ``OUT/<domain>/<NNNNN>.png`` (RGB, ``image_size`` square, what the agent's camera sees),
``OUT/<domain>/frames.npz`` (``files``, ``episode``, ``step``, ``state`` = flat physics state
qpos/qvel/act, ``internal_state`` = the task's proprioceptive observation, ``action`` = the action
applied after the frame) and ``OUT/manifest.json``. Frames of one episode are consecutive steps,
so the MoCo data set can stack ``k`` of them (``--frame-stack 3``) as the agent does.

Actions come from ``--policy random`` (uniform in [-1, 1], seeded) or ``--policy module:function``
with ``function(obs (3, H, W) uint8, rng: np.random.Generator, action_space) -> action``; it is
called once per domain on a blank frame at start-up, so a wrong signature or an action of the
wrong shape, not numbers or inf/NaN is refused before anything is written.
A domain name alone uses its CURL task (cartpole-swingup, walker-walk, ...); ``domain-task``
names pick any suite task. Rendering is real dm_control output; nothing is downloaded.

``--out`` must be empty or new: a folder holding files is refused (old and new frames would mix),
unless ``--overwrite`` is given and the folder is an earlier output of this script (it has
``manifest.json``, or the ``.collect_frames_incomplete`` marker of an interrupted run); its
contents are then deleted first. A setting the user can fix prints ``error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from curl_moco.io.checks import check_number, check_output_dir, check_seed
from curl_moco.io.console import setup_logging
from curl_moco.io.errors import ArgumentParser, UnknownNameError, UsageError, run_entry_point
from curl_moco.pretrain.data import INCOMPLETE_MARKER  # refused by the data set while present

log = logging.getLogger("curl_moco")

#: Task rendered for a bare domain name: CURL's benchmark task of that domain.
DEFAULT_TASKS: dict[str, str] = {
    "cartpole": "swingup", "walker": "walk", "cheetah": "run", "finger": "spin",
    "reacher": "easy", "ball_in_cup": "catch", "quadruped": "walk", "hopper": "stand",
    "pendulum": "swingup", "acrobot": "swingup", "fish": "swim", "humanoid": "walk",
}


def resolve_task(name: str) -> tuple[str, str]:
    """``"walker"`` -> ("walker", "walk"); ``"walker-run"`` -> ("walker", "run")."""
    from curl_moco.envs.tasks import list_tasks, parse_task

    if "-" in name:
        return parse_task(name)
    if name in DEFAULT_TASKS:
        return name, DEFAULT_TASKS[name]
    for task in list_tasks():
        domain, rest = parse_task(task)
        if domain == name:
            return domain, rest
    raise UnknownNameError(f"unknown domain={name!r} in --domains; run `python -m envs.registry` "
                           "to list tasks")


def load_policy(spec: str) -> Callable[[np.ndarray, np.random.Generator, Any], np.ndarray]:
    """``"random"`` or ``"module:function"``."""
    if spec == "random":
        def random_policy(obs, rng, space):
            return rng.uniform(space.low, space.high).astype(np.float32)

        return random_policy
    if ":" not in spec:
        raise UsageError(f"policy={spec!r} must be 'random' or 'module:function'")
    module, func = spec.split(":", 1)
    try:
        policy = getattr(importlib.import_module(module), func)
    except ImportError as error:
        raise UsageError(f"policy={spec!r}: module {module!r} cannot be imported ({error})"
                         ) from error
    except AttributeError as error:
        raise UsageError(f"policy={spec!r}: module {module!r} has no {func!r}") from error
    if not callable(policy):
        raise UsageError(f"policy={spec!r}: {func!r} is not a function")
    try:
        inspect.signature(policy).bind(None, None, None)
    except TypeError as error:
        raise UsageError(f"policy={spec!r}: {func}{inspect.signature(policy)} cannot be called "
                         f"as {func}(obs, rng, action_space) ({error})") from error
    except ValueError:  # no signature to inspect (some builtins): the first call tells
        pass
    return policy


def policy_action(act: Callable[[np.ndarray, np.random.Generator, Any], np.ndarray], spec: str,
                  obs: np.ndarray, rng: np.random.Generator, space: Any, task: str
                  ) -> np.ndarray:
    """``act(obs, rng, space)`` as a float32 action of ``space.shape``; a result that is not one
    (other shape, not numbers, inf/NaN) raises :class:`UsageError` naming the policy."""
    result = act(obs, rng, space)
    try:
        action = np.asarray(result, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise UsageError(f"policy={spec!r} returned {type(result).__name__} {result!r:.60} for "
                         f"{task}: not a numeric action of shape {space.shape}") from error
    if action.shape != space.shape:
        raise UsageError(f"policy={spec!r} returned an action of shape {action.shape} for "
                         f"{task}, which needs shape {space.shape} (values in [-1, 1])")
    if not np.isfinite(action).all():
        raise UsageError(f"policy={spec!r} returned a non-finite action {action.tolist()} for "
                         f"{task}")
    return action


def check_policy(spec: str, resolved: list[tuple[str, str]], image_size: int) -> None:
    """Call the policy once per domain on a blank frame ``(3, H, W)`` with the domain's action
    space, before anything is written: a wrong signature or action is refused up front."""
    import gymnasium as gym
    from dm_control import suite

    act = load_policy(spec)
    if spec == "random":  # ours: nothing to check
        return
    blank = np.zeros((3, image_size, image_size), dtype=np.uint8)
    for domain, task in resolved:
        env = suite.load(domain, task)
        space = gym.spaces.Box(-1.0, 1.0, shape=env.action_spec().shape, dtype=np.float32)
        env.close()
        policy_action(act, spec, blank, np.random.default_rng(0), space, f"{domain}-{task}")


def collect_domain(out: str, name: str, frames: int, episode_frames: int, image_size: int,
                   action_repeat: int | None, seed: int, policy: str) -> dict[str, Any]:
    """Render ``frames`` frames of task ``name`` into ``out/<domain>``; returns manifest info."""
    from curl_moco.envs.registry import make_env

    domain, task = resolve_task(name)
    folder = Path(out) / domain
    folder.mkdir(parents=True, exist_ok=True)
    act = load_policy(policy)
    env = make_env(f"{domain}-{task}", image_size=image_size, frame_stack=1,
                   action_repeat=action_repeat, seed=seed)
    rng = np.random.default_rng(seed)
    files, episodes, steps, states, internals, actions = [], [], [], [], [], []
    start = time.perf_counter()
    try:
        episode = 0
        while len(files) < frames:
            obs, info = env.reset(seed=seed * 100_003 + episode)
            for step in range(episode_frames):
                if len(files) >= frames:
                    break
                action = policy_action(act, policy, obs, rng, env.action_space, name)
                fname = f"{len(files):05d}.png"
                Image.fromarray(np.ascontiguousarray(obs.transpose(1, 2, 0))).save(folder / fname)
                files.append(fname)
                episodes.append(episode)
                steps.append(step)
                states.append(np.asarray(info["state"], dtype=np.float64))
                internals.append(np.asarray(info["internal_state"], dtype=np.float64))
                actions.append(action)
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            episode += 1
        repeat = int(env.action_repeat)
    finally:
        env.close()
    np.savez(folder / "frames.npz", files=np.array(files), episode=np.array(episodes),
             step=np.array(steps), state=np.stack(states), internal_state=np.stack(internals),
             action=np.stack(actions))
    seconds = time.perf_counter() - start
    log.info("%s-%s: %d frames, %d episodes, %.1f s", domain, task, len(files), episode, seconds)
    return {"domain": domain, "task": task, "frames": len(files), "episodes": episode,
            "action_repeat": repeat, "state_dim": int(states[0].shape[0]),
            "internal_state_dim": int(internals[0].shape[0]), "seconds": round(seconds, 2)}


MANIFEST = "manifest.json"


def prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` (unless ``overwrite`` and it is an earlier output of this
    script, which is then emptied); mark it incomplete until the manifest is written."""
    check_output_dir("out", out)
    if out.is_dir() and any(out.iterdir()):
        ours = (out / MANIFEST).is_file() or (out / INCOMPLETE_MARKER).is_file()
        if not overwrite:
            raise UsageError(f"out={str(out)!r} is not empty: new frames would mix with its files; "
                             "choose a new folder" + (", or pass --overwrite to replace this "
                                                      "frame data set" if ours else ""))
        if not ours:
            raise UsageError(f"out={str(out)!r} holds files but no {MANIFEST}: it is not a frame "
                             "data set written by this script, so --overwrite will not delete "
                             "it; choose a new folder or empty it yourself")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        log.info("--overwrite: emptied %s", out)
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text("collect_frames has not finished writing this folder\n")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (created; must be empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier frame data set in --out")
    p.add_argument("--domains", default="cartpole,walker,cheetah,finger,reacher,ball_in_cup",
                   help="comma-separated domains or domain-task names")
    p.add_argument("--frames-per-domain", type=int, default=400)
    p.add_argument("--episode-frames", type=int, default=50,
                   help="frames per episode before a reset (consecutive agent steps)")
    p.add_argument("--image-size", type=int, default=84, help="rendered side, pixels")
    p.add_argument("--action-repeat", type=int, default=None,
                   help="physics steps per frame (default: CURL's per task, else 4)")
    p.add_argument("--policy", default="random", help="'random' or 'module:function'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="domains rendered in parallel")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Render the data set ``argv`` describes; returns the manifest (raises
    :class:`~curl_moco.io.errors.UsageError` for a bad setting; :func:`cli` reports it)."""
    args = build_parser().parse_args(argv)
    setup_logging()
    for name in ("frames_per_domain", "episode_frames", "image_size", "workers"):
        check_number(name, getattr(args, name), low=1)
    check_number("image_size", args.image_size, high=4096)
    check_number("action_repeat", args.action_repeat, low=1)
    check_seed("seed", args.seed)
    names = [d.strip() for d in args.domains.split(",") if d.strip()]
    if not names:
        raise UsageError("domains is empty: pass e.g. --domains cartpole,walker")
    resolved = [resolve_task(n) for n in names]
    if len({d for d, _ in resolved}) != len(resolved):
        raise UsageError(f"domains={args.domains!r} names a domain twice (folders are per "
                         "domain)")
    check_policy(args.policy, resolved, args.image_size)  # fails here, not in a worker
    out = Path(args.out)
    prepare_output(out, args.overwrite)
    jobs = [(args.out, f"{d}-{t}", args.frames_per_domain, args.episode_frames, args.image_size,
             args.action_repeat, args.seed + 7919 * i, args.policy)
            for i, (d, t) in enumerate(resolved)]
    if args.workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            infos = list(pool.map(collect_domain, *zip(*jobs)))
    else:
        infos = [collect_domain(*job) for job in jobs]
    manifest = {"image_size": args.image_size, "episode_frames": args.episode_frames,
                "frames_per_domain": args.frames_per_domain, "policy": args.policy,
                "seed": args.seed, "domains": infos}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (out / INCOMPLETE_MARKER).unlink()
    return manifest


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 for a usage error."""
    return run_entry_point(main, argv, prog="experiments.collect_frames")


if __name__ == "__main__":
    sys.exit(cli())
