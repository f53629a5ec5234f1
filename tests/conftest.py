"""Session-wide test setup: choose a headless OpenGL backend before anything imports dm_control."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from curl_moco.envs.gl import select_gl_backend


def pytest_configure(config: pytest.Config) -> None:
    # Raises envs.gl.GLBackendError with install advice when no backend works on this machine.
    select_gl_backend()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test with one torch thread, restoring the previous count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
