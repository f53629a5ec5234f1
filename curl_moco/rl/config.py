"""Configuration of CURL-SAC training runs: one dataclass, CURL's per-task values, validation.

Units: every step count of the trainer (``steps``, ``seed_steps``, ``eval_every``,
``checkpoint_every``, ``episode_length``) is in **environment steps** = agent steps x action
repeat, as in the CURL paper ("100k steps" = 100,000 environment steps = 12,500 agent steps on
cartpole with action repeat 8). Fields left at ``None`` take CURL's value for the task
(:func:`resolve_config`); the resolved values are what ``config.json`` records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curl_moco.contrastive.augment import STACK_AUGMENTS
from curl_moco.contrastive.encoders import OUTPUT_ACTIVATIONS, conv_output_size
from curl_moco.contrastive.losses import SIMILARITIES
from curl_moco.envs.tasks import parse_task, task_facts
from curl_moco.io.checks import (
    available_memory,
    check_choices,
    check_folder_name,
    check_learning_rate,
    check_non_negative,
    check_number,
    check_output_dir,
    check_positive,
    check_seed,
    check_threads,
    check_writable_folder,
    human_bytes,
    show,
)
from curl_moco.io.config import knob
from curl_moco.io.errors import UsageError, usage_errors
from curl_moco.io.wandb_sink import check_wandb
from curl_moco.runtime import AMP_MODES, COMPILE_MODES

#: CURL's script collects ``init_steps=1000`` *agent* steps of uniform random actions.
CURL_SEED_AGENT_STEPS = 1000

#: Fields that may change when a run is resumed (the rest must equal the checkpoint's).
RESUMABLE_CHANGES = frozenset({
    "steps", "device", "run_dir", "progress", "checkpoint_every", "save_replay", "eval_every",
    "eval_episodes", "video", "video_size", "video_fps", "tensorboard", "wandb",
    "resume", "init_encoder",
    "stop_after", "tb_video", "threads", "channels_last", "fused_adam", "compile_mode", "amp",
})


@dataclass
class CurlSacConfig:
    """CURL-SAC from pixels on a DeepMind Control task (defaults = CURL paper)."""

    # ---- task and observations
    task: str = knob("cartpole-swingup", "dm_control task, 'domain-task' (python -m "
                     "envs.registry lists them; envs/tasks.py holds CURL's per-task values)")
    action_repeat: int | None = knob(None, "environment steps per agent step; None = CURL's "
                                     "value for the task (cartpole 8, walker 2, ...)")
    image_size: int = knob(100, "rendered observation size in pixels (H = W)")
    crop_size: int = knob(84, "random crop (training) / centre crop (acting) size")
    frame_stack: int = knob(3, "frames stacked along channels")
    camera_id: int | None = knob(None, "camera; None = the domain's default")
    episode_length: int | None = knob(None, "environment steps per episode (shortens the "
                                      "task's time limit); None = the task's own (1000)")
    # ---- schedule (environment steps)
    steps: int = knob(100_000, "training length in environment steps")
    seed_steps: int | None = knob(None, "environment steps of uniform random actions before "
                                  "updates start; None = 1000 agent steps x action_repeat "
                                  "(CURL's init_steps)")
    updates_per_step: int = knob(1, "gradient updates per agent step once seeding is over")
    seed_update_burst: int = knob(0, "gradient updates made at once, instead of "
                                  "updates_per_step, at the agent step that ends seeding, each "
                                  "updating actor, temperature and targets too (SAC+AE's pixel "
                                  "SAC: 1000, its init_steps); 0 = none (CURL)")
    replay_capacity: int = knob(100_000, "replay buffer size in frames (~transitions)")
    save_replay: bool = knob(True, "store the replay buffer in checkpoints (exact resume)")
    batch_size: int | None = knob(None, "batch size; None = CURL's (512, cartpole 128)")
    seed: int = knob(1, "random seed (networks, exploration, environments)")
    # ---- SAC
    lr: float | None = knob(None, "Adam lr of critic, actor, encoder and W; None = CURL's "
                            "(1e-3, cheetah 2e-4)")
    alpha_lr: float = knob(1e-4, "temperature Adam learning rate")
    alpha_beta: float = knob(0.5, "temperature Adam beta1")
    init_temperature: float = knob(0.1, "initial SAC temperature alpha")
    discount: float = knob(0.99, "discount factor gamma")
    critic_tau: float = knob(0.01, "target Q heads EMA weight")
    encoder_tau: float = knob(0.05, "key / target encoder EMA weight")
    actor_update_freq: int = knob(2, "actor and alpha update every N updates")
    target_update_freq: int = knob(2, "target networks EMA every N updates")
    hidden_dim: int = knob(1024, "width of actor and critic MLPs")
    feature_dim: int = knob(50, "encoder output size")
    num_layers: int = knob(4, "pixel encoder: conv layers", flag="pixel-layers",
                           aliases=("num-layers",))
    num_filters: int = knob(32, "pixel encoder: filters per conv layer", flag="pixel-filters",
                            aliases=("num-filters",))
    encoder_output_activation: str = knob("none", "pixel encoder's last step after its "
                                          "LayerNorm: 'none' (CURL) or 'tanh' (SAC+AE's pixel "
                                          "SAC)", choices=OUTPUT_ACTIVATIONS)
    actor_log_std_min: float = knob(-10.0, "lower bound of the policy log std")
    actor_log_std_max: float = knob(2.0, "upper bound of the policy log std")
    # ---- CURL auxiliary loss
    curl_update_freq: int = knob(1, "CURL loss every N updates; 0 = no CURL loss (pixel SAC, "
                                 "the paper's ablation)")
    curl_latent_dim: int | None = knob(None, "contrastive space size; None/0 = feature_dim "
                                       "(CURL), else a linear projection feature_dim -> this")
    similarity: str = knob("bilinear", "CURL logits: 'bilinear' (q^T W k, CURL), 'cosine' or "
                           "'dot' (both divided by curl_temperature)", choices=SIMILARITIES)
    curl_temperature: float = knob(1.0, "logit temperature (CURL: 1 with bilinear; ~0.1 "
                                   "suits cosine)")
    queue_size: int = knob(0, "MoCo queue of extra negatives (0 = off, CURL); needs "
                           "similarity='cosine' and a multiple of batch_size")
    augment: str = knob("crop", "image augmentation: 'crop' (CURL: random crop_size crops) or "
                        "'shift' (DrQ: pad shift_pad, random crop back to the render size; needs "
                        "crop_size = image_size)", choices=STACK_AUGMENTS)
    shift_pad: int = knob(4, "pixels of replicate padding of augment='shift' (DrQ: 4)")
    channels_last: bool = knob(True, "NHWC conv weights and activations (faster convolutions "
                               "on CPU and GPU; experiments/bench/bench_update.py)")
    fused_adam: bool = knob(True, "Adam(fused=True): one kernel per optimiser step")
    compile_mode: str = knob("off", "torch.compile the encoders' conv stacks (~1 min to compile, "
                             "then 1.2-1.4x per CPU update; the CURL presets use 'default'; "
                             "reduce-overhead: CUDA graphs)", choices=COMPILE_MODES)
    amp: str = knob("auto", "bf16 conv stacks (heads, targets, losses, Adam stay float32): "
                    "'auto' = bf16 where the CPU/GPU has native bf16 dot products (avx512_bf16, "
                    "amx_bf16, CUDA Ampere+), else float32; 'bf16'; 'off' = float32",
                    choices=AMP_MODES)
    init_encoder: str | None = knob(None, "initialise the encoder from a pretrained encoder "
                                    "file exported by the pretraining path")
    # ---- evaluation, logging, checkpoints
    eval_every: int = knob(10_000, "evaluate every N environment steps (and at the end)")
    eval_episodes: int = knob(10, "episodes per evaluation (deterministic policy, centre "
                              "crop)")
    video: bool = knob(True, "write an mp4 of the first episode of every evaluation")
    video_size: int = knob(256, "video frame size in pixels")
    video_fps: int | None = knob(None, "video frames per second; None = real time "
                                 "(1 / (control timestep x action_repeat), e.g. 12.5)")
    tb_video: bool = knob(False, "also put the evaluation video into TensorBoard (an animated "
                          "GIF in the Images tab)")
    checkpoint_every: int = knob(20_000, "checkpoint every N environment steps (at episode "
                                 "ends) and at the end")
    name: str = knob("curl", "run name (presets set their own), part of the default run_dir")
    run_dir: str | None = knob(None, "output folder; None = runs/<name>/<task>/seed<seed>")
    resume: bool = knob(True, "continue from run_dir's checkpoint when it holds one")
    device: str = knob("auto", "auto | cpu | cuda | cuda:N")
    threads: int | None = knob(None, "CPU threads used by torch; None = torch's default")
    tensorboard: bool = knob(True, "write TensorBoard scalars")
    wandb: str | None = knob(None, "Weights & Biases project: metrics, the resolved config and "
                             "evaluation videos go there too (pip install 'curl_moco[wandb]'; "
                             "WANDB_MODE=offline without a network)")
    progress: bool = knob(True, "show a progress bar")
    stop_after: int | None = knob(None, "stop (as if killed) after the first checkpoint at or "
                                  "beyond N environment steps; for testing resume")


def task_defaults(task: str) -> dict[str, Any]:
    """CURL's task-dependent values: ``action_repeat``, ``lr``, ``batch_size`` (the task's row
    of :data:`envs.tasks.CURL_TASKS`)."""
    facts = task_facts(task)
    return {"action_repeat": facts.action_repeat, "lr": facts.lr, "batch_size": facts.batch_size}


def resolve_config(cfg: CurlSacConfig) -> CurlSacConfig:
    """A copy with every ``None`` that means "CURL's value" filled in (after :func:`validate`
    of the task name). ``curl_latent_dim=0`` becomes ``None``."""
    values = dataclasses.asdict(cfg)
    defaults = task_defaults(cfg.task)
    for key, value in defaults.items():
        if values[key] is None:
            values[key] = value
    if values["seed_steps"] is None:
        values["seed_steps"] = CURL_SEED_AGENT_STEPS * values["action_repeat"]
    if not values["curl_latent_dim"]:
        values["curl_latent_dim"] = None
    if values["run_dir"] is None:
        values["run_dir"] = str(Path("runs") / cfg.name / cfg.task / f"seed{cfg.seed}")
    return CurlSacConfig(**values)


def check_task_override(source: str, values: dict[str, Any], flags: dict[str, Any]) -> None:
    """Refuse ``--task`` that moves a preset or config file made for one task to another while
    it still carries that task's CURL values (action repeat, lr, batch size): they would apply
    to the other task unnoticed. Values a preset sets for its own reasons (quickstart's small
    batch) and values also given as flags pass. For :func:`~curl_moco.io.config.parse_config`'s
    ``check_overrides``."""
    theirs, task = values.get("task"), flags.get("task")
    if theirs is None or task is None or theirs == task:
        return
    parse_task(task)  # an unknown task is its own error
    parse_task(theirs)
    own, other = task_defaults(theirs), task_defaults(task)
    carried = [key for key in own if key not in flags and values.get(key) == own[key]
               and own[key] != other[key]]
    if carried:
        given = ", ".join(f"{key}={show(own[key])}" for key in carried)
        wanted = ", ".join(f"{key}={show(other[key])}" for key in carried)
        flag_list = " and ".join("--" + key.replace("_", "-") for key in carried)
        raise UsageError(
            f"task={task!r}: {source} is made for {theirs} and would train {task} with "
            f"{theirs}'s {given} ({task}'s CURL values: {wanted}); use --preset {task} (or "
            f"--preset curl --task {task}), or give {flag_list} explicitly")


#: Largest rendered observation / video frame side, pixels (GL framebuffer and memory).
MAX_RENDER_SIZE = 4096
#: Smallest video frame side: H.264 (yuv420p) needs at least 2x2 after cropping to even sizes.
MIN_VIDEO_SIZE = 16


def count_updates(cfg: CurlSacConfig) -> int:
    """Gradient updates a resolved ``cfg`` does: ``updates_per_step`` after every agent step
    from the one that ends seeding (and holds one transition) to the last of ``steps``; at
    that first step ``seed_update_burst`` instead when it is set."""
    agent_steps = math.ceil(cfg.steps / cfg.action_repeat)
    first = max(math.ceil(cfg.seed_steps / cfg.action_repeat), 1)
    steps_with_updates = max(0, agent_steps - first + 1)
    if not steps_with_updates:
        return 0
    return (cfg.seed_update_burst or cfg.updates_per_step) \
        + cfg.updates_per_step * (steps_with_updates - 1)


def check_replay_memory(cfg: CurlSacConfig) -> None:
    """The replay buffer of a resolved ``cfg`` fits in the memory this process can still get
    (it is allocated at start-up and filled for hours: better refused now than killed
    later)."""
    from curl_moco.rl.replay import ReplayBuffer

    free = available_memory()
    # one rendered frame (3, image_size, image_size) per slot; the action size is not known
    # before the environment exists, 1 float gives the least the buffer can need
    per_slot = ReplayBuffer.slot_bytes((3, cfg.image_size, cfg.image_size), 1)
    need = cfg.replay_capacity * per_slot
    if free is not None and need > free:
        fits = max(free // per_slot, 0)
        raise UsageError(
            f"replay_capacity={show(cfg.replay_capacity)} needs at least {human_bytes(need)} of "
            f"memory ({human_bytes(per_slot)} per slot at image_size={cfg.image_size}), but "
            f"only {human_bytes(free)} is available; lower replay_capacity (at most "
            f"{fits} slots fit now) or image_size")


def validate(cfg: CurlSacConfig, *, for_training: bool = True) -> CurlSacConfig:
    """Check every setting before any work; returns the resolved config. ``for_training=False``
    skips what only a training run needs (the ``init_encoder`` file, the ``run_dir`` folder,
    memory for the replay buffer): building an agent from a saved run's config needs none.

    Raises :class:`~curl_moco.io.errors.UsageError` (a ``ValueError``; a ``KeyError`` for an
    unknown task) naming the setting and the value given.
    """
    parse_task(cfg.task)  # UnknownNameError with close matches
    check_positive(cfg, "action_repeat", "image_size", "crop_size", "frame_stack",
                   "episode_length", "steps", "updates_per_step", "replay_capacity",
                   "batch_size", "lr", "alpha_lr", "init_temperature", "actor_update_freq",
                   "target_update_freq", "hidden_dim", "feature_dim", "num_layers",
                   "num_filters", "curl_temperature", "eval_every", "eval_episodes",
                   "video_size", "video_fps", "checkpoint_every", "stop_after")
    check_threads("threads", cfg.threads)
    check_learning_rate("lr", cfg.lr)
    check_learning_rate("alpha_lr", cfg.alpha_lr)
    check_non_negative(cfg, "seed_steps", "queue_size", "curl_update_freq", "shift_pad",
                       "curl_latent_dim", "seed_update_burst")
    check_seed("seed", cfg.seed)
    check_number("discount", cfg.discount, low=0.0, high=1.0)
    for name in ("critic_tau", "encoder_tau"):  # EMA weight of the online network
        value = getattr(cfg, name)
        check_number(name, value, low=0.0, high=1.0)
        if value == 0:
            raise UsageError(f"{name}=0 means the target networks never move from their "
                             "initial weights; use a weight in (0, 1] (CURL: critic_tau 0.01, "
                             "encoder_tau 0.05)")
    # Adam's beta1 must be in [0, 1) (torch refuses 1.0: its bias correction divides by 0)
    check_number("alpha_beta", cfg.alpha_beta, low=0.0, high=1.0, high_inclusive=False)
    check_number("actor_log_std_min", cfg.actor_log_std_min)
    check_number("actor_log_std_max", cfg.actor_log_std_max)
    if not cfg.actor_log_std_min < cfg.actor_log_std_max:
        raise UsageError(f"actor_log_std_min={cfg.actor_log_std_min} must be < "
                         f"actor_log_std_max={cfg.actor_log_std_max}")
    for name in ("image_size", "video_size"):
        check_number(name, getattr(cfg, name), high=MAX_RENDER_SIZE)
    if cfg.tb_video and not cfg.tensorboard:
        raise UsageError("tb_video=True puts the evaluation video into TensorBoard, which is "
                         "off (--no-tensorboard): drop one of the two")
    if (cfg.video or cfg.tb_video) and cfg.video_size < MIN_VIDEO_SIZE:
        raise UsageError(f"video_size={cfg.video_size} is too small for a video: use at least "
                         f"{MIN_VIDEO_SIZE} pixels, or --no-video")
    if cfg.camera_id is not None and cfg.camera_id < -1:
        raise UsageError(f"camera_id={cfg.camera_id} must be -1 (free camera) or a camera "
                         "index >= 0")
    check_choices(cfg)
    check_folder_name("name", cfg.name)
    if cfg.augment == "shift" and cfg.crop_size != cfg.image_size:
        raise UsageError(f"augment='shift' keeps the render size: crop_size={cfg.crop_size} "
                         f"must equal image_size={cfg.image_size} (DrQ: --image-size 84 "
                         "--crop-size 84)")
    if cfg.crop_size > cfg.image_size:
        raise UsageError(f"crop_size={cfg.crop_size} is larger than image_size={cfg.image_size}")
    if conv_output_size(cfg.crop_size, cfg.num_layers) < 1:
        raise UsageError(f"crop_size={cfg.crop_size} is too small for num_layers="
                         f"{cfg.num_layers} conv layers")

    seed_steps_given = cfg.seed_steps is not None
    cfg = resolve_config(cfg)
    if cfg.episode_length is not None and cfg.episode_length % cfg.action_repeat:
        raise UsageError(f"episode_length={cfg.episode_length} must be a multiple of "
                         f"action_repeat={cfg.action_repeat}")
    if cfg.steps < cfg.action_repeat:
        raise UsageError(f"steps={cfg.steps} is less than one agent step "
                         f"(action_repeat={cfg.action_repeat})")
    if cfg.seed_steps >= cfg.steps:
        updates = count_updates(cfg)
        setting = (f"seed_steps={cfg.seed_steps}" if seed_steps_given else
                   f"steps={cfg.steps}")
        raise UsageError(
            f"{setting}: the run would do {updates} update(s): its first seed_steps="
            f"{cfg.seed_steps} environment steps are random actions"
            + ("" if seed_steps_given else f" (the default: CURL's {CURL_SEED_AGENT_STEPS} "
               f"agent steps x action_repeat={cfg.action_repeat})")
            + f" and steps={cfg.steps} is not more; raise steps or lower seed_steps")
    if cfg.replay_capacity < cfg.frame_stack + 1:
        raise UsageError(f"replay_capacity={cfg.replay_capacity} must be at least frame_stack "
                         f"+ 1 = {cfg.frame_stack + 1}")
    # The first update happens after seed_steps environment steps; the buffer then holds that
    # many transitions (at least one agent step's worth), capped by its capacity.
    seeded = max(math.ceil(cfg.seed_steps / cfg.action_repeat), 1)
    capacity_transitions = cfg.replay_capacity - cfg.frame_stack
    if cfg.batch_size > capacity_transitions and capacity_transitions < seeded:
        raise UsageError(
            f"replay_capacity={cfg.replay_capacity} holds at most {capacity_transitions} "
            f"sampleable transitions (frame_stack={cfg.frame_stack} slots hold no transition), "
            f"fewer than batch_size={cfg.batch_size}; raise replay_capacity to at least "
            f"{cfg.batch_size + cfg.frame_stack} (CURL: 100000)")
    if cfg.batch_size > seeded:
        raise UsageError(
            f"batch_size={cfg.batch_size} is larger than the {seeded} "
            f"transitions the replay buffer holds at the first update (seed_steps="
            f"{cfg.seed_steps} environment steps / action_repeat={cfg.action_repeat}); raise "
            "seed_steps or lower batch_size")
    if cfg.queue_size:
        if cfg.curl_update_freq == 0:
            raise UsageError(f"queue_size={cfg.queue_size} needs the CURL loss (curl_update_freq "
                             "is 0)")
        if cfg.similarity != "cosine":
            raise UsageError(f"queue_size={cfg.queue_size} needs similarity='cosine' (the "
                             "queue holds L2-normalised keys)")
        from curl_moco.contrastive.queue import KeyQueue

        with usage_errors():
            KeyQueue.check_batch(cfg.queue_size, cfg.batch_size)
    if not for_training:
        return cfg
    check_wandb(cfg.wandb)  # a trained run's config loads without wandb installed
    check_replay_memory(cfg)
    if cfg.init_encoder is not None and not Path(cfg.init_encoder).is_file():
        raise UsageError(f"init_encoder={cfg.init_encoder!r}: no such file")
    check_output_dir("run_dir", cfg.run_dir)
    if cfg.video:  # found now, not at the first evaluation
        check_writable_folder("videos folder", Path(cfg.run_dir) / "videos")
    if cfg.tensorboard:
        check_writable_folder("tensorboard folder", Path(cfg.run_dir) / "tb")
    return cfg
