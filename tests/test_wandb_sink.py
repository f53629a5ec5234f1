"""The Weights & Biases sink of both trainers, run with WANDB_MODE=offline: the offline run file
holds the resolved config, the metrics against the trainer's step counter and the evaluation
video; resuming continues the same W&B run; without wandb installed --wandb is one error line."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest
import torch
from digits import write_digits_folder

pytest.importorskip("wandb")

from curl_moco.experiments import pretrain_moco, train_dmc  # noqa: E402
from curl_moco.io.wandb_sink import INSTALL_COMMAND, RUN_ID_FILE  # noqa: E402
from curl_moco.pretrain.config import MocoConfig  # noqa: E402
from curl_moco.pretrain.trainer import train as pretrain  # noqa: E402
from curl_moco.rl.config import CurlSacConfig  # noqa: E402
from curl_moco.rl.trainer import train  # noqa: E402

RL = dict(task="cartpole-swingup", action_repeat=8, image_size=40, crop_size=32,
          episode_length=80, steps=160, seed_steps=80, batch_size=8, hidden_dim=32,
          feature_dim=16, num_filters=8, num_layers=2, replay_capacity=1000, eval_every=160,
          eval_episodes=1, checkpoint_every=160, video_size=32, device="cpu", progress=False,
          tensorboard=False, seed=3, name="wb")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def offline_records(run_dir: Path, timeout: float = 60.0) -> list[tuple[Path, list]]:
    """Per offline run folder under ``run_dir/wandb``: the records of its ``run-<id>.wandb``,
    once its last record (``exit``) is there: W&B's service process may still be writing the
    file when ``finish()`` has returned."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [(folder, _read_records(next(folder.glob("run-*.wandb"))))
                for folder in sorted((run_dir / "wandb").glob("offline-run-*"))]
        complete = all(records and records[-1].WhichOneof("record_type") == "exit"
                       for _, records in runs)
        if complete or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def _read_records(path: Path) -> list:
    """The records of a W&B run file: a LevelDB-style log of protobuf records (7-byte header,
    32 KiB blocks of chunks, each with a 7-byte header: CRC, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, pending, records = path.read_bytes(), 7, b"", []
    if len(data) < 7:  # not even the header yet
        return records
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # still being written
            break
        if kind == 0 and length == 0:  # block padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record or a record's last chunk
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history(records) -> list[dict[str, object]]:
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
             for item in r.history.item} for r in records if r.WhichOneof("record_type")
            == "history"]


def run_config(records) -> dict[str, object]:
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    return {item.key: json.loads(item.value_json) for item in run.config.update
            if item.key != "_wandb"}


def test_curl_run_logs_config_metrics_and_video_and_resumes_the_same_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    train(CurlSacConfig(**RL, run_dir=str(run_dir), wandb="curl-moco-tests"))
    run_id = (run_dir / RUN_ID_FILE).read_text().strip()
    ((folder, records),) = offline_records(run_dir)
    assert folder.name.endswith(run_id)
    config = run_config(records)
    saved = json.loads((run_dir / "config.json").read_text())
    assert config == saved and config["lr"] == 1e-3 and config["wandb"] == "curl-moco-tests"
    rows = history(records)
    train_rows = [r for r in rows if "train/episode_reward" in r]
    assert [r["env_steps"] for r in train_rows] == [80, 160]
    assert [r["train/agent_steps"] for r in train_rows] == [10, 20]
    assert "train/critic_loss" in train_rows[-1] and "train/env_steps" not in train_rows[-1]
    (ev,) = [r for r in rows if "eval/episode_reward" in r]
    assert ev["env_steps"] == 160
    csv_reward = float((run_dir / "eval.csv").read_text().splitlines()[1].split(",")[1])
    assert ev["eval/episode_reward"] == pytest.approx(csv_reward)
    (video,) = [r for r in rows if "eval/video/path" in r]
    assert video["env_steps"] == 160 and video["eval/video/_type"] == "video-file"
    media = folder / "files" / video["eval/video/path"]
    assert media.read_bytes() == (run_dir / "videos" / "eval_160.mp4").read_bytes()

    train(CurlSacConfig(**{**RL, "steps": 240}, run_dir=str(run_dir), wandb="curl-moco-tests"))
    runs = offline_records(run_dir)
    assert len(runs) == 2 and all(f.name.endswith(run_id) for f, _ in runs)  # same W&B run
    resumed = [r for r in history(runs[1][1]) if "train/episode_reward" in r]
    assert [r["env_steps"] for r in resumed] == [240]


def test_pretraining_logs_metrics_against_optimizer_steps(tmp_path):
    digits = write_digits_folder(tmp_path / "digits", size=32, per_class=4)
    run_dir = tmp_path / "moco"
    cfg = MocoConfig(data=str(digits), run_dir=str(run_dir), arch="pixel", load_size=32,
                     crop_size=28, feature_dim=16, pixel_layers=2, pixel_filters=8, dim=16,
                     queue_size=16, batch_size=8, epochs=1, val_fraction=0.2, num_workers=0,
                     tensorboard=False, progress=False, log_every_steps=1, knn_k=3,
                     device="cpu", seed=3, amp="off", wandb="curl-moco-tests")
    pretrain(cfg)
    ((_, records),) = offline_records(run_dir)
    assert run_config(records)["pixel_layers"] == 2
    rows = history(records)
    steps = [r["optimizer_steps"] for r in rows if "train/loss" in r]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 3
    (epoch,) = [r for r in rows if "epoch/loss" in r]
    assert epoch["optimizer_steps"] == steps[-1]


@pytest.mark.parametrize("command", ["train_dmc", "pretrain_moco"])
def test_without_wandb_installed_the_flag_is_one_error_line(command, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    if command == "train_dmc":
        status = train_dmc.main(["--preset", "smoke", "--run-dir", str(tmp_path / "run"),
                                 "--wandb", "proj"])
    else:
        digits = write_digits_folder(tmp_path / "digits", size=32, per_class=2)
        status = pretrain_moco.cli(["--data", str(digits), "--arch", "pixel",
                                    "--run-dir", str(tmp_path / "run"), "--wandb", "proj"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err == (f"error: wandb='proj': the wandb package is not installed; install it with "
                   f"{INSTALL_COMMAND} (or pip install wandb), or drop --wandb\n")
    assert not (tmp_path / "run").exists()


def test_a_project_name_wandb_would_refuse_is_an_error(tmp_path, capsys):
    status = train_dmc.main(["--preset", "smoke", "--run-dir", str(tmp_path / "run"),
                             "--wandb", "team/proj"])
    assert status == 2
    assert "wandb='team/proj' is not a W&B project name" in capsys.readouterr().err
