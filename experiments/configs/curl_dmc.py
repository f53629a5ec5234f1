"""CURL-SAC presets: overrides of :class:`~curl_moco.rl.config.CurlSacConfig` fields.

- ``curl`` (default): the paper's settings; per-task values (action repeat, lr, batch) are
  filled in from the task (``--task walker-walk --preset curl``). It and the per-task presets
  compile the conv stacks (``compile_mode="default"``, for runs of hours).
- one preset per CURL benchmark task (``--preset cheetah-run``): the task and its values
  spelled out (action repeat from the paper, lr 2e-4 for cheetah, batch 128 for cartpole as in
  the public script, 512 elsewhere).
- ``quickstart``: a few minutes of real training on cartpole swingup on a laptop CPU
  (smaller images, networks and batch; 2-step-shorter evaluation); every field can still be
  overridden.
- ``smoke``: a tiny configuration that only checks the pipeline (seconds).
"""

from __future__ import annotations

from typing import Any

from curl_moco.rl.config import CURL_BATCH, CURL_LR, CURL_TASK_BATCH, CURL_TASK_LR
from envs.registry import CURL_ACTION_REPEAT

QUICKSTART: dict[str, Any] = dict(
    name="quickstart", task="cartpole-swingup", action_repeat=8, image_size=64, crop_size=56,
    num_layers=2, num_filters=16, hidden_dim=256, batch_size=32, steps=16_000,
    seed_steps=1_000, replay_capacity=4_000, eval_every=4_000, eval_episodes=3,
    checkpoint_every=4_000, video_size=256,
)

SMOKE: dict[str, Any] = dict(
    name="smoke", task="cartpole-swingup", action_repeat=8, image_size=40, crop_size=32,
    episode_length=200, steps=800, seed_steps=160, batch_size=16, hidden_dim=32,
    feature_dim=16, num_filters=8, num_layers=2, replay_capacity=2_000, eval_every=400,
    eval_episodes=2, checkpoint_every=400, video_size=64,
)

#: Long runs compile the conv stacks: ~1 min of compilation buys 1.2-1.4x per update on the
#: CPU (experiments/bench/README.md); the short presets below do not.
LONG_RUN: dict[str, Any] = dict(compile_mode="default")

CURL_PRESETS: dict[str, dict[str, Any]] = {
    "curl": dict(LONG_RUN),
    **{
        task: dict(task=task, action_repeat=repeat, lr=CURL_TASK_LR.get(task, CURL_LR),
                   batch_size=CURL_TASK_BATCH.get(task, CURL_BATCH), **LONG_RUN)
        for task, repeat in CURL_ACTION_REPEAT.items()
    },
    "quickstart": QUICKSTART,
    "smoke": SMOKE,
}
