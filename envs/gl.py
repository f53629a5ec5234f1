"""Headless OpenGL backend selection for MuJoCo rendering.

dm_control reads ``MUJOCO_GL`` once, when ``dm_control._render`` is first imported, so
:func:`select_gl_backend` must run before anything imports dm_control (``envs.dmc`` calls it at
import time). Each candidate is probed in a short-lived subprocess, so a backend that crashes or
hangs while creating its context cannot take this process down with it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys

from curl_moco.io.errors import UsageError

__all__ = ["BACKEND_ORDER", "GLBackendError", "probe_backend", "select_gl_backend"]

logger = logging.getLogger("curl_moco")

#: Backends tried, in order, when the user did not set ``MUJOCO_GL``. EGL first: it uses the GPU
#: on NVIDIA machines and Mesa's software rasteriser elsewhere; OSMesa is the software fallback.
BACKEND_ORDER: tuple[str, ...] = ("egl", "osmesa")
#: Values of ``MUJOCO_GL`` accepted by :func:`select_gl_backend` (glfw needs a display).
KNOWN_BACKENDS: tuple[str, ...] = ("egl", "osmesa", "glfw")
#: Seconds a probe subprocess may take (importing mujoco plus a 16x16 context).
PROBE_TIMEOUT_S = 30.0

_ADVICE = {
    "egl": "install EGL and Mesa's drivers: `apt-get install -y libegl1 libgl1-mesa-dri`",
    "osmesa": "install OSMesa: `apt-get install -y libosmesa6`",
    "glfw": "glfw needs a display: set DISPLAY, or use MUJOCO_GL=egl / MUJOCO_GL=osmesa headless",
}

# Creates an OpenGL context and a MuJoCo render context on a tiny empty model, then frees both.
_PROBE_CODE = """
import mujoco
ctx = mujoco.GLContext(16, 16)
ctx.make_current()
model = mujoco.MjModel.from_xml_string("<mujoco/>")
mjr = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
mjr.free()
ctx.free()
print("ok")
"""

_selected: str | None = None


class GLBackendError(UsageError, RuntimeError):
    """No usable OpenGL backend for MuJoCo rendering (a usage error: the message says what to
    install or set)."""


def _probe_env(backend: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        env["PYOPENGL_PLATFORM"] = backend
    return env


def probe_backend(backend: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Try to create a MuJoCo GL context with ``backend`` in a subprocess.

    Returns ``(ok, detail)``: ``detail`` is the last lines of the subprocess's stderr (or the
    reason it failed) when ``ok`` is False, else "".
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_CODE],
            env=_probe_env(backend),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    except OSError as exc:  # pragma: no cover - cannot start the interpreter at all
        return False, f"could not start {sys.executable}: {exc}"
    if proc.returncode == 0 and proc.stdout.strip().endswith("ok"):
        return True, ""
    lines = (proc.stderr or proc.stdout or "no output").strip().splitlines() or ["no output"]
    return False, f"exit code {proc.returncode}: {lines[-1].strip()}"


def _load_triton_before_mesa() -> None:
    """Import triton (shipped with CUDA builds of torch) before Mesa's GL is first used.

    Triton and Mesa's software rasteriser each load their own LLVM. Once an EGL or OSMesa
    context exists, a later ``import triton`` (by ``torch.compile``, ``torch._dynamo`` or
    ``torchvision.ops``) crashes the process with a segmentation fault; loaded in the other
    order both work. Costs about a second, once per process, and only where triton is installed.
    """
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        importlib.import_module("triton")
    except Exception as exc:  # noqa: BLE001 - a broken triton must not stop rendering
        logger.debug("could not import triton before the GL backend: %s", exc)


def _activate(backend: str, source: str) -> str:
    global _selected
    if backend in ("egl", "osmesa"):
        _load_triton_before_mesa()
    os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ["PYOPENGL_PLATFORM"] = backend
    if "dm_control._render" in sys.modules:
        logger.warning(
            "dm_control was imported before select_gl_backend(); it may already use another "
            "rendering backend than %s",
            backend,
        )
    _selected = backend
    logger.info("MuJoCo rendering backend: %s (%s)", backend, source)
    return backend


def select_gl_backend(preferred: str | None = None) -> str:
    """Choose, verify and activate a headless OpenGL backend; returns its name.

    Order of precedence: a ``MUJOCO_GL`` set by the user (verified, never replaced: a broken
    setting raises instead of silently falling back), then ``preferred``, then ``egl``, then
    ``osmesa``. Sets ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM`` for egl/osmesa) in ``os.environ``
    and logs ``"MuJoCo rendering backend: <name>"`` on logger ``curl_moco``. The result is cached
    for the process.

    Raises:
        GLBackendError (a RuntimeError): the user's ``MUJOCO_GL`` is unknown or does not work, or
            no candidate works; the message says what to install or set.
    """
    if _selected is not None:
        return _selected
    user = os.environ.get("MUJOCO_GL")
    if user is not None:
        name = user.strip().lower()
        if name not in KNOWN_BACKENDS:
            raise GLBackendError(
                f"MUJOCO_GL={user!r} is not a supported rendering backend; use one of "
                f"{', '.join(KNOWN_BACKENDS)} (egl or osmesa for headless machines), or unset "
                "MUJOCO_GL to choose one automatically."
            )
        ok, detail = probe_backend(name)
        if not ok:
            raise GLBackendError(
                f"MUJOCO_GL={user!r} is set but MuJoCo cannot create a rendering context with it "
                f"({detail}). Fix: {_ADVICE[name]}; or unset MUJOCO_GL to let curl_moco try "
                f"{' then '.join(BACKEND_ORDER)}."
            )
        return _activate(name, "from MUJOCO_GL")

    candidates = list(BACKEND_ORDER)
    if preferred is not None:
        if preferred not in KNOWN_BACKENDS:
            raise GLBackendError(
                f"preferred={preferred!r} is not a supported rendering backend; use one of "
                f"{', '.join(KNOWN_BACKENDS)}."
            )
        candidates = [preferred] + [c for c in candidates if c != preferred]
    failures = []
    for name in candidates:
        ok, detail = probe_backend(name)
        if ok:
            return _activate(name, "auto-selected")
        logger.debug("MuJoCo rendering backend %s unavailable: %s", name, detail)
        failures.append(f"  {name}: {detail}\n    fix: {_ADVICE[name]}")
    raise GLBackendError(
        "No OpenGL backend works for headless MuJoCo rendering. Tried:\n"
        + "\n".join(failures)
        + "\nInstall one of the packages above (Debian/Ubuntu), or set MUJOCO_GL explicitly."
    )
