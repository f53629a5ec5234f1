"""Device selection, seeding and RNG state capture shared by every entry point."""

from __future__ import annotations

import logging
import os
import random
import shutil
from typing import Any

import numpy as np
import torch

from curl_moco.io.errors import UsageError

log = logging.getLogger("curl_moco")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``: "auto" (CUDA when available, else CPU), "cpu",
    "cuda" or "cuda:N". Asking for CUDA on a machine without it is an error, not a fallback."""
    if not isinstance(name, str):
        raise UsageError(f"device={name!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"device={name!r} was requested but CUDA is not available on this machine; "
                "use --device cpu or --device auto"
            )
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise UsageError(f"device={name!r} is not a valid CUDA device name (cuda or "
                             "cuda:N)") from error
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"device={name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return device
    raise UsageError(f"device={name!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")


#: Mixed-precision modes of the training loops: "auto" picks "bf16" where the hardware computes
#: bf16 dot products natively and "off" (float32) elsewhere.
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "off")
#: ``torch.compile`` modes of the encoders' conv stacks ("off" = eager; "default" = torch's
#: default mode; "reduce-overhead" adds CUDA graphs).
COMPILE_MODES: tuple[str, ...] = ("off", "default", "reduce-overhead", "max-autotune")
#: /proc/cpuinfo flags of x86 CPUs with native bf16 dot products (AVX512-BF16, AMX-BF16).
NATIVE_BF16_CPU_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where ``cpuinfo`` cannot be read)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device, flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 matrix products natively, and why (one phrase).

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and newer). CPU: an AVX512-BF16 or
    AMX-BF16 flag in ``flags`` (default: this machine's); elsewhere PyTorch emulates bf16 with
    conversions, slower than float32."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'supports' if ok else 'does not support'} bf16"
    if device.type == "cpu":
        found = sorted(set(NATIVE_BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))
        if found:
            return True, f"the CPU has native bf16 dot products ({', '.join(found)})"
        return False, ("the CPU has no native bf16 dot products (no "
                       f"{' / '.join(NATIVE_BF16_CPU_FLAGS)}): bf16 would be emulated")
    return False, f"bf16 is not enabled automatically on {device.type}"


def cpp_compiler() -> str | None:
    """Path of the C++ compiler ``torch.compile`` (inductor) would use on the CPU (``$CXX``,
    else g++, c++ or clang++), or None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def resolve_amp(amp: str, device: torch.device, flags: frozenset[str] | None = None, *,
                what: str = "bf16 convolutions") -> tuple[str, str]:
    """``amp`` ("auto" | "bf16" | "off") -> the mode used ("bf16" | "off") and the reason, for
    the start-up log (``what`` names what runs in bf16). "auto" is "bf16" exactly where
    :func:`native_bf16` holds."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp={amp!r} is not one of {AMP_MODES}")
    if amp == "off":
        return "off", "float32 (amp=off)"
    ok, why = native_bf16(device, flags)
    if amp == "bf16":
        return "bf16", f"{what} (amp=bf16; {why})"
    if ok:
        return "bf16", f"{what} (amp=auto: {why})"
    return "off", f"float32 (amp=auto: {why})"


def compiled(fn: Any, mode: str) -> Any:
    """``fn`` under ``torch.compile`` in ``mode`` (one of :data:`COMPILE_MODES`; "off" returns
    ``fn`` itself)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode={mode!r} is not one of {COMPILE_MODES}")
    if mode == "off":
        return fn
    from curl_moco.io.console import quiet_third_party

    quiet_third_party()  # inductor's "No CUDA runtime is found, using CUDA_HOME=..." line
    return torch.compile(fn, mode=None if mode == "default" else mode)


def launched_world_size() -> int:
    """Number of processes torchrun launched for this run (its ``WORLD_SIZE``; 1 without it).
    Readable before, and without, joining the process group."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _numpy_state_to_plain(state: tuple) -> dict[str, Any]:
    """NumPy's legacy RNG state with its key array as a tensor, so that checkpoints hold only
    tensors and Python primitives (loadable with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_plain(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of every global random generator, for checkpoints (tensors and primitives only)."""
    state: dict[str, Any] = {
        "python": list(random.getstate()),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; CUDA states are restored when present and usable."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning("checkpoint holds %d CUDA RNG states, %d devices visible: not restored",
                        len(cuda_states), torch.cuda.device_count())

