"""What the entry points print: one log format, a short start-up header, no third-party noise.

Third-party libraries print lines a user cannot act on at every start. Each is silenced where it
is emitted, by a logging filter on the library's own logger that drops exactly those messages
(:data:`NOISE`); every other message of the same loggers (a real warning) still shows:

- dm_control (absl logging): "MUJOCO_GL=egl, attempting to import specified OpenGL backend.",
  "MuJoCo library version is: ...", and MuJoCo's compiler warning about ``settotalmass``, which
  dm_control's own cheetah model triggers once per model load (four times per run);
- PyOpenGL: "No OpenGL_accelerate module loaded";
- torch inductor: "No CUDA runtime is found, using CUDA_HOME=..." on machines without CUDA.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

#: Logger name -> message prefixes that are dropped from it (nothing else is).
NOISE: dict[str, tuple[str, ...]] = {
    "absl": ("MUJOCO_GL=", "MUJOCO_GL is not set", "Successfully imported OpenGL backend",
             "MuJoCo library version is:",
             "compiler attribute 'settotalmass' is deprecated"),
    "OpenGL.acceleratesupport": ("No OpenGL_accelerate module loaded",),
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
}
#: The one log format of every entry point: ``[04:12:14] message`` (``warning:`` / ``error:``
#: before messages of those levels).
LOG_FORMAT = "[%(asctime)s] %(message)s"
DATE_FORMAT = "%H:%M:%S"


class DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        return not message.startswith(self.prefixes)


def quiet_third_party() -> None:
    """Install the :data:`NOISE` filters (idempotent). absl's logger is created by absl itself
    (it has its own logger class), so absl is imported first when it is installed."""
    try:
        import absl.logging  # noqa: F401 - creates the "absl" logger with its own class
    except ImportError:
        pass
    for name, prefixes in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(prefixes))


class _LevelPrefix(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            head, sep, tail = text.partition("] ")
            level = "error" if record.levelno >= logging.ERROR else "warning"
            text = f"{head}{sep}{level}: {tail}" if sep else f"{level}: {text}"
        return text


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each record (a later redirection, e.g.
    ``contextlib.redirect_stderr`` or a test's capture, is followed; a replaced stream that was
    closed is never written to)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # noqa: D102 - logging.StreamHandler's attribute
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the root logger of an entry point: :data:`LOG_FORMAT` on stderr at ``level``,
    third-party noise silenced. Replaces handlers set by an earlier call (one format)."""
    quiet_third_party()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_curl_moco", False):
            root.removeHandler(handler)
    handler = _CurrentStderr()
    handler.setFormatter(_LevelPrefix(LOG_FORMAT, DATE_FORMAT))
    handler._curl_moco = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def header(title: str, fields: dict[str, str]) -> str:
    """A short start-up header: ``title`` then one aligned ``name: value`` line per field."""
    width = max((len(name) for name in fields), default=0) + 1
    return "\n".join([title, *(f"  {name + ':':<{width}} {value}"
                               for name, value in fields.items())])
