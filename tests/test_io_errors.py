"""The shared error convention (run_entry_point) and the stop-signal mechanism."""

from __future__ import annotations

import errno
import os
import signal
import sys

import pytest

from curl_moco.io.errors import (
    ArgumentParser,
    UnknownNameError,
    UsageError,
    resume_command,
    run_entry_point,
    usage_errors,
)
from curl_moco.io.interrupt import StopSignals, TrainingInterrupted


def _raising(error: BaseException):
    def main(argv):
        raise error

    return main


def test_usage_error_is_one_line_and_exit_2(capsys) -> None:
    assert run_entry_point(_raising(UsageError("lr=inf must be finite")), prog="x") == 2
    assert capsys.readouterr().err == "error: lr=inf must be finite\n"
    # KeyError subclasses print without the quotes KeyError adds.
    assert run_entry_point(_raising(UnknownNameError("unknown task 'x'")), prog="x") == 2
    assert capsys.readouterr().err == "error: unknown task 'x'\n"


def test_environment_os_errors_are_usage_errors_others_are_not(capsys) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/a/train.csv")
    assert run_entry_point(_raising(full), prog="x") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /runs/a/train.csv: No space left on device; free disk space")
    with pytest.raises(OSError, match="I/O error"):  # a genuine failure keeps its traceback
        run_entry_point(_raising(OSError(errno.EIO, "I/O error")), prog="x")
    with pytest.raises(RuntimeError):
        run_entry_point(_raising(RuntimeError("bug")), prog="x")
    with pytest.raises(ValueError):  # a plain ValueError is an internal error, not a usage error
        run_entry_point(_raising(ValueError("bug")), prog="x")


def test_interrupt_exit_codes_and_resume_command(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    stop = TrainingInterrupted(signal.SIGTERM, "at 80 environment steps", tmp_path / "c.pt",
                               tmp_path / "config.json", ("--resume",))
    assert run_entry_point(_raising(stop), prog="experiments.train_dmc") == 143
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"interrupted by SIGTERM at 80 environment steps; checkpoint saved to " \
                     f"{tmp_path / 'c.pt'}"
    # called from Python (here: pytest): this interpreter and the installed module
    assert err[1] == (f"resume with: {sys.executable} -m curl_moco.experiments.train_dmc "
                      f"--config {tmp_path / 'config.json'} --resume")
    assert run_entry_point(_raising(KeyboardInterrupt()), prog="x") == 130
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resume_command("experiments.pretrain_moco", "r/config.json") == (
        "torchrun --nproc_per_node 4 -m curl_moco.experiments.pretrain_moco --config "
        "r/config.json")


def test_argument_errors_and_help(capsys) -> None:
    parser = ArgumentParser()
    parser.add_argument("--lr", type=float)
    with pytest.raises(UsageError, match="argument --lr: invalid float value: 'x'"):
        parser.parse_args(["--lr", "x"])

    def main(argv):
        parser.parse_args(argv)

    assert run_entry_point(main, ["--help"], prog="x") == 0
    assert run_entry_point(main, ["--nope"], prog="x") == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def test_usage_errors_converts_only_the_wrapped_checks() -> None:
    with pytest.raises(UsageError, match="queue_size=3"):
        with usage_errors():
            raise ValueError("queue_size=3 must be a multiple")
    with pytest.raises(TypeError):
        with usage_errors():
            raise TypeError("a bug")


def test_stop_signals_set_a_flag_then_escalate() -> None:
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)  # another signal while stopping: only logged
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # the same signal again: stop at once
            os.kill(os.getpid(), signal.SIGTERM)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == previous
