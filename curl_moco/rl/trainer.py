"""CURL-SAC training loop: collect -> update -> evaluate (+ video) -> log -> checkpoint.

Step counting: ``env_steps`` counts **environment steps** (agent steps x action repeat) and is
the ``env_steps`` column of every log; ``train.csv`` also has ``agent_steps`` (in total),
``episode_agent_steps`` (the episode's length) and ``env_steps_per_s``. Each agent step: act
(uniform random while ``env_steps < seed_steps``, else a policy sample), step the environment,
store the transition, then, once seeding is over, ``updates_per_step`` gradient updates
(``seed_update_burst`` of them at the step that ends seeding, when set).

Periodic work happens at episode ends: a train row per episode, an evaluation when
``eval_every`` environment steps have passed, a checkpoint when ``checkpoint_every`` have passed.
Checkpoints are taken only between episodes, and every training episode ``i`` is reset with a
seed derived from ``(seed, i)``, so a resumed run continues *exactly* like an uninterrupted one
on the CPU: the checkpoint holds the agent (networks, optimisers, its generator), the replay
buffer (and its generator), the counters, the exploration generator and the global RNG states.
Evaluation uses its own environment, seeds and a deterministic policy, so it never changes the
training trajectory.

Ctrl-C or SIGTERM (:mod:`curl_moco.io.interrupt`) stops after the current agent step (its updates
included) and writes a checkpoint there, mid-episode: it also holds the actions taken so far in
the episode, and the resumed run replays them in the freshly reset environment (same seed, so
the same physics and frames) before it continues, again exactly like an uninterrupted run. A
signal during an evaluation abandons that evaluation; the resumed run repeats it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from curl_moco import runtime
from curl_moco.io.checkpoint import CheckpointError
from curl_moco.io.console import header
from curl_moco.io.divergence import (
    TrainingDiverged,
    describe,
    diverged,
    first_nonfinite_tensor,
    likely_knob,
    nonfinite_values,
)
from curl_moco.io.encoder_export import load_encoder_into
from curl_moco.io.errors import UsageError, usage_errors
from curl_moco.io.interrupt import StopSignals, TrainingInterrupted
from curl_moco.io.logger import Logger, MetricSink, csv_files
from curl_moco.io.run import RunDir
from curl_moco.io.run_record import RunRecord, device_line
from curl_moco.io.video import write_video
from curl_moco.rl.agent import CurlSacAgent
from curl_moco.rl.config import RESUMABLE_CHANGES, CurlSacConfig, task_defaults, validate
from curl_moco.rl.environment import make_task_env
from curl_moco.rl.replay import ReplayBuffer
from curl_moco.rl.rollout import EpisodeAborted, StepView, play_episode, real_time_fps
from curl_moco.runtime import (
    capture_rng_state,
    launched_world_size,
    resolve_device,
    restore_rng_state,
    seed_everything,
)

log = logging.getLogger("curl_moco.rl")

CHECKPOINT_KIND = "curl_sac"
#: The metric groups the trainer logs: ``<group>.csv`` in the run folder.
LOG_GROUPS = ("train", "eval")
#: The step counter of every CSV row, and the older column names that runs logged before the
#: columns said their units (a resumed old run's CSV files are rewritten under the new names).
STEP_COLUMN = "env_steps"
LEGACY_COLUMNS = {"step": STEP_COLUMN, "steps_per_s": "env_steps_per_s",
                  "episode_length": "episode_agent_steps"}
#: Streams of seeds derived from the run's seed (numpy SeedSequence spawn keys).
_TRAIN_EPISODE, _EVAL_EPISODE, _EXPLORE, _REPLAY, _AGENT = range(5)


def derived_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed for stream ``keys`` of run ``seed`` (independent streams, reproducible)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] >> 1)


def agent_seed(seed: int) -> int:
    """The seed the agent of run ``seed`` is built with (weights and its generator)."""
    return derived_seed(seed, _AGENT)


def eval_episode_seed(seed: int, eval_round: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of evaluation number ``eval_round`` (0 = the
    first) of run ``seed``: what the evaluate command replays."""
    return derived_seed(seed, _EVAL_EPISODE, eval_round, episode)


