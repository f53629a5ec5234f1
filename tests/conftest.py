"""Session-wide test setup: choose a headless OpenGL backend before anything imports dm_control;
the ``device`` fixture (cpu, and cuda where a GPU is visible) and the ``cuda`` marker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from curl_moco.envs.gl import select_gl_backend


def pytest_configure(config: pytest.Config) -> None:
    # Raises envs.gl.GLBackendError with install advice when no backend works on this machine.
    select_gl_backend()
    config.addinivalue_line("markers", "cuda: the cuda instance of a test taking the `device` "
                            "fixture (`pytest -m cuda` runs them; scripts/gpu_check.sh does)")


@pytest.fixture(params=[
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")]),
])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Run a test once per device: the CPU, and CUDA (skipped without a GPU)."""
    return torch.device(request.param)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test with one torch thread, restoring the previous count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
