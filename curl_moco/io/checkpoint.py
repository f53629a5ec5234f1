"""Versioned, validated, atomically written checkpoints.

File layout (little-endian)::

    b"CMCKPT\\x00\\x01"                 8-byte magic
    header length                      8 bytes, unsigned
    header                             UTF-8 JSON: version, kind, config, sha256, payload_bytes
    payload                            ``torch.save`` bytes of a dict

The payload must hold only tensors and Python primitives (dict/list/tuple/str/int/float/bool/None):
it is read back with ``torch.load(weights_only=True)``, so a checkpoint cannot run code on load.
The SHA-256 in the header catches corrupt and truncated files before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

MAGIC = b"CMCKPT\x00\x01"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
_LENGTH = struct.Struct("<Q")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, truncated, of another kind or made for another run."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], *, kind: str,
                    config: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: a temporary file in the same folder, fsync, then rename.

    A reader (or a run killed half-way through saving) therefore sees either the previous
    complete checkpoint or the new complete one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    header = json.dumps({
        "version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload_bytes": len(data),
        "created_unix_s": time.time(),
        "torch": torch.__version__,
    }, default=str).encode()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(_LENGTH.pack(len(header)))
            f.write(header)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Header of a checkpoint (kind, config, version...) without loading the payload."""
    with open(_existing(path), "rb") as f:
        return _read_header(f, Path(path))


def load_checkpoint(path: str | os.PathLike, *, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Validate and load a checkpoint written by :func:`save_checkpoint`.

    Returns ``{"payload", "config", "kind", "version"}``. Raises :class:`CheckpointError` with the
    reason for a missing, foreign, truncated, corrupt, wrong-version or wrong-kind file.
    """
    path = _existing(path)
    with open(path, "rb") as f:
        header = _read_header(f, path)
        if kind is not None and header["kind"] != kind:
            raise CheckpointError(
                f"{path} is a {header['kind']!r} checkpoint, expected a {kind!r} checkpoint")
        data = f.read()
    expected = header["payload_bytes"]
    if len(data) != expected:
        raise CheckpointError(
            f"{path} is truncated or has trailing bytes: payload is {len(data)} bytes, "
            f"header says {expected}")
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise CheckpointError(f"{path} is corrupt: payload checksum does not match its header")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the reason
        raise CheckpointError(f"{path}: payload could not be read: {error}") from error
    return {"payload": payload, "config": header["config"], "kind": header["kind"],
            "version": header["version"]}


def check_compatible(saved_config: dict[str, Any], config: dict[str, Any],
                     keys: Iterable[str], *, what: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the first of ``keys`` whose value differs."""
    for key in keys:
        saved, current = saved_config.get(key), config.get(key)
        if _normalise(saved) != _normalise(current):
            raise CheckpointError(
                f"{what} was made with {key}={saved!r}, this run has {key}={current!r}")


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's checkpoint file, or None when the run has not written one yet."""
    path = Path(run_dir) / CHECKPOINT_NAME
    return path if path.is_file() else None


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def _read_header(f, path: Path) -> dict[str, Any]:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise CheckpointError(f"{path} is not a curl_moco checkpoint (bad magic bytes)")
    raw_length = f.read(_LENGTH.size)
    if len(raw_length) != _LENGTH.size:
        raise CheckpointError(f"{path} is truncated: header length missing")
    (length,) = _LENGTH.unpack(raw_length)
    raw_header = f.read(length)
    if len(raw_header) != length:
        raise CheckpointError(f"{path} is truncated: header incomplete")
    try:
        header = json.loads(raw_header)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: header is not valid JSON ({error})") from error
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {header.get('version')!r}; "
            f"this code reads version {FORMAT_VERSION}")
    return header


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
