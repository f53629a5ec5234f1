"""A diverged run (inf/NaN weights, losses or actions) stops with one ``error:`` line naming the
setting most likely at fault, the step and the quantity (exit 2), before MuJoCo sees a NaN
action, and never replaces the last good checkpoint."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from digits import write_digits_folder

from curl_moco.experiments import pretrain_moco, train_dmc
from curl_moco.io.checkpoint import load_checkpoint
from curl_moco.io.divergence import (
    TrainingDiverged,
    first_nonfinite_tensor,
    likely_knob,
    nonfinite_values,
)
from curl_moco.rl.config import CurlSacConfig
from curl_moco.rl.trainer import Trainer

RL = ["--preset", "smoke", "--task", "cartpole-swingup", "--image-size", "40", "--crop-size",
      "32", "--num-layers", "2", "--batch-size", "8", "--seed-steps", "80", "--steps", "240",
      "--device", "cpu", "--no-progress", "--no-video", "--no-tensorboard"]
MOCO = ["--arch", "pixel", "--load-size", "32", "--crop-size", "28", "--pixel-layers", "2",
        "--batch-size", "8", "--queue-size", "16", "--epochs", "2", "--num-workers", "0",
        "--device", "cpu", "--no-progress", "--no-tensorboard", "--knn-every-epochs", "0"]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    assert "PhysicsError" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


def test_rl_divergence_is_one_error_line_naming_knob_step_and_quantity(
        tmp_path, capsys, one_thread) -> None:
    knob = "lr=1e+30"
    code = train_dmc.main(RL + ["--lr", "1e30", "--run-dir", str(tmp_path / "run")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith(f"error: {knob}: training diverged ")
    # the step and the quantity: an action, a mean loss or a weight that is inf/NaN
    assert re.search(r"training diverged (at|by|in the episode ending at) environment step "
                     r"\d+: .*(nan|inf)", line), line
    assert "lower " + knob.split("=")[0] in line
    assert "no checkpoint had been written yet" in line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


TINY = dict(task="cartpole-swingup", action_repeat=8, image_size=40, crop_size=32,
            episode_length=80, steps=480, seed_steps=80, batch_size=8, hidden_dim=32,
            feature_dim=16, num_filters=8, num_layers=2, replay_capacity=1000, eval_every=160,
            eval_episodes=1, checkpoint_every=160, video=False, tensorboard=False,
            device="cpu", progress=False, seed=3)


def test_a_temperature_blown_up_by_alpha_lr_blames_alpha_lr(tmp_path, one_thread) -> None:
    """alpha_lr=1e30 sends log_alpha to +1e30 in this run (seed 3), so alpha = inf: the mean
    metrics of the first episode with updates show it and alpha_lr is named."""
    trainer = Trainer(CurlSacConfig(**TINY, run_dir=str(tmp_path), alpha_lr=1e30))
    try:
        with pytest.raises(TrainingDiverged) as caught:
            trainer.run()
    finally:
        trainer.close()
    assert str(caught.value) == (
        "alpha_lr=1e+30: training diverged in the episode ending at environment step 80: mean "
        "alpha=inf over its updates; lower alpha_lr (the usual value is 0.0001); no checkpoint "
        "had been written yet")


def test_nan_action_stops_before_the_environment_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, one_thread) -> None:
    """Weights turned NaN after the checkpoint at 160: the action at the next step is refused
    (MuJoCo never sees it), and checkpoint.pt still holds step 160."""
    trainer = Trainer(CurlSacConfig(**TINY, run_dir=str(tmp_path)))
    trainer.setup()
    act = trainer.agent.act
    stepped: list[np.ndarray] = []
    step = trainer.env.step
    monkeypatch.setattr(trainer.env, "step", lambda a: (stepped.append(a), step(a))[1])

    def poisoned(obs, deterministic=False):
        if trainer.env_steps >= 200:
            with torch.no_grad():
                trainer.agent.actor.trunk[0].weight.fill_(math.nan)
        return act(obs, deterministic)

    monkeypatch.setattr(trainer.agent, "act", poisoned)
    try:
        with pytest.raises(TrainingDiverged) as caught:
            trainer.run()
    finally:
        trainer.close()
    message = str(caught.value)
    assert message.startswith("lr=0.001: training diverged at environment step 200: the "
                              "policy's training action is [nan]")
    assert f"the last checkpoint, {tmp_path / 'checkpoint.pt'}, was written before" in message
    assert all(np.isfinite(a).all() for a in stepped)
    saved = load_checkpoint(tmp_path / "checkpoint.pt", kind="curl_sac")["payload"]
    assert saved["trainer"]["env_steps"] == 160


def test_a_checkpoint_of_nan_weights_is_never_written(tmp_path, one_thread) -> None:
    trainer = Trainer(CurlSacConfig(**TINY, run_dir=str(tmp_path)))
    trainer.setup()
    try:
        before = trainer.save().read_bytes()
        with torch.no_grad():
            trainer.agent.log_alpha.fill_(math.inf)
        with pytest.raises(TrainingDiverged, match=r"^alpha_lr=0.0001: training diverged .*the "
                           r"weights log_alpha hold inf/NaN; lower alpha_lr .*; the last "
                           r"checkpoint, .*, was written before and is kept$"):
            trainer.save()
        assert (tmp_path / "checkpoint.pt").read_bytes() == before
    finally:
        trainer.close()


def test_moco_divergence_is_one_error_line_and_keeps_the_epoch_checkpoint(
        tmp_path, capsys, monkeypatch, one_thread) -> None:
    from curl_moco.pretrain import trainer as moco_trainer

    data = write_digits_folder(tmp_path / "digits", size=32, per_class=4)
    run = tmp_path / "moco"
    original = moco_trainer.Trainer.train_step

    def diverging(self, images):  # a loss that turns NaN in the second epoch
        loss, acc, lr, m = original(self, images)
        return (loss * math.nan if self.epoch == 1 else loss), acc, lr, m

    monkeypatch.setattr(moco_trainer.Trainer, "train_step", diverging)
    code = pretrain_moco.cli(["--data", str(data), *MOCO, "--run-dir", str(run)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("error: lr=0.03: training diverged at step 4 (epoch 1.33): loss=nan; "
                           "lower lr (the effective lr after batch scaling was 0.0009375)")
    assert f"the last checkpoint, {run / 'checkpoint.pt'}, was written before" in line
    saved = load_checkpoint(run / "checkpoint.pt", kind="moco")["payload"]
    assert saved["epoch"] == 1 and saved["step"] == 3  # 3 steps per epoch


def test_moco_lr_far_too_large_is_caught_at_the_first_step(tmp_path, capsys, one_thread) -> None:
    data = write_digits_folder(tmp_path / "digits", size=32, per_class=4)
    code = pretrain_moco.cli(["--data", str(data), *MOCO, "--lr", "1e30", "--run-dir",
                              str(tmp_path / "moco")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("error: lr=1e+30: training diverged at step ")
    assert "no checkpoint had been written yet" in line


def test_helpers_name_what_is_not_finite() -> None:
    assert nonfinite_values({"a": 1.0, "b": math.nan, "c": -math.inf}) == {
        "b": pytest.approx(math.nan, nan_ok=True), "c": -math.inf}
    named = [("w", torch.ones(3)), ("steps", torch.tensor(3)), ("v", torch.tensor([1.0, math.inf]))]
    assert first_nonfinite_tensor(named) == "v"
    assert first_nonfinite_tensor(named[:2]) is None

    class Cfg:
        lr, alpha_lr, init_temperature = 1e-3, 1e-2, 0.1

    usual = {"lr": 1e-3, "alpha_lr": 1e-4, "init_temperature": 0.1}
    assert likely_knob(Cfg, usual, "lr") == ("alpha_lr", "the usual value is 0.0001")
    Cfg.alpha_lr = 1e-4
    assert likely_knob(Cfg, usual, "lr")[0] == "lr"  # nothing above its usual value: fallback

