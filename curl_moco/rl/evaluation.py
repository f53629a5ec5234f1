"""Watch and measure a trained CURL-SAC agent: the library side of ``experiments/evaluate.py``.

:func:`evaluate_run` loads a run folder (or checkpoint), plays episodes with the same loop as the
trainer's evaluations (:func:`curl_moco.rl.rollout.play_episode`) and writes, into ``out``:

- ``episodes.csv``: ``episode, seed, return, length`` (length in agent steps);
- ``summary.json``: mean, std, min, max, episodes, the checkpoint's step, the seeds, and the
  training log's evaluation at that step when these episodes replay it;
- videos of the first ``record`` episodes at the real-time frame rate: ``episode_<i>.mp4`` and/or
  ``grid.mp4`` (``--gif``: ``.gif`` beside them), each frame the chosen cameras side by side,
  optionally with the agent's view (the centre crop the network sees, newest frame of the stack,
  upscaled) and a step / reward / return overlay;
- ``still.png`` (``--still``): the first episode's middle frame.

Seeds: by default the episodes are the ones the training run's evaluation at the checkpoint's
step played (same seeds, deterministic policy), so the returns equal that row of ``eval.csv``.
``seed`` plays other episodes, seeded from it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curl_moco.contrastive.augment import center_crop
from curl_moco.io.atomic import atomic_write
from curl_moco.io.checks import check_output_dir, check_positive, check_seed
from curl_moco.io.config import knob
from curl_moco.io.errors import UsageError
from curl_moco.io.frames import grid, overlay_text, side_by_side, upscale_nearest
from curl_moco.io.video import write_gif, write_png, write_video
from curl_moco.rl.config import MAX_RENDER_SIZE, MIN_VIDEO_SIZE
from curl_moco.rl.environment import make_task_env
from curl_moco.rl.load import SavedRun, build_agent, read_run
from curl_moco.rl.rollout import StepView, play_episode, real_time_fps
from curl_moco.rl.trainer import derived_seed, eval_episode_seed

log = logging.getLogger("curl_moco.rl")

VIDEO_MODES = ("episodes", "grid", "both", "none")
#: Stream of the generator of stochastic actions (distinct from the trainer's streams).
_STOCHASTIC_STREAM = 17


@dataclass
class EvaluateConfig:
    """Evaluate and record a trained CURL-SAC agent."""

    run: str = knob("", "run folder of train_dmc (or its checkpoint.pt)")
    episodes: int | None = knob(None, "episodes to play; None = the run's eval_episodes")
    stochastic: bool = knob(False, "sample actions from the policy instead of its mean")
    seed: int | None = knob(None, "None = replay the training run's evaluation at the "
                            "checkpoint (same episodes: the returns equal eval.csv's row); "
                            "else play episodes seeded from this seed")
    task: str | None = knob(None, "another task with the agent's action space (e.g. "
                            "cartpole-balance for a cartpole-swingup agent); None = the run's")
    out: str | None = knob(None, "output folder; None = <run>/evaluate/step_<checkpoint step>")
    video: str = knob("episodes", "episodes: one mp4 per recorded episode; grid: one mp4 of "
                      "the recorded episodes tiled; both; none", choices=VIDEO_MODES)
    record: int = knob(3, "episodes recorded (the first N; 0 = no video)")
    video_size: int | None = knob(None, "side of each rendered panel in pixels; None = the "
                                  "run's video_size")
    camera: tuple[int, ...] = knob((), "camera ids rendered side by side (-1 = free camera); "
                                   "empty = the run's camera")
    agent_view: bool = knob(False, "add the agent's view: the centre crop of the observation "
                            "the network sees (newest frame), upscaled")
    overlay: bool = knob(False, "write step, reward and return on the frames")
    gif: bool = knob(False, "also write each video as an animated GIF")
    still: bool = knob(False, "write still.png: the middle frame of the first episode")
    fps: float | None = knob(None, "video frame rate; None = real time (1 / (control timestep "
                             "x action repeat): cartpole 12.5)")
    grid_columns: int | None = knob(None, "columns of the grid video; None = about square")
    device: str = knob("auto", "auto | cpu | cuda | cuda:N")


@dataclass
class EvaluationReport:
    """What :func:`evaluate_run` measured and wrote."""

    out: Path
    checkpoint: Path
    checkpoint_step: int
    task: str
    returns: list[float]
    lengths: list[int]
    seeds: list[int]
    replays_training_eval: bool
    training_eval_returns: list[float] | None
    fps: float
    files: list[Path] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        """The content of ``summary.json``."""
        r = np.asarray(self.returns, dtype=np.float64)
        return {
            "mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
            "max": float(r.max()), "episodes": len(self.returns),
            "checkpoint_step": self.checkpoint_step, "checkpoint": str(self.checkpoint),
            "task": self.task, "seeds": self.seeds, "lengths": self.lengths,
            "returns": self.returns, "fps": self.fps,
            "replays_training_evaluation": self.replays_training_eval,
            "training_evaluation_returns": self.training_eval_returns,
        }


@dataclass
class _Plan:
    """A checked evaluation: everything resolved before any work."""

    cfg: EvaluateConfig
    run: SavedRun
    env_config: Any
    out: Path
    episodes: int
    video_size: int
    cameras: tuple[int, ...]
    seeds: list[int]
    replays: bool


def plan(cfg: EvaluateConfig) -> _Plan:
    """Check every setting and the run before any work or file; :class:`UsageError` naming the
    setting otherwise."""
    if not cfg.run:
        raise UsageError("run is required: pass --run RUN_DIR (a train_dmc run folder)")
    check_positive(cfg, "episodes", "video_size", "fps", "grid_columns")
    if cfg.record < 0:
        raise UsageError(f"record={cfg.record} must be >= 0 (0 = no video)")
    if cfg.seed is not None:
        check_seed("seed", cfg.seed)
    if cfg.video not in VIDEO_MODES:
        raise UsageError(f"video={cfg.video!r} is not one of {VIDEO_MODES}")
    run = read_run(cfg.run)
    trained = run.config
    size = cfg.video_size if cfg.video_size is not None else trained.video_size
    if not MIN_VIDEO_SIZE <= size <= MAX_RENDER_SIZE:
        raise UsageError(f"video_size={size} is outside {MIN_VIDEO_SIZE}..{MAX_RENDER_SIZE} "
                         "pixels (the renderer's framebuffer limit); choose a size in that range")
    env_config = trained
    if cfg.task is not None and cfg.task != trained.task:
        env_config = dataclasses.replace(trained, task=cfg.task)
        from curl_moco.envs.tasks import parse_task

        parse_task(cfg.task)  # unknown names: close matches
    cameras = tuple(cfg.camera)
    _check_environment(env_config, trained.task, run.action_dim, cameras, size)
    if not cameras:
        cameras = (None,)  # the run's camera
    episodes = cfg.episodes if cfg.episodes is not None else trained.eval_episodes
    replays = cfg.seed is None and run.eval_round is not None and env_config is trained
    if cfg.seed is None:
        rounds = run.eval_round if run.eval_round is not None else 0
        seeds = [eval_episode_seed(trained.seed, rounds, i) for i in range(episodes)]
    else:
        seeds = [eval_episode_seed(cfg.seed, 0, i) for i in range(episodes)]
    if cfg.out is not None:
        out = Path(cfg.out)
    else:
        out = run.checkpoint.parent / "evaluate" / f"step_{run.env_steps}"
    check_output_dir("out", out)
    return _Plan(cfg, run, env_config, out, episodes, size, cameras, seeds, replays)


def _check_environment(env_config: Any, trained_task: str, action_dim: int,
                       cameras: tuple[int, ...], size: int) -> None:
    """The task's action space matches the agent and the cameras exist (builds the env once)."""
    env = make_task_env(env_config, render_size=size)
    try:
        shape = env.action_space.shape
        if int(np.prod(shape)) != action_dim:
            from curl_moco.envs.tasks import list_tasks, parse_task

            domain = parse_task(trained_task)[0]
            same = [t for t in list_tasks() if t.startswith(f"{domain}-") and t != trained_task]
            raise UsageError(
                f"task={env_config.task!r} has {int(np.prod(shape))} action dimensions, the agent "
                f"(trained on {trained_task}) has {action_dim}: choose a task with its action "
                f"space ({', '.join(same) or 'none in its domain'})")
        ncam = env.unwrapped.num_cameras
        for camera in cameras:
            if not -1 <= camera < ncam:
                raise UsageError(f"camera={camera}: {env_config.task} has cameras 0..{ncam - 1} "
                                 "(and -1, the free camera)")
    finally:
        env.close()


