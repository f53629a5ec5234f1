"""CURL-SAC presets: overrides of :class:`~curl_moco.rl.config.CurlSacConfig` fields.

- ``curl`` (default): the paper's settings; per-task values (action repeat, lr, batch) are
  filled in from the task (``--task walker-walk --preset curl``). It and the per-task presets
  compile the conv stacks (``compile_mode="default"``, for runs of hours).
- one preset per CURL benchmark task (``--preset cheetah-run``): the task and its values
  spelled out, from its row of :data:`envs.tasks.CURL_TASKS`.
- ``quickstart``: a few minutes of real training on cartpole swingup on a laptop CPU
  (smaller images, networks and batch; 2-step-shorter evaluation); every field can still be
  overridden.
- ``smoke``: a tiny configuration that only checks the pipeline (seconds).
"""

from __future__ import annotations

from typing import Any

from curl_moco.envs.tasks import CURL_TASKS

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
        task: dict(task=task, action_repeat=facts.action_repeat, lr=facts.lr,
                   batch_size=facts.batch_size, **LONG_RUN)
        for task, facts in CURL_TASKS.items()
    },
    "quickstart": QUICKSTART,
    "smoke": SMOKE,
}
