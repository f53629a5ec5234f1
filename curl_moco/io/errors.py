"""The error convention of every entry point.

A mistake the user can fix (a setting, a file, the environment) raises :class:`UsageError`; the
entry point's wrapper :func:`run_entry_point` prints it as ``error: <message>`` on one line and
exits with status 2, without a traceback. Anything else is a genuine internal error and keeps its
traceback. A training run stopped by Ctrl-C, SIGTERM or SIGHUP raises
:class:`curl_moco.io.interrupt.TrainingInterrupted` after writing its checkpoint; the wrapper
prints how to resume and exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM,
129 for SIGHUP).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from curl_moco.io import quiet_start
from curl_moco.io.interrupt import TrainingInterrupted

#: Exit status of a usage error (as argparse's).
EXIT_USAGE = 2
#: Exit status of a Ctrl-C before anything could be saved (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: ``OSError`` numbers that describe the machine, not a bug: reported as usage errors.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                errno.EPERM})


class UsageError(ValueError):
    """A setting, file or environment problem the user can fix; the message names the setting
    (``name=value``) or the path and says how to fix it."""

    def __str__(self) -> str:  # no quotes around the message in KeyError subclasses
        return str(self.args[0]) if self.args else ""


class UnknownNameError(UsageError, KeyError):
    """An unknown task, preset or config field (also a ``KeyError``)."""


class MissingPathError(UsageError, FileNotFoundError):
    """A file or folder given in a setting does not exist (also a ``FileNotFoundError``)."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are :class:`UsageError` (one line, naming the flag)
    instead of a usage block and ``SystemExit``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


@contextmanager
def usage_errors(context: str = "") -> Iterator[None]:
    """Re-raise ``ValueError``/``KeyError`` of the wrapped start-up check as :class:`UsageError`
    (message kept, ``context`` prepended). Wrap only calls whose errors are about the user's
    settings, never training code."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, KeyError) as error:
        message = error.args[0] if error.args else repr(error)
        raise UsageError(f"{context}{message}") from error


def os_error_message(error: OSError) -> str:
    """One line for a disk-full / read-only / permission error, with the path and a fix."""
    where = f"{error.filename}: " if error.filename else ""
    fix = {errno.ENOSPC: "free disk space or choose another output folder",
           errno.EDQUOT: "free disk space (quota exceeded) or choose another output folder",
           errno.EROFS: "the file system is read-only; choose a writable output folder"
           }.get(error.errno, "check the permissions or choose another path")
    return f"{where}{error.strerror or error}; {fix}"


def run_entry_point(main: Callable[[list[str] | None], Any], argv: list[str] | None = None, *,
                    prog: str) -> int:
    """Run ``main(argv)`` under the error convention and return the process exit status.

    ``prog`` is the module (``experiments.train_dmc``) used in the resume command printed after
    an interruption. ``main`` returning an int returns it; any other value means success (0).
    """
    quiet_start.uninstall()  # from here on Ctrl-C is a KeyboardInterrupt, handled below
    try:
        result = main(argv)
    except SystemExit as stop:  # --help (0) and explicit exits
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except UsageError as error:
        report(f"error: {error}")
        return EXIT_USAGE
    except TrainingInterrupted as stop:
        if int(os.environ.get("RANK", "0") or 0) == 0:  # one message for all ranks
            report(stop.describe(resume_command(prog, stop.config_path)))
        return stop.exit_code
    except KeyboardInterrupt:
        report("interrupted (Ctrl-C); the last complete checkpoint, if any, is kept")
        return EXIT_INTERRUPTED
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRNOS:
            raise
        report(f"error: {os_error_message(error)}")
        return EXIT_USAGE
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def launch_head(prog: str) -> list[str]:
    """The command (without its arguments) that started this process, to print for running it
    again: the console command (``curl-moco-train``) when launched through one; else this
    interpreter's full path (a virtual environment's python, not whatever ``python`` is on the
    PATH) with ``-m`` and the module as typed (``experiments.train_dmc`` in the repository),
    ``curl_moco.experiments.<name>`` when the entry point was called from other Python code;
    torchrun's launcher under torchrun. ``prog``: the entry point's module, ``experiments.x``."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    orig = list(getattr(sys, "orig_argv", []))
    module = f"curl_moco.{prog}"
    if "-m" in orig[:-1]:
        typed = orig[orig.index("-m") + 1]
        if typed in (prog, module):
            module = typed
    if world > 1:
        return ["torchrun", "--nproc_per_node", str(world), "-m", module]
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if script.startswith("curl-moco-"):
        return [script]
    return [sys.executable, "-m", module]


def resume_command(prog: str, config_path: str | os.PathLike | None) -> str:
    """The shell command that continues a run from its saved ``config.json``, started the way
    this run was (:func:`launch_head`)."""
    head = launch_head(prog)
    if config_path is None:
        return f"{shlex.join(head)} <the same flags>"
    return shlex.join([*head, "--config", str(config_path)])


def report(message: str) -> None:
    """Print ``message`` to stderr; under torchrun ranks other than 0 prefix their rank."""
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank and message.startswith("error: "):
        message = f"error (rank {rank}): {message[len('error: '):]}"
    print(message, file=sys.stderr, flush=True)
