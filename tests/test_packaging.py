"""pyproject.toml declares the dependencies that requirements.txt pins (as ranges the pins
satisfy) and console entry points that exist."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name.lower(): r for r in reqs}


def test_pyproject_dependencies_match_requirements_txt() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [Requirement(d) for d in project["dependencies"]
                + [d for names in extras.values() for d in names]]
    pins = _pins()
    assert {r.name.lower() for r in declared} == set(pins)
    for req in declared:
        pin = pins[req.name.lower()]
        exact = [s.version for s in pin.specifier if s.operator == "=="]
        for version in exact:  # the tested version lies inside the declared range
            assert req.specifier.contains(version, prereleases=True), (req, version)


def test_console_entry_points_resolve() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "curl-moco-train" in scripts and "curl-moco-pretrain" in scripts
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), target
