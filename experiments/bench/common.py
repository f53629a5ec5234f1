"""Shared benchmark plumbing: machine description, timing, a printed table and a JSON file.

Every benchmark measures our implementation and a straightforward baseline in the same process
and reports both absolute figures and their ratio.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Load average when the benchmark module was imported (before measuring).
_LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device) if device is not None else "cpu",
        **load_note(),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def prepare_device(name: str, threads: int = 0) -> torch.device:
    """Set torch's CPU thread count (0 keeps the default), resolve ``name`` ("auto", "cpu",
    "cuda[:N]") and let cuDNN pick its fastest kernels on CUDA."""
    from curl_moco.runtime import resolve_device

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], *, device: torch.device, repeats: int, warmup: int = 1,
              min_seconds: float = 0.0) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times (more until ``min_seconds``
    have passed); return median and mean seconds per call."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
            "calls": len(times)}


def time_interleaved(fns: dict[str, Callable[[], Any]], *, device: torch.device, repeats: int,
                     warmup: int = 1, on_error: Callable[[str, BaseException], None] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Time several callables round-robin (one call of each per round, ``repeats`` rounds) after
    ``warmup`` untimed calls each, so that a change of machine load hits all of them alike.

    Returns ``{name: {"median_s", "mean_s", "min_s", "calls"}}``; a callable that raises is
    dropped (``{"error": message}``) and reported to ``on_error``.
    """
    results: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {}
    live = dict(fns)

    def fail(name: str, error: BaseException) -> None:
        live.pop(name, None)
        results[name] = {"error": f"{type(error).__name__}: {error}"}
        if on_error is not None:
            on_error(name, error)

    for name, fn in list(live.items()):
        try:
            for _ in range(warmup):
                fn()
            synchronize(device)
            times[name] = []
        except Exception as error:  # noqa: BLE001 - one failing variant must not stop the rest
            fail(name, error)
    for _ in range(repeats):
        for name, fn in list(live.items()):
            try:
                t0 = time.perf_counter()
                fn()
                synchronize(device)
                times[name].append(time.perf_counter() - t0)
            except Exception as error:  # noqa: BLE001
                fail(name, error)
    for name in live:
        ts = times[name]
        results[name] = {"median_s": statistics.median(ts), "mean_s": statistics.fmean(ts),
                         "min_s": min(ts), "calls": len(ts)}
    return {name: results[name] for name in fns}


def load_note() -> dict[str, Any]:
    """Machine load when measuring (the CPU may be shared with other work)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return {}
    start = [round(x, 2) for x in _LOAD_AT_START] if _LOAD_AT_START else None
    return {"loadavg_1_5_15_at_start": start,
            "loadavg_1_5_15_at_end": [round(one, 2), round(five, 2), round(fifteen, 2)],
            "note": "small CPU, possibly shared with other processes: ratios come from interleaved "
                    "measurements in one process, absolute figures vary with the load"
            if (os.cpu_count() or 0) <= 4 else ""}


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a run (``argv`` None = this process's arguments)."""
    import shlex
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python -m", module, *(shlex.quote(a) for a in args)])


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[_fmt(value) for value in row] for row in rows]
    widths = [max(len(str(c)), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(str(c).rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(value.rjust(w) for value, w in zip(row, widths)))


def write_results(name: str, results: dict[str, Any], out_dir: str | os.PathLike | None = None
                  ) -> Path:
    """Write ``results`` to ``<out_dir>/<name>.json`` (default ``experiments/bench/results``)."""
    directory = Path(out_dir) if out_dir is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {"benchmark": name, "measured_at_unix_s": time.time(), **results}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