@dataclass
class EvalResult:
    """Returns of one evaluation and the path of its video (if written)."""

    env_steps: int
    returns: list[float]
    video: Path | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


@dataclass
class EpisodeProgress:
    """The training episode being played: its observation ``(3k, H, W)`` uint8, the actions taken
    so far (replayed on resume), its return, length and the sums of the update metrics."""

    obs: np.ndarray
    actions: list[np.ndarray] = field(default_factory=list)
    episode_return: float = 0.0
    length: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    start_env_steps: int = 0
    start_time: float = field(default_factory=time.time)

    def state(self, action_dim: int) -> dict[str, Any]:
        """Checkpoint form (tensors and primitives only)."""
        actions = (torch.from_numpy(np.stack(self.actions)) if self.actions
                   else torch.zeros((0, action_dim), dtype=torch.float32))
        return {"actions": actions, "episode_return": self.episode_return,
                "length": self.length, "start_env_steps": self.start_env_steps,
                "sums": {k: v.detach().cpu() for k, v in self.sums.items()},
                "counts": dict(self.counts)}


class _EvaluationInterrupted(Exception):  # noqa: N818 - control flow, not an error
    """A stop was requested during an evaluation (which is then repeated on resume)."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    env_steps: int
    checkpoint: Path | None
    config_path: Path
    csv_paths: list[Path] = field(default_factory=list)
    tensorboard_dir: Path | None = None
    last_eval: EvalResult | None = None
    resumed_from: int | None = None
    stopped_early: bool = False
    wall_s: float = 0.0


class Trainer:
    """Runs one CURL-SAC training run described by a :class:`CurlSacConfig`.

    The constructor validates everything that can be checked without work (settings, device,
    run directory); :meth:`setup` builds environments, agent, buffer and logger and restores a
    checkpoint; :meth:`run` does both and trains.
    """

    def __init__(self, cfg: CurlSacConfig, sinks: Sequence[MetricSink] = ()) -> None:
        world = launched_world_size()
        if world > 1:
            raise UsageError(f"WORLD_SIZE={world}: train_dmc trains one agent in one process; "
                             "under torchrun each process would train its own copy into the "
                             "same run folder. Start it with python, one process per run")
        with usage_errors():  # validate() only checks settings: its errors are the user's
            self.cfg = validate(cfg)
        self.device = resolve_device(self.cfg.device)
        if (self.cfg.compile_mode != "off" and self.device.type == "cpu"
                and runtime.cpp_compiler() is None):
            raise UsageError(f"compile_mode={self.cfg.compile_mode!r}: torch.compile needs a C++ "
                             "compiler on the CPU and none was found (g++ or $CXX); install "
                             "one (apt-get install g++) or pass --compile-mode off")
        if self.cfg.threads is not None:
            torch.set_num_threads(self.cfg.threads)
        self.run_folder = RunDir(self.cfg.run_dir, self.cfg, kind=CHECKPOINT_KIND,
                          may_change=RESUMABLE_CHANGES)
        self.run_dir = self.run_folder.path
        self.sinks = list(sinks)
        self.checkpoint_path: Path | None = self.run_folder.check(self.cfg.resume)
        self.run_folder.claim()  # one writer from here on; released (and undone) by close()
        self.env = self.eval_env = None
        self.agent: CurlSacAgent | None = None
        self.replay: ReplayBuffer | None = None
        self.logger: Logger | None = None
        self.env_steps = self.agent_steps = self.episode = 0
        self.next_eval_at = self.cfg.eval_every
        self.next_checkpoint_at = self.cfg.checkpoint_every
        self.num_evals = 0
        self.last_eval: EvalResult | None = None
        self.resumed_from: int | None = None
        self.explore_generator = torch.Generator()
        self.stop = StopSignals()  # installed while run() trains
        self._resume_episode: dict[str, Any] | None = None  # an interrupted episode to replay
        self._pending_periodic = False  # interrupted at an episode end, before eval/checkpoint
        self._replay_restored = False
        self._unsaved_progress = False
        #: The entry point's module when one runs this trainer (recorded in run.json).
        self.entry_point: str | None = None
        self.record = RunRecord(self.run_dir)
        self._compile_started: float | None = None
        self._compile_done = False

    # ------------------------------------------------------------------ construction
    def _make_env(self, seed: int, render_size: int):
        return make_task_env(self.cfg, seed, render_size)

    def setup(self) -> None:
        """Build environments, agent, replay buffer and logger; restore the checkpoint if any."""
        cfg = self.cfg
        payload = None
        if self.checkpoint_path is not None:  # validate the file before building anything
            payload = self.run_folder.load(self.checkpoint_path)
        seed_everything(cfg.seed)
        self.env = self._make_env(derived_seed(cfg.seed, _TRAIN_EPISODE, 0), cfg.image_size)
        self.eval_env = self._make_env(derived_seed(cfg.seed, _EVAL_EPISODE, 0), cfg.video_size)
        action_dim = int(np.prod(self.env.action_space.shape))
        obs_shape = self.env.observation_space.shape  # (3k, H, W)
        self.agent = CurlSacAgent.from_config(cfg, obs_shape[0], action_dim, device=self.device,
                                              seed=agent_seed(cfg.seed))
        frame_shape = (obs_shape[0] // cfg.frame_stack, *obs_shape[1:])
        self.replay = ReplayBuffer(cfg.replay_capacity, frame_shape, cfg.frame_stack, action_dim,
                                   device=self.device, seed=derived_seed(cfg.seed, _REPLAY))
        self.explore_generator.manual_seed(derived_seed(cfg.seed, _EXPLORE))

        if payload is not None:
            self._restore(payload)
        elif cfg.init_encoder is not None:
            load_encoder_into(self.agent.critic.encoder, cfg.init_encoder,
                              self.agent.encoder_arch())
            self.agent.encoder_loaded()
            log.info("encoder initialised from %s", cfg.init_encoder)

        self.run_folder.prepare()  # every check passed: environments, checkpoint, encoder
        sinks = list(self.sinks)
        if cfg.wandb is not None:
            from curl_moco.io.wandb_sink import WandbSink

            sinks.append(WandbSink(cfg.wandb, self.run_dir, self.run_folder.config,
                                   name=f"{cfg.name}/{cfg.task}/seed{cfg.seed}",
                                   group=f"{cfg.name}/{cfg.task}", step_column=STEP_COLUMN))
        self.logger = self.run_folder.open_logger(self.resumed_from,
                                                  tensorboard=cfg.tensorboard, sinks=sinks,
                                                  step_column=STEP_COLUMN,
                                                  renames=LEGACY_COLUMNS, groups=LOG_GROUPS)
        self.logger.config(self.run_folder.config, self.resumed_from or 0)
        self.record.start(device=self.device,
                          precision="bf16" if self.agent.amp == "bf16" else "float32",
                          precision_reason=self.agent.amp_reason,
                          compile_mode=cfg.compile_mode, prog=self.entry_point,
                          resumed_from=self.resumed_from)
        log.info("%s", self.header())

    def header(self) -> str:
        """The start-up header: task, steps, device, precision, compilation, run folder."""
        cfg = self.cfg
        where = (f"resumed from step {self.resumed_from}" if self.resumed_from is not None
                 else "fresh run")
        fields = {
            "device": device_line(self.device),
            "precision": self.agent.amp_reason,
            "compile": ("off" if cfg.compile_mode == "off" else
                        f"{cfg.compile_mode} (the conv stacks compile when updates start)"),
            "run folder": f"{self.run_dir} ({where})",
        }
        return header(f"CURL-SAC on {cfg.task}: {cfg.steps:,} environment steps (action repeat "
                      f"{cfg.action_repeat}), seed {cfg.seed}", fields)

    def _restore(self, payload: dict[str, Any]) -> None:
        path = self.checkpoint_path
        try:
            self.agent.load_checkpoint_state(payload["agent"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise CheckpointError(f"{path}: agent state does not fit this model: {error}") \
                from error
        state = payload["trainer"]
        if payload.get("replay") is not None:
            try:
                self.replay.load_state_dict(payload["replay"])
            except (ValueError, KeyError, RuntimeError) as error:
                raise CheckpointError(f"{path}: replay buffer does not fit: {error}") from error
            self._replay_restored = True
        else:
            log.warning("checkpoint has no replay buffer (save_replay was off): refilling it "
                        "before updates resume; the run will not match an uninterrupted one")
        self.env_steps, self.agent_steps = int(state["env_steps"]), int(state["agent_steps"])
        self.episode, self.num_evals = int(state["episode"]), int(state["num_evals"])
        self.next_eval_at = int(state["next_eval_at"])
        self.next_checkpoint_at = int(state["next_checkpoint_at"])
        self.explore_generator.set_state(state["explore_generator"])
        if state.get("last_eval") is not None:
            ev = state["last_eval"]
            self.last_eval = EvalResult(int(ev["env_steps"]), list(ev["returns"]),
                                        self._saved_video_path(ev))
        restore_rng_state(payload["rng"])
        self.resumed_from = self.env_steps
        self._resume_episode = state.get("episode_in_progress")
        self._pending_periodic = bool(state.get("pending_periodic", False))
        if not self._pending_periodic:
            # Periodic events already passed by a run that now has other intervals:
            self.next_eval_at = max(self.next_eval_at, self.env_steps + 1)
            self.next_checkpoint_at = max(self.next_checkpoint_at, self.env_steps + 1)
        where = (" (mid-episode)" if self._resume_episode is not None else "")
        log.info("resumed from %s at %d environment steps%s", path, self.env_steps, where)

    def _saved_video_path(self, ev: dict[str, Any]) -> Path | None:
        """The last evaluation's video: stored relative to the run folder (so a copied run folder
        still points at its own video); older checkpoints stored the path as written."""
        if ev.get("video_file"):
            return self.run_dir / ev["video_file"]
        return Path(ev["video"]) if ev.get("video") else None

    def save(self, episode: EpisodeProgress | None = None, pending_periodic: bool = False
             ) -> Path:
        """Atomically write the run's checkpoint (``run_dir/checkpoint.pt``); ``episode`` is the
        episode in progress (interrupted mid-episode), ``pending_periodic`` marks an episode end
        whose evaluation/checkpoint has not run yet."""
        cfg = self.cfg
        ev = self.last_eval
        video_file = None
        if ev is not None and ev.video is not None:
            video_file = (ev.video.relative_to(self.run_dir).as_posix()
                          if ev.video.is_relative_to(self.run_dir) else ev.video.name)
        action_dim = int(np.prod(self.env.action_space.shape))
        bad = first_nonfinite_tensor(self.agent.state_dict().items())
        if bad is not None:  # never replace the last good checkpoint with a diverged one
            raise self._diverged(f"by environment step {self.env_steps}",
                                 f"the weights {bad} hold inf/NaN",
                                 alpha_related=bad == "log_alpha")
        payload = {
            "agent": self.agent.checkpoint_state(),
            "replay": self.replay.state_dict() if cfg.save_replay else None,
            "trainer": {
                "env_steps": self.env_steps, "agent_steps": self.agent_steps,
                "episode": self.episode, "num_evals": self.num_evals,
                "next_eval_at": self.next_eval_at,
                "next_checkpoint_at": self.next_checkpoint_at,
                "explore_generator": self.explore_generator.get_state(),
                "last_eval": None if ev is None else {
                    "env_steps": ev.env_steps, "returns": [float(r) for r in ev.returns],
                    "video_file": video_file},
                "episode_in_progress": None if episode is None else episode.state(action_dim),
                "pending_periodic": pending_periodic,
            },
            "rng": capture_rng_state(),
        }
        path = self.run_folder.save(payload)
        self.checkpoint_path = path
        self._unsaved_progress = False
        return path

    def _interrupt(self, episode: EpisodeProgress | None = None,
                   pending_periodic: bool = False) -> NoReturn:
        """Write the checkpoint of an interrupted run (unless the last one is current) and raise
        :class:`TrainingInterrupted`."""
        path = self.checkpoint_path
        if (episode is not None or pending_periodic or self._unsaved_progress
                or path is None):
            path = self.save(episode, pending_periodic)
        if self.logger is not None:
            self.logger.flush()
        raise TrainingInterrupted(
            self.stop.signum, f"at {self.env_steps} environment steps", path,
            self.run_folder.config_path, () if self.cfg.resume else ("--resume",))

    def close(self) -> None:
        for env in (self.env, self.eval_env):
            if env is not None:
                env.close()
        self.env = self.eval_env = None
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        self.run_folder.release()

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> EvalResult:
        """``eval_episodes`` episodes with the deterministic policy (centre crop), played by
        :func:`~curl_moco.rl.rollout.play_episode` (as the evaluate command plays them); the
        first is recorded as ``videos/eval_<env_steps>.mp4`` in real time (one frame per agent
        step plus the reset frame, rendered at ``video_size``), and into TensorBoard with
        ``tb_video``."""
        cfg = self.cfg
        returns: list[float] = []
        frames: list[np.ndarray] = []

        def record_frame(_view: StepView) -> None:
            frames.append(self.eval_env.render())

        def policy(obs: np.ndarray) -> np.ndarray:
            return self._act(obs, deterministic=True)

        for i in range(cfg.eval_episodes):
            record = (cfg.video or cfg.tb_video) and i == 0
            try:
                episode = play_episode(
                    self.eval_env, policy, eval_episode_seed(cfg.seed, self.num_evals, i),
                    on_step=record_frame if record else None,
                    should_stop=lambda: self.stop.requested)
            except EpisodeAborted:
                raise _EvaluationInterrupted from None
            returns.append(episode.episode_return)
        video = None
        if frames:
            fps = cfg.video_fps or real_time_fps(self.eval_env)
            if cfg.video:
                video = write_video(self.run_dir / "videos" / f"eval_{self.env_steps}.mp4",
                                    frames, fps=fps)
            if cfg.tb_video:
                self.logger.video("eval/video", self.env_steps, frames, fps)
        self.num_evals += 1
        self._unsaved_progress = True
        result = EvalResult(self.env_steps, returns, video)
        self.logger.log("eval", self.env_steps, {
            "episode_reward": result.mean, "episode_reward_std": result.std,
            "episode_reward_min": float(np.min(returns)),
            "episode_reward_max": float(np.max(returns)), "episodes": len(returns)})
        if video is not None:
            self.logger.video_file("eval", self.env_steps, video)
        self.last_eval = result
        log.info("eval at %d steps: return %.1f +- %.1f over %d episodes", self.env_steps,
                 result.mean, result.std, len(returns))
        return result

    # ------------------------------------------------------------------ training
    def _random_action(self) -> np.ndarray:
        shape = self.env.action_space.shape
        u = torch.rand(shape, generator=self.explore_generator, dtype=torch.float64)
        return (2.0 * u - 1.0).numpy().astype(np.float32)

    def _act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The agent's action ``(A,)`` for ``obs``, refused before it reaches the environment
        when it is inf/NaN (MuJoCo would raise a PhysicsError far from the cause)."""
        action = self.agent.act(obs, deterministic=deterministic)
        if not np.isfinite(action).all():
            kind = "evaluation" if deterministic else "training"
            raise self._diverged(f"at environment step {self.env_steps}",
                                 f"the policy's {kind} action is {action.tolist()}")
        return action

    def _diverged(self, where: str, what: str, alpha_related: bool = False) -> TrainingDiverged:
        """The error of a diverged run, blaming the learning rate (or temperature setting) set
        furthest above its usual value."""
        cfg = self.cfg
        usual = {"lr": task_defaults(cfg.task)["lr"], "alpha_lr": CurlSacConfig.alpha_lr,
                 "init_temperature": CurlSacConfig.init_temperature}
        knob, hint = likely_knob(cfg, usual, "alpha_lr" if alpha_related else "lr")
        return diverged(cfg, knob, hint, where, what, self.checkpoint_path)

    def run(self) -> TrainResult:
        """Train until ``steps`` environment steps (or ``stop_after``); returns the outputs.

        Raises :class:`TrainingInterrupted` after writing a checkpoint when SIGINT/SIGTERM/
        SIGHUP arrives."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        start = time.time()
        if self.agent is None:
            self.setup()
        min_transitions = max(math.ceil(cfg.seed_steps / cfg.action_repeat), 1)
        bar = tqdm(total=cfg.steps, initial=min(self.env_steps, cfg.steps), unit="step",
                   disable=not cfg.progress, dynamic_ncols=True, smoothing=0.05)
        stopped = False
        try:
            with self.stop:
                try:
                    if self._pending_periodic:
                        self._pending_periodic = False
                        stopped = self._periodic()
                    while self.env_steps < cfg.steps and not stopped:
                        stopped = self._episode(bar, min_transitions)
                    if not stopped:
                        if self.last_eval is None or self.last_eval.env_steps != self.env_steps:
                            self.evaluate()
                        if self._unsaved_progress or self.checkpoint_path is None:
                            self.save()
                except _EvaluationInterrupted:
                    self._interrupt(pending_periodic=True)
        finally:
            bar.close()
            if self.logger is not None:
                self.logger.flush()
            self.record.finish(env_steps=self.env_steps)
        result = TrainResult(
            run_dir=self.run_dir, env_steps=self.env_steps, checkpoint=self.checkpoint_path,
            config_path=self.run_folder.config_path,
            csv_paths=csv_files(self.run_dir, LOG_GROUPS),
            tensorboard_dir=(self.run_dir / "tb") if cfg.tensorboard else None,
            last_eval=self.last_eval, resumed_from=self.resumed_from, stopped_early=stopped,
            wall_s=time.time() - start)
        return result

    def _start_episode(self) -> EpisodeProgress:
        """Reset the training environment for episode ``self.episode``; after a mid-episode
        resume, replay the saved actions so that the environment is where it was."""
        cfg = self.cfg
        obs, _ = self.env.reset(seed=derived_seed(cfg.seed, _TRAIN_EPISODE, self.episode))
        saved, self._resume_episode = self._resume_episode, None
        if saved is None:
            self.replay.start_episode(obs)
            return EpisodeProgress(obs, start_env_steps=self.env_steps)
        progress = EpisodeProgress(obs, start_env_steps=int(saved["start_env_steps"]))
        replayed_return = 0.0
        for action in saved["actions"].numpy():
            obs, reward, _, _, _ = self.env.step(action)
            replayed_return += float(reward)
            progress.actions.append(action)
        progress.obs = obs
        progress.episode_return = float(saved["episode_return"])
        progress.length = int(saved["length"])
        progress.sums = {k: v.to(self.device) for k, v in saved["sums"].items()}
        progress.counts = {k: int(v) for k, v in saved["counts"].items()}
        if replayed_return != progress.episode_return:
            log.warning("replaying the interrupted episode gave return %.6g, the checkpoint has "
                        "%.6g: the environment is not deterministic here, so the resumed run "
                        "may differ from an uninterrupted one", replayed_return,
                        progress.episode_return)
        if not self._replay_restored:  # checkpoint without replay buffer: start a fresh episode
            self.replay.start_episode(obs)
        log.info("replayed %d agent steps of the interrupted episode", len(progress.actions))
        return progress

    def _episode(self, bar, min_transitions: int) -> bool:
        """Play one training episode (updating as we go); returns True to stop the run."""
        cfg = self.cfg
        agent, replay, env = self.agent, self.replay, self.env
        ep = self._start_episode()
        done = False
        while not done and self.env_steps < cfg.steps:
            if self.env_steps < cfg.seed_steps:
                action = self._random_action()
            else:
                self._announce_compilation()
                action = self._act(ep.obs)
            ep.obs, reward, terminated, truncated, _ = env.step(action)
            replay.add(action, reward, ep.obs, terminated)
            ep.actions.append(np.asarray(action, dtype=np.float32))
            done = terminated or truncated
            ep.episode_return += float(reward)
            ep.length += 1
            self.agent_steps += 1
            self.env_steps += cfg.action_repeat
            self._unsaved_progress = True
            bar.update(cfg.action_repeat)
            if self.env_steps >= cfg.seed_steps and replay.num_transitions >= min_transitions:
                burst = cfg.seed_update_burst if agent.num_updates == 0 else 0
                for _ in range(burst or cfg.updates_per_step):
                    batch = replay.sample(cfg.batch_size)
                    metrics = agent.update(batch, every_part=True) if burst else agent.update(batch)
                    for key, value in metrics.items():
                        ep.sums[key] = ep.sums[key] + value if key in ep.sums else value.clone()
                        ep.counts[key] = ep.counts.get(key, 0) + 1
            if self._compile_started is not None and agent.num_updates > 0:
                self._compiled(bar)
            if self.stop.requested and not done and self.env_steps < cfg.steps:
                self._interrupt(episode=ep)
        self.episode += 1
        elapsed = max(time.time() - ep.start_time, 1e-9)
        row: dict[str, float] = {
            "episode": self.episode, "episode_reward": ep.episode_return,
            "episode_agent_steps": ep.length, "agent_steps": self.agent_steps,
            "updates": agent.num_updates, "buffer_transitions": replay.num_transitions,
            "env_steps_per_s": (self.env_steps - ep.start_env_steps) / elapsed,
            "episode_s": elapsed}
        row.update({key: float(ep.sums[key]) / ep.counts[key] for key in sorted(ep.sums)})
        bad = nonfinite_values({key: row[key] for key in ep.sums})
        if bad:
            raise self._diverged(f"in the episode ending at environment step {self.env_steps}",
                                 f"mean {describe(bad)} over its updates",
                                 alpha_related=all(k.startswith("alpha") for k in bad))
        self.logger.log("train", self.env_steps, row)
        postfix = {"ep_ret": f"{ep.episode_return:.0f}"}
        if self.last_eval is not None:
            postfix["eval"] = f"{self.last_eval.mean:.0f}"
        bar.set_postfix(postfix, refresh=False)
        return self._periodic()

    def _announce_compilation(self) -> None:
        """Before the first policy action of a run with ``compile_mode``: say that the conv
        stacks compile now (once per process)."""
        if (self.cfg.compile_mode == "off" or self._compile_started is not None
                or self._compile_done):
            return
        log.info("compiling the conv stacks (compile_mode=%s; about a minute on a CPU) ...",
                 self.cfg.compile_mode)
        self._compile_started = time.time()

    def _compiled(self, bar) -> None:
        """After the first update with compiled conv stacks: report the compile time and restart
        the progress bar's rate, so that its ETA counts training speed only."""
        log.info("compiled in %.0f s", time.time() - self._compile_started)
        self._compile_started, self._compile_done = None, True
        done = bar.n
        bar.reset(total=bar.total)
        bar.n = bar.initial = bar.last_print_n = done
        bar.refresh()

    def _periodic(self) -> bool:
        """Evaluation and checkpoint when due, at an episode end; returns True to stop the run
        (``stop_after``). A stop request is honoured here, after the checkpoint."""
        cfg = self.cfg
        if self.env_steps >= self.next_eval_at:
            self.evaluate()
            self.next_eval_at = (self.env_steps // cfg.eval_every + 1) * cfg.eval_every
        if self.env_steps >= self.next_checkpoint_at and self.env_steps < cfg.steps:
            self.next_checkpoint_at = (self.env_steps // cfg.checkpoint_every + 1) \
                * cfg.checkpoint_every
            self.save()
            if cfg.stop_after is not None and self.env_steps >= cfg.stop_after:
                log.info("stop_after=%d reached at %d environment steps", cfg.stop_after,
                         self.env_steps)
                return True
        if self.stop.requested and self.env_steps < cfg.steps:
            self._interrupt()
        return False


def train(cfg: CurlSacConfig, sinks: Sequence[MetricSink] = ()) -> TrainResult:
    """Validate ``cfg``, train (resuming when possible) and close everything; metrics go to the
    run folder's CSV files (+ TensorBoard) and to any extra ``sinks``."""
    trainer = Trainer(cfg, sinks)
    try:
        return trainer.run()
    finally:
        trainer.close()
