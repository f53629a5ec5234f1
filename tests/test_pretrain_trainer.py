"""End-to-end pretraining on a tiny real image folder (sklearn digits written by the test):
logs, kNN monitor, corrupt files counted, export, evaluation CLI, resume after SIGKILL, refusal
of corrupt or mismatched checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from digits import write_digits_folder

from curl_moco.io.checkpoint import CheckpointError, load_checkpoint
from curl_moco.io.encoder_export import load_encoder_state
from curl_moco.io.logger import read_csv
from curl_moco.pretrain.config import MocoConfig
from curl_moco.pretrain.trainer import train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), size=32, per_class=10,
                               corrupt=1)


def _cfg(data, run_dir, **kw) -> MocoConfig:
    base = dict(data=str(data), run_dir=str(run_dir), arch="pixel", load_size=32, crop_size=28,
                feature_dim=16, pixel_layers=2, pixel_filters=8, dim=16, head="mlp",
                queue_size=32, temperature=0.2, momentum=0.99, batch_size=16, epochs=3,
                lr=0.5, val_fraction=0.2, num_workers=0, tensorboard=False, progress=False,
                log_every_steps=1, knn_k=5, device="cpu", seed=3, amp="off")
    return MocoConfig(**{**base, **kw})


def test_tiny_run_logs_monitors_counts_and_exports(digits, tmp_path):
    result = train(_cfg(digits, tmp_path / "run", epochs=2))
    run = tmp_path / "run"
    epochs = read_csv(run / "epoch.csv")
    assert [int(r["optimizer_steps"]) for r in epochs] == [5, 10]  # 81 items // 16 = 5 steps
    assert [int(r["skipped_images"]) for r in epochs] == [1, 1]  # the corrupt file, each epoch
    assert int(epochs[-1]["skipped_images_total"]) == 2
    assert 0.3 < float(epochs[-1]["knn_accuracy"]) <= 1.0  # 10 classes: chance is 0.1
    assert [int(r["optimizer_steps"]) for r in read_csv(run / "train.csv")] == list(range(1, 11))
    assert json.loads((run / "config.json").read_text())["queue_size"] == 32
    info = json.loads((run / "run.json").read_text())["run"]
    assert info["train_items"] + info["val_items"] == 101 and info["effective_lr"] == 0.5 / 16
    assert result.step == 10 and result.epochs == 2
    assert result.metrics["knn_accuracy"] == float(epochs[-1]["knn_accuracy"])
    assert result.encoder == run / "encoder.pt" and result.checkpoint == run / "checkpoint.pt"
    ckpt = load_checkpoint(run / "checkpoint.pt", kind="moco")
    assert ckpt["payload"]["epoch"] == 2 and int(ckpt["payload"]["model"]["queue.ptr"]) == 0
    state = load_encoder_state(run / "encoder.pt", {"arch": "pixel", "in_channels": 3})
    prefix = "encoder_q.backbone."
    for key, value in state.items():
        assert torch.equal(value, ckpt["payload"]["model"][prefix + key])


def test_linear_eval_cli_on_checkpoint_and_random_init(digits, tmp_path):
    from curl_moco.experiments.linear_eval import main as linear_eval

    train(_cfg(digits, tmp_path / "run", epochs=1))
    out = linear_eval(["--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                       "--num-workers", "0", "--json-out", str(tmp_path / "eval.json")])
    assert out["val_items"] == 20 and out["data"] == str(digits)  # the run's own held-out split
    assert 0.3 < out["knn_accuracy"] <= 1.0 and 0.3 < out["linear_probe_accuracy"] <= 1.0
    assert json.loads((tmp_path / "eval.json").read_text())["knn_accuracy"] == out["knn_accuracy"]
    rand = linear_eval(["--checkpoint", str(tmp_path / "run" / "encoder.pt"), "--random-init",
                        "--num-workers", "0"])
    assert rand["random_init"] and rand["arch"] == out["arch"] and rand["val_items"] == 20
    with pytest.raises(ValueError, match="checkpoint is required"):
        linear_eval(["--data", str(digits)])


def test_startup_errors(digits, tmp_path):
    with pytest.raises(FileNotFoundError, match="data=.*does not exist"):
        train(_cfg(tmp_path / "nowhere", tmp_path / "a"))
    with pytest.raises(ValueError, match="queue_size=40 must be a multiple"):
        train(_cfg(digits, tmp_path / "b", queue_size=40))
    with pytest.raises(ValueError, match="batch_size=128 is larger than the training split"):
        train(_cfg(digits, tmp_path / "c", batch_size=128, queue_size=128))


def test_corrupt_or_mismatched_checkpoints_are_refused(digits, tmp_path):
    cfg = _cfg(digits, tmp_path / "run", epochs=1)
    train(cfg)
    with pytest.raises(CheckpointError, match="dim=16, this run has dim=32"):
        train(replace(cfg, dim=32, epochs=2))
    path = tmp_path / "run" / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        train(cfg)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated"):
        train(cfg)
    with pytest.raises(ValueError, match="already holds a run.*--no-resume"):
        train(replace(cfg, resume=False))  # never overwritten


_KILLER = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import curl_moco.io.logger as logger_module
from curl_moco.pretrain.config import MocoConfig
from curl_moco.pretrain.trainer import train

original = logger_module.Logger.log
def log_then_die(self, group, step, metrics):
    original(self, group, step, metrics)
    if group == "train" and step == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
logger_module.Logger.log = log_then_die
cfg = json.loads(sys.argv[1])
cfg["lr_milestones"] = tuple(cfg["lr_milestones"])
train(MocoConfig(**cfg))
"""


