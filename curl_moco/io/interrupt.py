"""Graceful stop on Ctrl-C (SIGINT), SIGTERM and SIGHUP, shared by both trainers.

While a :class:`StopSignals` block is active, the first SIGINT, SIGTERM or SIGHUP (the terminal
was closed, the ssh connection dropped) only records the request; the training loop checks
:attr:`StopSignals.requested` after each step, writes a checkpoint and raises
:class:`TrainingInterrupted`, which the entry point turns into a resume hint and exit status
128 + signal (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). The same signal a second time
raises ``KeyboardInterrupt`` at once (the checkpoint writer is atomic, so the previous checkpoint
stays intact). A different second signal (torchrun sends SIGTERM to its workers after the
terminal's SIGINT) is only logged.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

log = logging.getLogger("curl_moco")

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class TrainingInterrupted(Exception):  # noqa: N818 - not an error: a requested stop
    """Raised after the interrupted run's checkpoint was written.

    ``signum``: the signal; ``where``: e.g. "at 1200 environment steps"; ``checkpoint``: the file
    written; ``config_path``: the run's ``config.json`` (for the resume command); ``resume_flags``:
    flags the resume command needs on top of ``--config`` (e.g. ``--resume``).
    """

    def __init__(self, signum: int, where: str, checkpoint: str | os.PathLike | None,
                 config_path: str | os.PathLike | None, resume_flags: tuple[str, ...] = ()):
        super().__init__(f"interrupted by {signal_name(signum)} {where}")
        self.signum, self.where = int(signum), where
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.config_path = None if config_path is None else Path(config_path)
        self.resume_flags = tuple(resume_flags)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def describe(self, resume_command: str) -> str:
        """Two lines: what happened (and where the checkpoint is), and how to continue."""
        saved = (f"; checkpoint saved to {shlex.quote(str(self.checkpoint))}"
                 if self.checkpoint is not None
                 else "; nothing to save yet")
        command = " ".join([resume_command, *self.resume_flags])
        return f"{self}{saved}\nresume with: {command}"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """Context manager turning SIGINT/SIGTERM/SIGHUP into a stop request (main thread only;
    elsewhere it does nothing and :attr:`requested` stays False)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Record a stop request as if ``signum`` had arrived (tests, other controllers)."""
        if self.signum is None:
            self.signum = int(signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            log.warning("%s received: finishing the current step, then saving a checkpoint "
                        "(press Ctrl-C again to stop at once)", signal_name(signum))
        elif signum == self.signum:
            raise KeyboardInterrupt
        else:
            log.info("%s received while already stopping", signal_name(signum))

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()


def ignore_interrupts_in_worker(worker_id: int = 0) -> None:
    """``DataLoader`` ``worker_init_fn``: a Ctrl-C in the terminal (SIGINT) and torchrun's stop
    (SIGTERM to the worker's whole process group) reach the loader's worker processes too; they
    ignore both, so that the main process can finish its step and save (a worker killed by a
    signal would make the main process raise at once). Workers still exit with the main
    process."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
