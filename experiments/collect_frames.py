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
``manifest.json``, or the ``.collect_frames_incomplete`` marker of an interrupted run): then the
files these records say it wrote are deleted first, and nothing else (files of yours inside a
domain folder are refused, since the data set would read them). One collect_frames per folder at
a time (a lock: a second one is refused, naming the first's PID). A setting the user can fix
prints ``error: ...`` and exits 2.
"""

from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import argparse
import importlib
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from curl_moco.io.atomic import atomic_write
from curl_moco.io.checks import check_number, check_output_dir, check_seed, quote
from curl_moco.io.console import setup_logging
from curl_moco.io.errors import ArgumentParser, UnknownNameError, UsageError, run_entry_point
from curl_moco.io.lock import LOCK_NAME, FolderLock
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


def prepare_output(out: Path, overwrite: bool, domains: list[str], frames: int) -> None:
    """Refuse a non-empty ``out`` (unless ``overwrite`` and it is an earlier output of this
    script: then its own files are deleted, see :func:`own_files`); mark it incomplete, with the
    files it is about to write, until the manifest is written. The caller holds ``out``'s lock
    (its ``.lock`` file is not counted)."""
    present = [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []
    if present:
        ours = (out / MANIFEST).is_file() or (out / INCOMPLETE_MARKER).is_file()
        if not overwrite:
            raise UsageError(f"out={quote(out)} is not empty: new frames would mix with its "
                             "files; choose a new folder" + (", or pass --overwrite to replace "
                                                             "this frame data set" if ours else ""))
        if not ours:
            raise UsageError(f"out={quote(out)} holds files but no {MANIFEST}: it is not a frame "
                             "data set written by this script, so --overwrite will not delete "
                             "it; choose a new folder or empty it yourself")
        remove_own_files(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / INCOMPLETE_MARKER, json.dumps(
        {"note": "collect_frames has not finished writing this folder", "domains":
         [{"domain": d, "frames": frames} for d in domains]}) + "\n")


def own_files(out: Path) -> set[Path] | None:
    """The files an earlier run wrote in ``out``, from its ``manifest.json`` (or, for a run that
    was interrupted, its incomplete marker): the marker and manifest, and per domain
    ``<NNNNN>.png`` and ``frames.npz``. None when neither record can be read."""
    for name in (MANIFEST, INCOMPLETE_MARKER):
        try:
            record = json.loads((out / name).read_text())
            domains = [(str(d["domain"]), int(d["frames"])) for d in record["domains"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        files = {out / MANIFEST, out / INCOMPLETE_MARKER}
        for domain, frames in domains:
            if domain in ("", ".", "..") or "/" in domain:
                return None
            files |= {out / domain / f"{i:05d}.png" for i in range(frames)}
            files.add(out / domain / "frames.npz")
        return files
    return None


def remove_own_files(out: Path) -> None:
    """``--overwrite``: delete the files an earlier run of this script wrote (and the folders it
    leaves empty), nothing else. Refused, before deleting anything, when files it did not write
    are inside a class folder (the data set would read them with the new frames)."""
    own = own_files(out)
    if own is None:
        raise UsageError(f"out={quote(out)}: neither {MANIFEST} nor {INCOMPLETE_MARKER} says which "
                         "files collect_frames wrote there (an older version?), so --overwrite "
                         "will not delete anything; empty the folder yourself")
    foreign = []
    for folder, dirs, files in os.walk(out):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if here != out:
            foreign += [here / f for f in files if here / f not in own]
    if foreign:
        shown = ", ".join(quote(p.relative_to(out)) for p in sorted(foreign)[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise UsageError(f"out={quote(out)} holds {shown}{more}, which collect_frames did not "
                         "write: --overwrite deletes only its own files, and the data set would "
                         "read these with the new frames; move them away or choose a new folder")
    for path in sorted(own):
        path.unlink(missing_ok=True)
    for folder in {p.parent for p in own if p.parent != out}:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    kept = [p.name for p in out.iterdir() if p.name != LOCK_NAME]
    log.info("--overwrite: deleted the earlier frame data set in %s%s", out,
             f" (kept {', '.join(sorted(kept))})" if kept else "")


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
    check_output_dir("out", out)
    created = not out.exists()
    lock = FolderLock(out, "out").acquire()  # one collect_frames per folder
    try:
        try:
            prepare_output(out, args.overwrite, [d for d, _ in resolved], args.frames_per_domain)
        except UsageError:
            if created:
                lock.release()
                out.rmdir()  # refused: leave nothing behind
            raise
        jobs = [(args.out, f"{d}-{t}", args.frames_per_domain, args.episode_frames,
                 args.image_size, args.action_repeat, args.seed + 7919 * i, args.policy)
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
        atomic_write(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        (out / INCOMPLETE_MARKER).unlink()
    finally:
        lock.release()
    return manifest


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 for a usage error."""
    return run_entry_point(main, argv, prog="experiments.collect_frames")


if __name__ == "__main__":
    sys.exit(cli())
