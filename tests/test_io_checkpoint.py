"""Checkpoints: round trip, atomic writes, and refusal of bad files with a reason."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from torch import nn

from curl_moco.io.atomic import remove_stale_temp_files
from curl_moco.io.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    check_compatible,
    latest_checkpoint,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from curl_moco.io.encoder_export import load_encoder_into, save_encoder_state
from curl_moco.io.lock import FolderInUseError
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
    with pytest.raises(CheckpointError, match="in_channels=9; this model needs in_channels=3"):
        load_encoder_into(target, tmp_path / "enc.pt", {"in_channels": 3})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_encoder_into(nn.Linear(5, 3), tmp_path / "enc.pt", {"arch": "pixel"})


# ---------------------------------------------------------------- faults
def test_flipped_header_bit_is_corruption_not_a_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _payload(), kind="curl_sac", config=CONFIG)
    data = path.read_bytes()
    at = data.index(b'"curl_sac"') + 8  # 'curl_sac' -> 'curl_sab': still valid JSON
    flipped = bytearray(data)
    flipped[at] ^= 0x01
    path.write_bytes(bytes(flipped))
    for read in (read_header, lambda p: load_checkpoint(p, kind="curl_sac")):
        with pytest.raises(CheckpointError, match="corrupt: header checksum"):
            read(path)
    length = bytearray(data)
    length[9] ^= 0x40  # header length field: would point past the end of the file
    path.write_bytes(bytes(length))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_header(path)


def test_version_1_files_are_still_read(tmp_path):
    import hashlib
    import io
    import json
    import struct

    buffer = io.BytesIO()
    torch.save({"step": 5}, buffer)
    payload = buffer.getvalue()
    header = json.dumps({"version": 1, "kind": "agent", "config": {"a": 1},
                         "sha256": hashlib.sha256(payload).hexdigest(),
                         "payload_bytes": len(payload)}).encode()
    path = tmp_path / "old.pt"
    path.write_bytes(b"CMCKPT\x00\x01" + struct.pack("<Q", len(header)) + header + payload)
    assert load_checkpoint(path, kind="agent")["payload"]["step"] == 5


def test_checkpoint_has_the_normal_file_mode(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1}, kind="agent", config={})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_keeps_previous_checkpoint(tmp_path, monkeypatch, code):
    from curl_moco.io import atomic

    path = save_checkpoint(tmp_path / "c.pt", {"step": 1}, kind="agent", config={})
    before = path.read_bytes()
    real_write = atomic._write_all

    def full_disk(fd, parts):
        os.write(fd, b"x" * 1000)  # part of the file reaches the disk, then the device is full
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic, "_write_all", full_disk)
    with pytest.raises(CheckpointWriteError, match=os.strerror(code)) as info:
        save_checkpoint(path, {"step": 2}, kind="agent", config={})
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == before  # previous checkpoint intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # temporary file removed
    monkeypatch.setattr(atomic, "_write_all", real_write)
    assert load_checkpoint(save_checkpoint(path, {"step": 2}, kind="agent", config={})
                           )["payload"]["step"] == 2


def test_stale_temporary_files_are_removed(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1}, kind="agent", config={})
    stale = [tmp_path / ".checkpoint.pt.k3j2x9.tmp", tmp_path / ".encoder.pt.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (tmp_path / "keep.tmp").write_text("not ours")
    removed = remove_stale_temp_files(tmp_path, ("checkpoint.pt", "encoder.pt"))
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "keep.tmp"]
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_run_folder_resume_convention(tmp_path) -> None:
    """Both trainers' run folders: continue a run of the same config (fields that may change
    aside, missing fields = their defaults), refuse another run or --no-resume over a checkpoint."""
    import dataclasses

    from curl_moco.io.run import RunDir

    @dataclasses.dataclass
    class Toy:
        lr: float = 0.1
        depth: int = 2
        device: str = "cpu"

    folder = RunDir(tmp_path / "run", Toy(), kind="toy", may_change={"device"})
    assert folder.check(resume=True) is None
    folder.prepare()
    assert json.loads(folder.config_path.read_text()) == {"lr": 0.1, "depth": 2, "device": "cpu"}
    folder.save({"step": 3})
    with pytest.raises(FolderInUseError, match=f"PID {os.getpid()}"):  # one writer per folder
        RunDir(tmp_path / "run", Toy(), kind="toy", may_change={"device"}).check(resume=True)
    folder.release()
    same = RunDir(tmp_path / "run", Toy(device="cuda"), kind="toy", may_change={"device"})
    assert same.check(resume=True) == folder.checkpoint_path
    assert same.load()["step"] == 3
    same.release()
    with pytest.raises(CheckpointError, match="lr=0.1, this run has lr=0.2"):
        RunDir(tmp_path / "run", Toy(lr=0.2), kind="toy", may_change=()).check(resume=True)
    with pytest.raises(ValueError, match="already holds a run.*--no-resume"):
        same.check(resume=False)
    with pytest.raises(CheckpointError, match="'toy' checkpoint, not a 'other' run"):
        RunDir(tmp_path / "run", Toy(), kind="other", may_change=()).check(resume=True)

    @dataclasses.dataclass
    class Grown(Toy):
        width: int = 8  # added after the checkpoint was written: counts as its default

    grown = RunDir(tmp_path / "run", Grown(), kind="toy", may_change=())
    assert grown.check(True) is not None
    grown.release()
    with pytest.raises(CheckpointError, match="width=8, this run has width=9"):
        RunDir(tmp_path / "run", Grown(width=9), kind="toy", may_change=()).check(True)


def test_output_file_may_replace_only_a_checkpoint_of_its_own_kind(tmp_path):
    """An export may overwrite an older export; no output overwrites a run's checkpoint."""
    from curl_moco.io.checks import check_output_file
    from curl_moco.io.errors import UsageError

    run_ckpt = save_checkpoint(tmp_path / "checkpoint.pt", {"x": 1}, kind="curl_sac", config={})
    export = save_checkpoint(tmp_path / "enc.pt", {"x": 1}, kind="encoder", config={})
    (tmp_path / "notes.json").write_text("{}")
    check_output_file("out", export, replaces_kind="encoder")
    check_output_file("out", tmp_path / "notes.json")
    check_output_file("out", tmp_path / "new.pt")
    with pytest.raises(UsageError, match="kind 'curl_sac': writing it would destroy it"):
        check_output_file("out", run_ckpt, replaces_kind="encoder")
    with pytest.raises(UsageError, match="kind 'encoder'"):
        check_output_file("json_out", export)
