"""Imported first by every entry point (``experiments/*.py``): a Ctrl-C during start-up, while
torch, dm_control and friends import (seconds), exits with status 130 and one line instead of a
traceback through the import machinery. Nothing has been written at that point.

The handler is installed only when this process was started as an entry point (``python -m
experiments.X``, ``python -m curl_moco.experiments.X`` or a ``curl-moco-*`` console command), never
when a library user or a test imports the modules; :func:`curl_moco.io.errors.run_entry_point`
puts Python's own handler back before the entry point runs (from then on Ctrl-C is handled there,
or by the trainers' checkpointing stop).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

#: Exit status of a Ctrl-C before anything could be saved (128 + SIGINT).
EXIT_INTERRUPTED = 130


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"interrupted (Ctrl-C) during start-up; nothing was written\n")
    os._exit(EXIT_INTERRUPTED)


def launched_as_entry_point() -> bool:
    """Whether ``__main__`` is one of this project's entry points."""
    main = sys.modules.get("__main__")
    if getattr(main, "__name__", "") != "__main__":  # a multiprocessing child ("__mp_main__")
        return False
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", "") or ""
    if name.startswith(("experiments.", "curl_moco.experiments.")):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith("curl-moco-")


def install() -> None:
    """Exit quietly with 130 on Ctrl-C from now on (main thread, Python's default handler only)."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, _interrupted)


def uninstall() -> None:
    """Back to Python's ``KeyboardInterrupt`` (no-op unless :func:`install` set the handler)."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is _interrupted):
        signal.signal(signal.SIGINT, signal.default_int_handler)


if launched_as_entry_point():
    install()
