"""Atomic file writes: a reader (or a run killed while writing) sees the previous complete file or
the new complete one, never a partial or empty file.

The bytes go to a temporary ``.<name>.<random>.tmp`` in the same folder, are forced to disk and
the file is renamed over ``path``. When the write fails (disk full, quota, read-only, killed) the
temporary file is removed and the ``OSError`` names ``path`` (a full disk raised by ``write()``
names no file by itself). :func:`remove_stale_temp_files` clears
temporary files of a process that died mid-write.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("curl_moco")


def atomic_write(path: str | os.PathLike, data: bytes | str | Iterable[bytes | memoryview]
                 ) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a sequence of byte chunks) to ``path``
    atomically; the file gets the normal mode of new files (``0o666`` minus the umask)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            _write_all(fd, parts)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except OSError as error:
        _remove(tmp_name)
        if error.filename is None or error.filename == tmp_name:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        _remove(tmp_name)
        raise
    fsync_dir(path.parent)
    return path


def remove_stale_temp_files(folder: str | os.PathLike,
                            names: Iterable[str] = ("checkpoint.pt",)) -> list[Path]:
    """Delete ``.<name>*.tmp`` files in ``folder`` left by a process killed while writing
    ``name`` (a glob pattern, e.g. ``*.csv``, matches several); returns the files removed.
    Call before a run writes to ``folder``."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for name in names:
        for tmp in folder.glob(f".{name}*.tmp"):
            try:
                size = tmp.stat().st_size
                tmp.unlink()
            except FileNotFoundError:
                continue
            log.info("removed %s (%.1f MB), left by an interrupted write", tmp, size / 2**20)
            removed.append(tmp)
    return removed


def _write_all(fd: int, parts: Iterable[bytes | memoryview]) -> None:
    """Write every chunk to the open file ``fd`` and force it to disk (fsync)."""
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            view = view[os.write(fd, view):]
    os.fsync(fd)


def fsync_dir(directory: Path) -> None:
    """Force a folder's entries (a rename) to disk; best effort."""
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


def _remove(name: str | None) -> None:
    if name is not None:
        Path(name).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