def test_resume_after_sigkill_loses_nothing(digits, tmp_path):
    cfg = _cfg(digits, tmp_path / "killed", checkpoint_every_steps=3)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _KILLER, json.dumps(asdict(cfg)), "8"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    # Killed after logging step 8; the last checkpoint is from step 6 (mid-epoch 2).
    killed = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["payload"]
    assert (killed["step"], killed["epoch"], killed["step_in_epoch"]) == (6, 1, 1)
    assert int(read_csv(tmp_path / "killed" / "train.csv")[-1]["optimizer_steps"]) == 8
    train(cfg)  # resumes from step 6
    reference = replace(cfg, run_dir=str(tmp_path / "straight"))
    train(reference)
    resumed = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["payload"]
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["payload"]
    assert resumed["step"] == straight["step"] == 15
    for key, value in straight["model"].items():  # weights, key encoder, queue: identical
        assert torch.equal(value, resumed["model"][key]), key
    rows = read_csv(tmp_path / "killed" / "train.csv")
    assert [int(r["optimizer_steps"]) for r in rows] == list(range(1, 16))  # each step logged once
    ref_rows = read_csv(tmp_path / "straight" / "train.csv")
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]
    epochs, ref_epochs = (read_csv(p / "epoch.csv") for p in (tmp_path / "killed",
                                                              tmp_path / "straight"))
    assert [(r["optimizer_steps"], r["loss"], r["knn_accuracy"]) for r in epochs] == [
        (r["optimizer_steps"], r["loss"], r["knn_accuracy"]) for r in ref_epochs]


def test_ctrl_c_checkpoints_the_step_and_resumes_exactly(digits, tmp_path, monkeypatch):
    import signal

    import curl_moco.io.logger as logger_module
    from curl_moco.io.interrupt import TrainingInterrupted

    cfg = _cfg(digits, tmp_path / "stopped", epochs=2)
    original = logger_module.Logger.log

    def log_then_interrupt(self, group, step, metrics):
        original(self, group, step, metrics)
        if group == "train" and step == 7:  # Ctrl-C at the end of step 7 (mid epoch 2)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(logger_module.Logger, "log", log_then_interrupt)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg)
    monkeypatch.undo()
    assert info.value.exit_code == 130 and "at step 7 (epoch 1.40 of 2)" in str(info.value)
    stopped = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["payload"]
    assert (stopped["step"], stopped["epoch"], stopped["step_in_epoch"]) == (7, 1, 2)
    assert not (tmp_path / "stopped" / "encoder.pt").exists()  # exported only when finished
    train(cfg)
    train(replace(cfg, run_dir=str(tmp_path / "straight")))
    resumed, straight = (load_checkpoint(tmp_path / name / "checkpoint.pt")["payload"]
                         for name in ("stopped", "straight"))
    assert resumed["step"] == straight["step"] == 10
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [r["loss"] for r in read_csv(tmp_path / "stopped" / "train.csv")] == [
        r["loss"] for r in read_csv(tmp_path / "straight" / "train.csv")]


