"""Tests for envs.gl: headless OpenGL backend selection."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curl_moco.envs import gl

REPO = Path(__file__).resolve().parents[1]


def _run_python(code: str, **env_overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def fresh_gl(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Forget the cached backend and let the test change MUJOCO_GL; all restored afterwards."""
    monkeypatch.setattr(gl, "_selected", None)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    return monkeypatch


def test_selected_backend_is_valid_and_cached() -> None:
    backend = gl.select_gl_backend()
    assert backend in ("egl", "osmesa")  # headless backends only on a test machine
    assert os.environ["MUJOCO_GL"] == backend
    assert os.environ["PYOPENGL_PLATFORM"] == backend
    assert gl.select_gl_backend(preferred="osmesa") == backend  # cached for the process
    ok, detail = gl.probe_backend(backend)
    assert ok and detail == ""


def test_probe_timeout_is_reported() -> None:
    ok, detail = gl.probe_backend(gl.select_gl_backend(), timeout=0.001)
    assert not ok
    assert "timed out" in detail


def test_auto_selection_falls_back_to_osmesa(fresh_gl: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def fake_probe(name: str, timeout: float = 0.0) -> tuple[bool, str]:
        tried.append(name)
        return (name == "osmesa", "" if name == "osmesa" else "exit code 1: no EGL display")

    fresh_gl.setattr(gl, "probe_backend", fake_probe)
    assert gl.select_gl_backend() == "osmesa"
    assert tried == ["egl", "osmesa"]
    assert os.environ["MUJOCO_GL"] == "osmesa"
    assert os.environ["PYOPENGL_PLATFORM"] == "osmesa"


def test_preferred_backend_is_tried_first(fresh_gl: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def fake_probe(name: str, timeout: float = 0.0) -> tuple[bool, str]:
        tried.append(name)
        return True, ""

    fresh_gl.setattr(gl, "probe_backend", fake_probe)
    assert gl.select_gl_backend(preferred="osmesa") == "osmesa"
    assert tried == ["osmesa"]


def test_no_backend_gives_actionable_error(fresh_gl: pytest.MonkeyPatch) -> None:
    fresh_gl.setattr(gl, "probe_backend", lambda name, timeout=0.0: (False, "exit code 1: boom"))
    with pytest.raises(RuntimeError) as excinfo:
        gl.select_gl_backend()
    message = str(excinfo.value)
    assert "apt-get install -y libegl1 libgl1-mesa-dri" in message
    assert "apt-get install -y libosmesa6" in message
    assert "MUJOCO_GL" in message
    assert gl._selected is None


def test_user_setting_is_verified_not_replaced(fresh_gl: pytest.MonkeyPatch) -> None:
    fresh_gl.setenv("MUJOCO_GL", "osmesa")
    tried: list[str] = []

    def fake_probe(name: str, timeout: float = 0.0) -> tuple[bool, str]:
        tried.append(name)
        return False, "exit code 1: libOSMesa.so not found"

    fresh_gl.setattr(gl, "probe_backend", fake_probe)
    with pytest.raises(gl.GLBackendError, match="MUJOCO_GL='osmesa' is set but") as excinfo:
        gl.select_gl_backend()
    assert tried == ["osmesa"]  # no silent fallback to egl
    assert "libosmesa6" in str(excinfo.value)
    assert "libOSMesa.so not found" in str(excinfo.value)


def test_impossible_user_setting_fails_clearly_in_subprocess() -> None:
    proc = _run_python("import envs.dmc", MUJOCO_GL="nonsense")
    assert proc.returncode != 0
    assert "GLBackendError: MUJOCO_GL='nonsense' is not a supported rendering backend" in (
        proc.stderr
    )
    assert "unset MUJOCO_GL" in proc.stderr


def test_import_selects_and_logs_backend_before_dm_control() -> None:
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s|%(message)s')\n"
        "import envs\n"
        "assert 'dm_control' not in sys.modules, 'import envs must not import dm_control'\n"
        "import envs.dmc, os\n"
        "from dm_control import _render\n"
        "print('BACKEND', os.environ['MUJOCO_GL'], _render.BACKEND)\n"
        "env = envs.make_env('cartpole-swingup', image_size=16, frame_stack=1)\n"
        "obs, _ = env.reset(seed=0)\n"
        "env.close()\n"
        "print('MEAN', float(obs.mean()))\n"
    )
    proc = _run_python(code, MUJOCO_GL=None, PYOPENGL_PLATFORM=None)
    assert proc.returncode == 0, proc.stderr
    backend = next(line.split()[1:] for line in proc.stdout.splitlines() if "BACKEND" in line)
    assert backend[0] in ("egl", "osmesa") and backend[0] == backend[1]
    assert f"curl_moco|MuJoCo rendering backend: {backend[0]}" in proc.stderr
    assert float(proc.stdout.split("MEAN")[1]) > 0.0  # it rendered something
    # Closing the env frees its GL context, so no error is printed at interpreter exit.
    assert "cannot schedule new futures after shutdown" not in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_imports_after_an_environment_has_rendered() -> None:
    """Mesa's and triton's LLVMs clash: importing triton (torch.compile, torchvision.ops) after
    an EGL/OSMesa context existed used to segfault; the backend selection loads triton first."""
    code = (
        "from curl_moco.envs import make_env\n"
        "env = make_env('cartpole-swingup', image_size=32)\n"
        "env.reset(seed=0)\n"
        "import torch._dynamo, torchvision.ops\n"
        "env.close()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