def agent_view(obs: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """What the network sees of ``obs (3k, H, W)`` uint8: its centre ``crop_size`` crop (the
    crop :meth:`CurlSacAgent.act` takes), newest frame, as ``(size, size, 3)`` uint8."""
    crop = center_crop(torch.as_tensor(obs).unsqueeze(0), crop_size)[0, -3:]
    return upscale_nearest(crop.permute(1, 2, 0).numpy(), size)


def evaluate_run(cfg: EvaluateConfig) -> EvaluationReport:
    """Check, load, play and write (see the module docstring)."""
    p = plan(cfg)
    agent, trained = build_agent(p.run, cfg.device)
    if cfg.stochastic:
        agent.generator.manual_seed(derived_seed(p.seeds[0], _STOCHASTIC_STREAM))
    env = make_task_env(p.env_config, render_size=p.video_size)
    p.out.mkdir(parents=True, exist_ok=True)
    fps = cfg.fps or real_time_fps(env)
    recorded = min(cfg.record, p.episodes) if cfg.video != "none" else 0
    report = EvaluationReport(
        out=p.out, checkpoint=p.run.checkpoint, checkpoint_step=p.run.env_steps,
        task=p.env_config.task, returns=[], lengths=[], seeds=p.seeds,
        replays_training_eval=p.replays,
        training_eval_returns=list(p.run.eval_returns) if p.replays else None, fps=fps)
    kept: list[list[np.ndarray]] = []  # recorded episodes' frames, for the grid

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, deterministic=not cfg.stochastic)

    try:
        for i, seed in enumerate(p.seeds):
            frames: list[np.ndarray] = []
            want_frames = i < recorded or (cfg.still and i == 0)

            def on_step(view: StepView, frames: list[np.ndarray] = frames) -> None:
                frames.append(_compose(env, view, p, trained.crop_size))

            episode = play_episode(env, policy, seed, on_step=on_step if want_frames else None)
            report.returns.append(episode.episode_return)
            report.lengths.append(episode.length)
            log.info("episode %d: return %.1f over %d agent steps (seed %d)", i,
                     episode.episode_return, episode.length, seed)
            if cfg.still and i == 0:
                report.files.append(write_png(p.out / "still.png", frames[len(frames) // 2]))
            if i < recorded:
                if cfg.video in ("episodes", "both"):
                    report.files += _write_clip(p.out / f"episode_{i:03d}", frames, fps, cfg.gif)
                if cfg.video in ("grid", "both"):
                    kept.append(frames)
        if kept:
            report.files += _write_clip(p.out / "grid", grid(kept, cfg.grid_columns), fps,
                                        cfg.gif)
    finally:
        env.close()
    _write_tables(report)
    return report


def _compose(env: Any, view: StepView, p: _Plan, crop_size: int) -> np.ndarray:
    """One video frame: the cameras side by side (+ the agent's view) (+ the overlay)."""
    base = env.unwrapped
    panels = [base.render(camera_id=camera) for camera in p.cameras]
    if p.cfg.agent_view:
        panels.append(agent_view(view.obs, crop_size, p.video_size))
    frame = side_by_side(panels)
    if p.cfg.overlay:
        reward = "-" if view.reward is None else f"{view.reward:.2f}"
        frame = overlay_text(frame, [f"step {view.step}", f"reward {reward}",
                                     f"return {view.episode_return:.1f}"])
    return frame


def _write_clip(stem: Path, frames: list[np.ndarray], fps: float, gif: bool) -> list[Path]:
    files = [write_video(stem.with_suffix(".mp4"), frames, fps=fps)]
    if gif:
        files.append(write_gif(stem.with_suffix(".gif"), frames, fps))
    return files


def _write_tables(report: EvaluationReport) -> None:
    rows = zip(range(len(report.returns)), report.seeds, report.returns, report.lengths)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["episode", "seed", "return", "length"])
    writer.writerows(rows)
    atomic_write(report.out / "episodes.csv", table.getvalue())
    summary = report.summary
    summary["files"] = [str(path) for path in report.files]
    atomic_write(report.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    report.files += [report.out / "episodes.csv", report.out / "summary.json"]


def describe(report: EvaluationReport) -> str:
    """The command's final message."""
    s = report.summary
    lines = [f"{report.task}, checkpoint at {report.checkpoint_step} environment steps: return "
             f"{s['mean']:.1f} +- {s['std']:.1f} (min {s['min']:.1f}, max {s['max']:.1f}) over "
             f"{s['episodes']} episodes"]
    if report.replays_training_eval and report.training_eval_returns:
        logged = report.training_eval_returns
        count = min(len(logged), len(report.returns))
        same = report.returns[:count] == logged[:count]
        note = ("the same episodes, same returns" if same else
                "the same episodes, other returns: another device, thread count or library "
                "version changes the floating-point results")
        lines.append(f"  training log at that step: {float(np.mean(logged)):.1f} over "
                     f"{len(logged)} episodes ({note})")
    lines.append(f"  written to {report.out}: " + ", ".join(
        path.name for path in report.files))
    return "\n".join(lines)