_DDP_STOPPER = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from curl_moco.pretrain import trainer as trainer_module
from curl_moco.experiments import pretrain_moco

original = trainer_module.Trainer.train_step
def step_then_signal(self, images):
    out = original(self, images)
    if os.environ.get("STOP_RANK") == str(self.ctx.rank) and self.step == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # only this rank is told to stop, during step 2
    return out
trainer_module.Trainer.train_step = step_then_signal
sys.exit(pretrain_moco.cli(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_on_one_rank_stops_all_ranks_after_the_same_step(digits, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(_DDP_STOPPER)
    run_dir = tmp_path / "ddp"
    argv = ["--data", str(digits), "--run-dir", str(run_dir), "--arch", "pixel", "--load-size",
            "32", "--crop-size", "28", "--feature-dim", "16", "--pixel-layers", "2",
            "--pixel-filters", "8", "--dim", "16", "--queue-size", "32", "--batch-size", "16",
            "--epochs", "1", "--val-fraction", "0.2", "--num-workers", "0", "--no-tensorboard",
            "--no-progress", "--device", "cpu", "--knn-k", "5", "--log-every-steps", "1",
            "--amp", "off"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
              "2"]
    proc = subprocess.run([*launch, str(driver), *argv], cwd=REPO, env=dict(env, STOP_RANK="1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    message = "interrupted by SIGTERM at step 2 (epoch 0.40 of 1)"  # printed once, by rank 0
    assert proc.stderr.count(message) == 1, proc.stderr[-3000:]
    # launched as a script: the resume command names the installed module
    assert ("resume with: torchrun --nproc_per_node 2 -m curl_moco.experiments.pretrain_moco "
            "--config") in proc.stderr
    assert "exitcode  : 143" in proc.stderr  # both ranks: 128 + SIGTERM
    for package in ("curl_moco", "envs", "experiments"):  # (torchrun's own report may pass
        # through .venv/, which lives in the repository)
        assert f'File "{REPO / package}' not in proc.stderr  # none through this project's code
    ckpt = load_checkpoint(run_dir / "checkpoint.pt", kind="moco")
    assert ckpt["payload"]["step"] == 2 and len(ckpt["payload"]["ranks"]) == 2
    done = subprocess.run([*launch, str(driver), *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(run_dir / "checkpoint.pt")["payload"]["step"] == 5
    assert [int(r["optimizer_steps"]) for r in read_csv(run_dir / "train.csv")] == [1, 2, 3, 4, 5]


def test_sigterm_to_the_process_group_with_loader_workers(digits, tmp_path):
    """torchrun stops a worker by sending SIGTERM to its whole process group, data loader
    workers included: they ignore it, so the main process can finish its step and save."""
    import signal
    import time

    run_dir = tmp_path / "run"
    cfg = _cfg(digits, run_dir, num_workers=2)
    argv = [sys.executable, "-m", "experiments.pretrain_moco", "--config", str(tmp_path / "c.json")]
    (tmp_path / "c.json").write_text(json.dumps(asdict(cfg)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    csv_path, deadline, sent = run_dir / "train.csv", time.time() + 120, False
    try:
        while time.time() < deadline and proc.poll() is None:
            if csv_path.is_file() and len(read_csv(csv_path)) >= 3:
                os.killpg(proc.pid, signal.SIGTERM)
                sent = True
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and not sent:
            proc.kill()
        err = proc.communicate(timeout=120)[1]
    assert sent, err[-2000:]
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    stopped = load_checkpoint(run_dir / "checkpoint.pt")["payload"]["step"]
    assert f"interrupted by SIGTERM at step {stopped} (epoch " in err
    assert f"resume with: {sys.executable} -m experiments.pretrain_moco --config" in err
    train(cfg)
    assert load_checkpoint(run_dir / "checkpoint.pt")["payload"]["step"] == 15
    assert [int(r["optimizer_steps"]) for r in read_csv(csv_path)] == list(range(1, 16))
