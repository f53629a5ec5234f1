"""Checkpoints: round trip, atomic writes, and refusal of bad files with a reason."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from curl_moco.io.checkpoint import (
    CheckpointError,
    check_compatible,
    latest_checkpoint,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from curl_moco.io.encoder_export import load_encoder_into, save_encoder_state
from curl_moco.runtime import capture_rng_state, restore_rng_state

CONFIG = {"task": "cartpole-swingup", "feature_dim": 50, "crop": (84, 84)}


def _payload() -> dict:
    return {"weights": torch.arange(12.0).reshape(3, 4), "step": 7, "rng": capture_rng_state()}


def test_round_trip_returns_payload_and_config(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint.pt", _payload(), kind="agent", config=CONFIG)
    loaded = load_checkpoint(path, kind="agent")
    assert torch.equal(loaded["payload"]["weights"], torch.arange(12.0).reshape(3, 4))
    assert loaded["payload"]["step"] == 7
    assert loaded["config"]["task"] == "cartpole-swingup"
    assert read_header(path)["kind"] == "agent"
    assert latest_checkpoint(tmp_path) == path
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rng_state_survives_checkpoint(tmp_path):
    state = capture_rng_state()
    expected = (torch.rand(3), __import__("numpy").random.rand(3), __import__("random").random())
    save_checkpoint(tmp_path / "c.pt", {"rng": state}, kind="agent", config={})
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["payload"]["rng"])
    again = (torch.rand(3), __import__("numpy").random.rand(3), __import__("random").random())
    assert torch.equal(expected[0], again[0])
    assert (expected[1] == again[1]).all() and expected[2] == again[2]


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    assert latest_checkpoint(tmp_path) is None


def test_truncated_file_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _payload(), kind="agent", config=CONFIG)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    path.write_bytes(data[:10])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_corrupt_payload_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _payload(), kind="agent", config=CONFIG)
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a curl_moco checkpoint"):
        load_checkpoint(path)


def test_wrong_kind_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _payload(), kind="moco", config=CONFIG)
    with pytest.raises(CheckpointError, match="'moco' checkpoint, expected a 'agent'"):
        load_checkpoint(path, kind="agent")


class NotATensor:
    """A picklable object that must not be unpickled from a checkpoint."""


def test_payload_with_arbitrary_objects_cannot_be_loaded(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"x": NotATensor()}, kind="agent", config={})
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path)


def test_check_compatible_names_the_setting():
    check_compatible(CONFIG, dict(CONFIG, seed=3), ["task", "feature_dim", "crop"])
    with pytest.raises(CheckpointError, match="task='cartpole-swingup'.*task='walker-walk'"):
        check_compatible(CONFIG, dict(CONFIG, task="walker-walk"), ["task"])
    # Tuples saved through JSON come back as lists: they still match.
    check_compatible({"crop": [84, 84]}, {"crop": (84, 84)}, ["crop"])


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1}, kind="agent", config={})

    def broken_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2}, kind="agent", config={})
    monkeypatch.undo()
    assert load_checkpoint(path)["payload"]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_encoder_export_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    source, target = nn.Linear(4, 3), nn.Linear(4, 3)
    arch = {"arch": "pixel", "in_channels": 9, "image_size": 84}
    save_encoder_state(tmp_path / "enc.pt", source, arch)
    load_encoder_into(target, tmp_path / "enc.pt", {"arch": "pixel", "in_channels": 9})
    assert torch.equal(source.weight, target.weight)
    with pytest.raises(CheckpointError, match="in_channels=9, this model needs in_channels=3"):
        load_encoder_into(target, tmp_path / "enc.pt", {"in_channels": 3})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_encoder_into(nn.Linear(5, 3), tmp_path / "enc.pt", {"arch": "pixel"})
