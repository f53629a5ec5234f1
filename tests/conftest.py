"""Session-wide test setup: choose a headless OpenGL backend before anything imports dm_control."""

from __future__ import annotations

import pytest

from envs.gl import select_gl_backend


def pytest_configure(config: pytest.Config) -> None:
    # Raises envs.gl.GLBackendError with install advice when no backend works on this machine.
    select_gl_backend()
