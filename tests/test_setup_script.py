"""scripts/setup.sh's choice of torch build, through its --dry-run (which changes nothing): the
default is the pinned build CI installs, --cpu adds the CPU-only build of the same versions from
PyTorch's CPU index before requirements.txt; a bad option is one error line, exit 2. The real
--cpu install is not run here (this machine cannot reach PyTorch's index)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of what setup.sh reads, so that nothing can touch the real .venv."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def setup(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(project / "scripts" / "setup.sh"), *args], cwd=project,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def pins(project: Path) -> dict[str, str]:
    lines = (project / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.startswith(("torch==", "torchvision==")))


def test_default_is_the_pinned_build_ci_installs(project: Path) -> None:
    done = setup(project, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        ".venv/bin/python -m pip install -q --upgrade pip",
        ".venv/bin/python -m pip install -q -r requirements.txt",
        ".venv/bin/python -m pip install -q --no-deps -e ."]
    assert "pinned build" in done.stderr and not (project / ".venv").exists()


def test_cpu_installs_the_cpu_build_of_the_pinned_versions_first(project: Path) -> None:
    done = setup(project, "--cpu", "--dry-run", TORCH_CPU_INDEX="file:///mirror/cpu")
    assert done.returncode == 0, done.stderr
    versions = pins(project)
    assert done.stdout.splitlines()[1:3] == [
        f".venv/bin/python -m pip install -q torch=={versions['torch']} "
        f"torchvision=={versions['torchvision']} --index-url file:///mirror/cpu",
        ".venv/bin/python -m pip install -q -r requirements.txt"]
    assert "CPU-only build" in done.stderr and not (project / ".venv").exists()
    default_index = setup(project, "--dry-run", "--cpu").stdout
    assert "--index-url https://download.pytorch.org/whl/cpu" in default_index


def test_help_and_bad_options(project: Path) -> None:
    done = setup(project, "--help")
    assert done.returncode == 0 and "--cpu" in done.stdout and "CI tests" in done.stdout
    done = setup(project, "--gpu")
    assert done.returncode == 2
    assert done.stderr == "error: unknown option '--gpu': use --cpu, --dry-run or --help\n"


def test_cpu_refuses_a_venv_with_the_cuda_build(project: Path) -> None:
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "bin" / "python").symlink_to(shutil.which("python3") or "/bin/false")
    (project / ".venv" / "lib" / "python3.11" / "site-packages" / "nvidia").mkdir(parents=True)
    done = setup(project, "--cpu")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "error: .venv holds the CUDA build of torch (its NVIDIA libraries): remove it (rm -rf "
        ".venv) and run scripts/setup.sh --cpu again")
