"""The documented path from pretraining to the agent (README, "Pretrain the agent's encoder"):
collect frames of the task -> MoCo on the agent's own pixel encoder (same frame stack, render
and crop sizes, layers, filters) -> exported encoder -> ``train_dmc --init-encoder``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curl_moco.experiments.collect_frames import main as collect
from curl_moco.experiments.pretrain_moco import main as pretrain
from curl_moco.io.checkpoint import CheckpointError
from curl_moco.io.encoder_export import load_encoder_state
from curl_moco.rl.config import CurlSacConfig
from curl_moco.rl.trainer import Trainer

# The agent: 40 px renders, 32 px crops, 3-frame stacks, 2 conv layers of 8 filters, 16 features.
AGENT = dict(task="cartpole-swingup", action_repeat=8, image_size=40, crop_size=32,
             frame_stack=3, num_layers=2, num_filters=8, feature_dim=16, hidden_dim=32,
             episode_length=80, steps=160, seed_steps=80, batch_size=8, replay_capacity=500,
             eval_every=80, eval_episodes=1, checkpoint_every=80, video=False, device="cpu",
             progress=False, tensorboard=False)
PRETRAIN = ["--preset", "mocov2", "--arch", "pixel", "--frame-stack", "3", "--load-size", "40",
            "--augment", "crop", "--pixel-layers", "2", "--pixel-filters", "8",
            "--feature-dim", "16", "--dim", "16", "--queue-size", "32", "--batch-size", "16",
            "--epochs", "1", "--knn-every-epochs", "0", "--val-fraction", "0",
            "--num-workers", "0", "--device", "cpu", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("frames")
    collect(["--out", str(out), "--domains", "cartpole", "--frames-per-domain", "48",
             "--episode-frames", "16", "--image-size", "40", "--seed", "0"])
    return out


def test_pretrained_pixel_encoder_initialises_the_agent(frames, tmp_path, one_thread) -> None:
    run = tmp_path / "moco"
    pretrain(["--data", str(frames), *PRETRAIN, "--crop-size", "32", "--run-dir", str(run)])
    encoder = run / "encoder.pt"
    state = load_encoder_state(encoder, {"arch": "pixel", "in_channels": 9, "image_size": 32})
    trainer = Trainer(CurlSacConfig(**AGENT, run_dir=str(tmp_path / "agent"),
                                    init_encoder=str(encoder)))
    try:
        trainer.setup()
        loaded = trainer.agent.critic.encoder.state_dict()
        for key, value in state.items():
            assert torch.equal(loaded[key], value), key
    finally:
        trainer.close()


def test_pretraining_at_another_crop_size_is_refused_with_the_flag(frames, tmp_path,
                                                                   one_thread) -> None:
    """Pretraining at the default crop size instead of the agent's gives a clear refusal that
    names the pretraining flag to change."""
    run = tmp_path / "moco"
    pretrain(["--data", str(frames), *PRETRAIN, "--crop-size", "24", "--run-dir", str(run)])
    trainer = Trainer(CurlSacConfig(**AGENT, run_dir=str(tmp_path / "agent"),
                                    init_encoder=str(run / "encoder.pt")))
    try:
        with pytest.raises(CheckpointError, match="image_size=24.*image_size=32.*--crop-size"):
            trainer.setup()
    finally:
        trainer.close()
