"""Start-up checks of settings, shared by every config: each raises
:class:`~curl_moco.io.errors.UsageError` naming the setting and the value the user gave."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from curl_moco.io.errors import MissingPathError, UsageError

#: Largest float32 value: a learning rate beyond it overflows in the optimisers' float32 updates
#: (and in CUDA's fused kernels).
FLOAT32_MAX = 3.4028234663852886e38

#: Seeds are used by Python, NumPy (< 2**32) and torch; offsets are added per rank and stream.
MAX_SEED = 2**31 - 1


def check_number(name: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_inclusive: bool = True,
                 high_inclusive: bool = True) -> None:
    """``value`` is a finite number within the bounds (None = unbounded)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{name}={show(value)} must be a finite number")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise UsageError(f"{name}={show(value)} must be {'>=' if low_inclusive else '>'} "
                         f"{show(low)}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise UsageError(f"{name}={show(value)} must be {'<=' if high_inclusive else '<'} "
                         f"{show(high)}")


def show(value: Any) -> str:
    """A value as the user would type it: ``0`` for ``0.0``, ``1e-05``, ``'text'``."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() \
            and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def listing(items: Any, limit: int = 5) -> str:
    """``a, b, c`` or, when cut, ``a, b, c, d, e, ... (12 in all)``."""
    items = [str(item) for item in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


def check_learning_rate(name: str, value: float | None, effective: float | None = None) -> None:
    """``value`` (or its ``effective`` scaled value) stays within float32's range."""
    scaled = value if effective is None else effective
    if value is not None and scaled > FLOAT32_MAX:
        how = "" if effective is None else f" once scaled ({effective:.3g})"
        raise UsageError(f"{name}={show(value)} is beyond float32's range{how}: the optimiser's "
                         "update would overflow; use a learning rate near the presets'")


def check_positive(cfg: Any, *names: str) -> None:
    """Each field of ``cfg`` in ``names`` is None or a finite number > 0."""
    for name in names:
        check_number(name, getattr(cfg, name), low=0, low_inclusive=False)


def check_non_negative(cfg: Any, *names: str) -> None:
    """Each field of ``cfg`` in ``names`` is None or a finite number >= 0."""
    for name in names:
        check_number(name, getattr(cfg, name), low=0)


def check_choices(cfg: Any) -> None:
    """Every field of dataclass ``cfg`` declared with ``knob(..., choices=...)`` holds one of
    them (the command line checks this too; configs built in Python are checked here)."""
    for field in dataclasses.fields(cfg):
        choices = field.metadata.get("choices")
        value = getattr(cfg, field.name)
        if choices is not None and value not in choices:
            raise UsageError(f"{field.name}={value!r} is not one of {tuple(choices)}")


def check_seed(name: str, value: int) -> None:
    check_number(name, value, low=0, high=MAX_SEED)


def check_folder_name(name: str, value: str) -> None:
    """A single folder name that stays inside its parent (no separators, not "." or "..")."""
    if not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise UsageError(f"{name}={value!r} must be a plain folder name (no '/', not '.' or "
                         "'..'): it becomes part of the run folder")


def check_output_dir(name: str, path: str | os.PathLike) -> None:
    """``path`` is a folder, or can be created: the closest existing ancestor is a writable
    folder and nothing on the way is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{name}={str(path)!r} is a file, not a folder; choose another path")
    _check_writable_ancestor(name, path)


def check_output_file(name: str, path: str | os.PathLike) -> None:
    """``path`` can be written as a file: not a folder, and its folder is (or can be made)
    writable."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{name}={str(path)!r} is a folder; give a file name")
    _check_writable_ancestor(name, path.parent)


def check_input_file(name: str, path: str | os.PathLike) -> Path:
    """``path`` exists, is a file and is readable."""
    path = Path(path)
    if not path.exists():
        raise MissingPathError(f"{name}={str(path)!r} does not exist")
    if not path.is_file():
        raise UsageError(f"{name}={str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{name}={str(path)!r} is not readable (permissions)")
    return path


def _check_writable_ancestor(name: str, path: Path) -> None:
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{name}={str(path)!r}: {probe} is a file, so the folder cannot be "
                         "created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{name}={str(path)!r}: {probe} is not writable; choose another path "
                         "or fix its permissions")


def check_threads(name: str, value: int | None) -> None:
    """``value`` CPU threads is None or between 1 and the machine's logical CPU count (more
    only oversubscribes the cores; OpenMP fails to start tens of thousands of threads)."""
    check_number(name, value, low=1)
    cpus = os.cpu_count() or 1
    if value is not None and value > cpus:
        raise UsageError(f"{name}={show(value)} is more than the {cpus} logical CPUs of this "
                         f"machine; use at most {cpus} (or leave it unset for torch's default)")


def available_memory() -> int | None:
    """Bytes a new allocation can still get: ``MemAvailable`` of ``/proc/meminfo``, lowered by
    a cgroup v2 memory limit (containers, batch jobs); None where neither is known."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def human_bytes(num_bytes: float) -> str:
    """``12.3 GiB``, ``512.0 MiB``, ``3.2 PiB``: binary units, one decimal."""
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        num_bytes /= 1024
        if num_bytes < 1024 or unit == "PiB":
            return f"{num_bytes:.1f} {unit}"
    raise AssertionError("unreachable")
