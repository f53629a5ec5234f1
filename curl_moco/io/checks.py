"""Start-up checks of settings, shared by every config: each raises
:class:`~curl_moco.io.errors.UsageError` naming the setting and the value the user gave."""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import tempfile
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
    folder and nothing on the way is a file, a broken symlink or a virtual file system."""
    path = _output_path(name, path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{name}={quote(path)} is a file, not a folder; choose another path")
    _check_writable_ancestor(name, path)


def check_output_file(name: str, path: str | os.PathLike, *,
                      replaces_kind: str | None = None) -> None:
    """``path`` can be written as a file: not a folder (nor written as one, ``dir/``), its
    folder is (or can be made) writable, and it is not a curl_moco checkpoint (a training run's
    ``checkpoint.pt``, say) unless one of kind ``replaces_kind`` (an older export that this one
    replaces)."""
    text = os.fspath(path)
    if isinstance(text, str) and text.endswith(("/", os.sep)):
        raise UsageError(f"{name}={quote(text)} ends with '/', so it names a folder; give a file "
                         f"name, e.g. {quote(os.path.join(text, 'out.pt'))}")
    path = _output_path(name, path)
    if path.is_dir():
        raise UsageError(f"{name}={quote(path)} is a folder; give a file name")
    kind = _checkpoint_kind(path)
    if kind is not None and kind != replaces_kind:
        raise UsageError(f"{name}={quote(path)} is a curl_moco checkpoint of kind {kind!r}: "
                         f"writing it would destroy it; choose another {name}")
    _check_writable_ancestor(name, path.parent)


def _checkpoint_kind(path: Path) -> str | None:
    """The kind of the curl_moco checkpoint at ``path`` ('unreadable' when its header is
    damaged); None when ``path`` is not a readable file starting with a checkpoint's magic
    bytes."""
    if not path.is_file():
        return None
    from curl_moco.io.checkpoint import MAGIC, MAGIC_V1, CheckpointError, read_header

    try:
        with open(path, "rb") as f:
            start = f.read(len(MAGIC))
    except OSError:
        return None
    if start not in (MAGIC, MAGIC_V1):
        return None
    try:
        return str(read_header(path).get("kind"))
    except (CheckpointError, OSError):
        return "unreadable"


def check_writable_folder(name: str, path: str | os.PathLike) -> None:
    """An output folder the run writes into later (e.g. ``run_dir/videos``): when it already
    exists it must be a folder this process can create files in, checked now rather than at the
    first write hours later."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise UsageError(f"{name}={quote(path)} exists but is not a folder; move it away")
    if not _can_create_files(path):
        raise UsageError(f"{name}={quote(path)} is not writable (read-only or permissions); fix "
                         "its permissions or choose another folder")


def check_distinct(outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """No output file is one of the input files (the same path, or the same file through a link
    or hard link): writing it would destroy the input. Empty entries are skipped."""
    for out_name, out in outputs.items():
        for in_name, source in inputs.items():
            if out and source and _same_file(out, source):
                raise UsageError(f"{out_name}={quote(out)} is the input {in_name}={quote(source)}:"
                                 f" writing it would destroy the input; choose another "
                                 f"{out_name}")


def quote(path: str | os.PathLike) -> str:
    """A path as a shell word (``shlex.quote``): copy-pasteable into a command."""
    return shlex.quote(os.fspath(path))


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


#: File systems that hold kernel state, not files: writing there fails or does something else.
VIRTUAL_FILE_SYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
    "securityfs", "configfs", "bpf", "pstore", "efivarfs", "fusectl", "mqueue", "binfmt_misc",
    "autofs", "hugetlbfs", "rpc_pipefs", "nsfs"})


def _output_path(name: str, path: str | os.PathLike) -> Path:
    """``path`` as a Path after the checks every output path needs: not empty, no name longer
    than the file system allows, no symlink loop, no symlink to nothing."""
    text = os.fspath(path)
    if not text:
        raise UsageError(f"{name}='' is empty: give a folder (or leave the flag out for the "
                         "default)")
    path = Path(text)
    limit = _name_max(path)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise UsageError(f"{name}={quote(_shorten(text))}: the name {quote(_shorten(part))} "
                             f"is {len(os.fsencode(part))} bytes long; this file system allows "
                             f"{limit}: choose a shorter name")
    if len(os.fsencode(str(path.absolute()))) >= 4096:
        raise UsageError(f"{name}={quote(_shorten(text))} is longer than the 4096 bytes a path "
                         "may have; choose a shorter path")
    try:
        path.resolve(strict=False)
    except (RuntimeError, OSError) as error:  # RuntimeError: Python < 3.13's symlink loop
        raise UsageError(f"{name}={quote(text)} goes through a symlink loop ({error}); fix the "
                         "links or choose another path") from error
    probe = path
    while True:
        if probe.is_symlink() and not probe.exists():
            raise UsageError(f"{name}={quote(text)}: {quote(probe)} is a symlink to "
                             f"{quote(os.readlink(probe))}, which does not exist; fix the link "
                             "or choose another path")
        if probe.parent == probe:
            break
        probe = probe.parent
    return path


def _check_writable_ancestor(name: str, path: Path) -> None:
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{name}={str(path)!r}: {probe} is a file, so the folder cannot be "
                         "created")
    fstype = _file_system_type(probe)
    if fstype in VIRTUAL_FILE_SYSTEMS:
        raise UsageError(f"{name}={quote(path)}: {quote(probe)} is on the virtual {fstype!r} file "
                         "system, which holds kernel state, not files; choose a folder on a disk")
    if not _can_create_files(probe):
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


def _can_create_files(folder: Path) -> bool:
    """Whether this process can create a file in ``folder``. ``os.access`` says yes to root on
    read-only and immutable folders, so root probes with a nameless temporary file."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    if os.geteuid() != 0:
        return True
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _file_system_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (Linux ``/proc/self/mounts``), or None."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, fstype = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].encode().decode("unicode_escape")  # "\040" for spaces
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def _name_max(path: Path) -> int:
    probe = path.absolute()
    while not os.path.isdir(probe) and probe.parent != probe:  # isdir: False on any error
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where they point
        return os.path.realpath(a) == os.path.realpath(b)


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-keep:]}"
