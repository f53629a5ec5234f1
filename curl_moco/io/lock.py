"""One writer per output folder: an advisory lock held by the process that writes the folder.

The lock is ``<folder>/.lock``, locked with ``flock`` and holding the owner's PID, host, start
time and command line (JSON). The kernel releases a ``flock`` when its process dies, however it
dies, so a lock file left by a killed run is *stale*: the next run takes it over (and says so).
A second process that finds the lock held is refused with a :class:`FolderInUseError` naming the
holder's PID and command. A clean :meth:`FolderLock.release` deletes the file while still holding
the lock; :meth:`FolderLock.acquire` re-checks after locking that it locked the file that is
still on disk, so a release racing with an acquire never leaves two holders.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from curl_moco.io.errors import UsageError

log = logging.getLogger("curl_moco")

LOCK_NAME = ".lock"


class FolderInUseError(UsageError):
    """Another running process holds the folder's lock."""


class FolderLock:
    """The lock of ``folder`` (a run folder or an output data set); ``setting`` names the flag
    that chose the folder in messages (``run_dir``, ``out``)."""

    def __init__(self, folder: str | os.PathLike, setting: str = "run_dir") -> None:
        self._fd: int | None = None
        self.folder = Path(folder)
        self.setting = setting
        self.path = self.folder / LOCK_NAME

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Lock the folder (created if missing) for this process; raises
        :class:`FolderInUseError` when another live process holds it. Idempotent."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if not self._try_lock(fd):
                    raise FolderInUseError(self._in_use_message(_read_owner(fd)))
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # released and deleted between our open and our lock: retry
        previous = _read_owner(fd)
        if previous.get("pid") not in (None, os.getpid()):
            log.info("%s: took over the lock of PID %s, which is no longer running", self.path,
                     previous["pid"])
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                 "command": shlex.join([sys.executable, *sys.argv])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file and unlock (no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def __del__(self) -> None:  # a lock object dropped by an error still frees the folder
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the kernel frees the flock
            pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as error:  # a file system without flock: fall back to the PID
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            owner = _read_owner(fd)
            return not (owner.get("host") == socket.gethostname()
                        and _alive(owner.get("pid")) and owner.get("pid") != os.getpid())

    def _in_use_message(self, owner: dict[str, Any]) -> str:
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            return (f"{self.setting}={shlex.quote(str(self.folder))} is in use by this process "
                    f"(PID {os.getpid()}): an earlier run on it was not closed (call its close())"
                    f"; choose another {self.setting} or close the other run first")
        who = f"PID {owner.get('pid', '?')}"
        if owner.get("host") and owner["host"] != socket.gethostname():
            who += f" on {owner['host']}"
        if owner.get("started"):
            who += f", started {owner['started']}"
        command = f": {owner['command']}" if owner.get("command") else ""
        return (f"{self.setting}={shlex.quote(str(self.folder))} is in use by another running "
                f"process ({who}{command}); two writers would mix their files. Wait for it to "
                f"finish or stop it, or choose another {self.setting}")


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        owner = json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
