"""``run.json``: what a run actually ran with, beside the ``config.json`` of what was asked for.

``config.json`` keeps the settings as given (``device="auto"``, ``amp="auto"``,
``threads=null``); ``run.json`` records what they resolved to on this machine and when:

- ``device``: the torch device, its model (GPU name, or the CPU's model name) and count;
- ``precision``: the mode used ("bf16" or "off" = float32) and why;
- ``threads``, ``compile_mode``;
- ``versions``: python, torch, torchvision, dm_control, mujoco, numpy, curl_moco;
- ``git``: commit and whether the working tree had uncommitted changes (when the package is
  imported from a git checkout; null otherwise);
- ``command``: the command line (``argv``) and, for the entry points, the command that runs it
  again (``rerun``, :func:`launch_command`);
- ``times``: ``started`` (first start), ``resumed`` (one entry per resume, with the step),
  ``ended`` (last clean end or stop), all UTC ISO 8601;
- ``run``: trainer-specific facts (e.g. MoCo's per-rank batch and effective learning rate).

A resumed run rewrites the file, keeping ``started`` and the earlier ``resumed`` entries.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from curl_moco.io.atomic import atomic_write
from curl_moco.io.errors import launch_head

RUN_RECORD_NAME = "run.json"
#: Distributions whose versions every run records (import name in the record -> distribution).
RECORDED_PACKAGES: dict[str, str] = {
    "torch": "torch", "torchvision": "torchvision", "dm_control": "dm-control",
    "mujoco": "mujoco", "numpy": "numpy", "curl_moco": "curl_moco",
}


def utc_now() -> str:
    """The current time, UTC, ISO 8601 with seconds (``2026-12-07T04:10:44Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (``Intel(R) Xeon(R) CPU @ 2.80GHz``), or the platform's processor."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_record(device: torch.device) -> dict[str, Any]:
    """The device a run used: ``{"type", "name", "model", "count"}`` (count: visible GPUs or
    CPU cores)."""
    if device.type == "cuda":
        return {"type": "cuda", "name": str(device), "model": torch.cuda.get_device_name(device),
                "count": torch.cuda.device_count()}
    return {"type": device.type, "name": str(device), "model": cpu_model(),
            "count": os.cpu_count()}


def device_line(device: torch.device) -> str:
    """The device as a start-up header shows it: ``cpu (<CPU model>), 2 threads``."""
    record = device_record(device)
    threads = torch.get_num_threads()
    return f"{record['name']} ({record['model']}), {threads} thread{'' if threads == 1 else 's'}"


def package_versions() -> dict[str, str | None]:
    """Python's and the recorded packages' versions (None for one that is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in RECORDED_PACKAGES.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(folder: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``folder`` (default: this package's
    source), or None outside a checkout or without git."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def launch_command(prog: str, argv: list[str] | None = None) -> str:
    """This process' command line as a command to run again (:func:`launch_head` and the
    arguments); ``prog`` is the entry point's module (``experiments.train_dmc``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join([*launch_head(prog), *args])


class RunRecord:
    """``<run_dir>/run.json`` of one run (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / RUN_RECORD_NAME
        self.data: dict[str, Any] = {}

    def start(self, *, device: torch.device, precision: str, precision_reason: str,
              compile_mode: str, prog: str | None, resumed_from: int | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the record at the start (or resume, from step ``resumed_from``) of a run;
        ``prog`` is the entry point's module when one started the run (None: library use, the
        command line is recorded but no command to rerun)."""
        previous = self._read()
        times = dict(previous.get("times", {})) if resumed_from is not None else {}
        now = utc_now()
        times.setdefault("started", now)
        times["resumed"] = list(times.get("resumed", []))
        if resumed_from is not None:
            times["resumed"].append({"at": now, "step": int(resumed_from)})
        times["ended"] = None
        self.data = {
            "device": device_record(device),
            "precision": {"mode": precision, "reason": precision_reason},
            "threads": torch.get_num_threads(),
            "compile_mode": compile_mode,
            "versions": package_versions(),
            "git": git_state(),
            "command": {"argv": list(sys.argv),
                        "rerun": launch_command(prog) if prog else None},
            "times": times,
            "run": dict(extra or {}),
        }
        self._write()
        return self.data

    def finish(self, **facts: Any) -> None:
        """Record the end time (and ``facts`` such as the final step) of a run that stopped."""
        if not self.data:
            return
        self.data["times"]["ended"] = utc_now()
        self.data["run"].update(facts)
        self._write()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2, default=str) + "\n")
