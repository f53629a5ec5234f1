"""Versioned, validated, atomically written checkpoints.

File layout (little-endian), format version 2::

    b"CMCKPT\\x00\\x02"                 8-byte magic (the last byte is the format version)
    header length                      8 bytes, unsigned
    header SHA-256                     32 bytes, digest of the header bytes
    header                             UTF-8 JSON: version, kind, config, sha256, payload_bytes
    payload                            ``torch.save`` bytes of a dict

The payload must hold only tensors and Python primitives (dict/list/tuple/str/int/float/bool/None):
it is read back with ``torch.load(weights_only=True)``, so a checkpoint cannot run code on load.
The header's own digest and the payload's SHA-256 (in the header) catch corrupt and truncated
files before anything is parsed or unpickled: a flipped bit anywhere is reported as corruption.
Version 1 files (no header digest) are still read.

Writes go to a temporary ``.<name>.<random>.tmp`` in the same folder, then are renamed; a write
that fails (disk full, read-only) removes the temporary file, keeps the previous checkpoint and
raises :class:`CheckpointWriteError`. :func:`curl_moco.io.atomic.remove_stale_temp_files` clears
temporary files left by a process killed while writing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from curl_moco.io.atomic import atomic_write
from curl_moco.io.errors import UsageError, os_error_message

MAGIC_V1 = b"CMCKPT\x00\x01"
MAGIC = b"CMCKPT\x00\x02"
FORMAT_VERSION = 2
CHECKPOINT_NAME = "checkpoint.pt"
_LENGTH = struct.Struct("<Q")
_DIGEST_BYTES = 32


class CheckpointError(UsageError, RuntimeError):
    """A checkpoint that is missing, corrupt, truncated, of another kind or made for another run
    (a :class:`UsageError`: the entry points report it on one line)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, read-only, permissions); the previous
    checkpoint is intact and no temporary file is left behind."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], *, kind: str,
                    config: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: a temporary file in the same folder, fsync, then rename.

    A reader (or a run killed half-way through saving) therefore sees either the previous
    complete checkpoint or the new complete one, never a partial file. The file gets the normal
    mode of new files (``0o666`` minus the umask). Raises :class:`CheckpointWriteError` when the
    disk is full or the folder is not writable.
    """
    path = Path(path)
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
    try:
        atomic_write(path, [MAGIC, _LENGTH.pack(len(header)), hashlib.sha256(header).digest(),
                            header, data])
    except OSError as error:
        raise CheckpointWriteError(
            f"could not write checkpoint {path}: "
            f"{os_error_message(OSError(error.errno, error.strerror))}; the previous "
            "checkpoint (if any) is intact") from error
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
    """The run's checkpoint file, or None when the run has not written one yet. Anything else
    under the checkpoint's name (a folder, a symlink to nothing, a symlink loop, a FIFO) raises
    :class:`CheckpointError`: taking it for "no checkpoint" would restart the run from step 0
    and drop its logged rows."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if path.is_file():
        return path
    if not os.path.lexists(path):
        return None
    if path.is_symlink() and not path.exists():
        problem = f"is a symlink to {shlex.quote(os.readlink(path))}, which does not exist"
    elif path.is_dir():
        problem = "is a folder, not a checkpoint file"
    else:
        problem = "is not a regular file"
    raise CheckpointError(f"{shlex.quote(str(path))} {problem}; the run cannot be resumed from "
                          "it and will not start over on top of it: restore the checkpoint file, "
                          "or move the folder away to start a new run")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the checkpoint file inside "
                              f"it (e.g. {path / CHECKPOINT_NAME})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def _read_header(f, path: Path) -> dict[str, Any]:
    magic = f.read(len(MAGIC))
    if magic not in (MAGIC, MAGIC_V1):
        raise CheckpointError(f"{path} is not a curl_moco checkpoint (bad magic bytes)")
    raw_length = f.read(_LENGTH.size)
    if len(raw_length) != _LENGTH.size:
        raise CheckpointError(f"{path} is truncated: header length missing")
    (length,) = _LENGTH.unpack(raw_length)
    digest = f.read(_DIGEST_BYTES) if magic == MAGIC else None
    if digest is not None and len(digest) != _DIGEST_BYTES:
        raise CheckpointError(f"{path} is truncated: header checksum missing")
    if length > max(0, _file_size(f) - f.tell()):
        raise CheckpointError(f"{path} is corrupt or truncated: header length {length} exceeds "
                              "the file")
    raw_header = f.read(length)
    if len(raw_header) != length:
        raise CheckpointError(f"{path} is truncated: header incomplete")
    if digest is not None and hashlib.sha256(raw_header).digest() != digest:
        raise CheckpointError(f"{path} is corrupt: header checksum does not match")
    try:
        header = json.loads(raw_header)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: header is not valid JSON ({error})") from error
    expected = FORMAT_VERSION if magic == MAGIC else 1
    if not isinstance(header, dict) or header.get("version") != expected:
        version = header.get("version") if isinstance(header, dict) else None
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this code reads versions 1 "
            f"and {FORMAT_VERSION}")
    return header


def _file_size(f) -> int:
    return os.fstat(f.fileno()).st_size


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
