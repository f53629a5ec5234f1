"""Architecture rules (DESIGN.md): the contrastive core imports nothing from rl/, pretrain/, envs/
or experiments/; rl/ and pretrain/ never import each other. Checked statically with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The top-level names `envs` and `experiments` exist only in the repository (the installed
#: package carries them as curl_moco.envs / curl_moco.experiments): nothing imports them, so a
#: user's own `envs/` or `experiments/` folder can never shadow ours.
_REPO_ONLY = ("envs", "experiments")
RULES: dict[str, tuple[str, ...]] = {
    "curl_moco/contrastive": ("curl_moco.rl", "curl_moco.pretrain", "curl_moco.envs",
                              "curl_moco.experiments", *_REPO_ONLY),
    "curl_moco/rl": ("curl_moco.pretrain", "curl_moco.experiments", *_REPO_ONLY),
    "curl_moco/pretrain": ("curl_moco.rl", "curl_moco.experiments", *_REPO_ONLY),
    "curl_moco/io": ("curl_moco.rl", "curl_moco.pretrain", "curl_moco.experiments", *_REPO_ONLY),
    "envs": ("curl_moco.experiments", *_REPO_ONLY),
    "experiments": _REPO_ONLY,
    "tests": _REPO_ONLY,
}
_IMPORT_FUNCS = {"import_module", "__import__"}


def module_name(path: Path, root: Path = ROOT) -> str:
    """``curl_moco/rl/sac.py`` -> ``curl_moco.rl.sac``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module name ``source`` may import, with relative imports resolved against ``module``.

    ``from a.b import c`` yields both ``a.b`` and ``a.b.c`` (c may be a submodule);
    ``importlib.import_module("x")`` / ``__import__("x")`` with a literal string yield ``x``.
    Imports anywhere (inside functions, ``if TYPE_CHECKING``) count.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.append(base)
            names += [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if fname in _IMPORT_FUNCS and isinstance(arg, ast.Constant):
                if isinstance(arg.value, str):
                    names.append(arg.value)
    return [n for n in names if n]


def violations(source: str, module: str, forbidden: tuple[str, ...], is_package: bool = False):
    """Imported names equal to or below any forbidden package."""
    return sorted(
        {
            name
            for name in imported_names(source, module, is_package)
            for bad in forbidden
            if name == bad or name.startswith(bad + ".")
        }
    )


def _python_files(directory: str) -> list[Path]:
    return sorted((ROOT / directory).rglob("*.py"))


@pytest.mark.parametrize("directory", sorted(RULES))
def test_package_respects_import_rules(directory: str) -> None:
    files = _python_files(directory)
    if directory == "curl_moco/contrastive":
        assert len(files) >= 6, "the contrastive core should exist"
    problems = {}
    for path in files:
        found = violations(
            path.read_text(encoding="utf-8"),
            module_name(path),
            RULES[directory],
            is_package=path.name == "__init__.py",
        )
        if found:
            problems[str(path.relative_to(ROOT))] = found
    assert not problems, f"forbidden imports (see DESIGN.md): {problems}"


@pytest.mark.parametrize(
    "source",
    [
        "import curl_moco.rl.sac",
        "import curl_moco.pretrain as p",
        "from curl_moco.rl import replay",
        "from curl_moco import rl",
        "from curl_moco import io, pretrain",
        "from ..rl import sac",
        "from .. import pretrain",
        "import envs",
        "from envs.registry import make_env",
        "import experiments.train_dmc",
        "def f():\n    from curl_moco.rl.sac import Actor\n    return Actor",
        "if TYPE_CHECKING:\n    from envs import make_env",
        "import importlib\nm = importlib.import_module('curl_moco.pretrain.moco')",
        "m = __import__('envs.dmc')",
    ],
)
def test_checker_flags_violations(source: str) -> None:
    forbidden = RULES["curl_moco/contrastive"]
    assert violations(source, "curl_moco.contrastive.losses", forbidden), source


@pytest.mark.parametrize(
    "source",
    [
        "import torch\nimport torch.nn.functional as F",
        "from curl_moco.contrastive import losses",
        "from . import encoders\nfrom .queue import KeyQueue",
        "from .. import io\nfrom ..runtime import resolve_device",
        "import envsx\nimport experimentsy",
        "import curl_moco.rlx",
        "from curl_moco.io.checkpoint import save_checkpoint",
    ],
)
def test_checker_allows_legal_imports(source: str) -> None:
    forbidden = RULES["curl_moco/contrastive"]
    assert violations(source, "curl_moco.contrastive.losses", forbidden) == []


def test_relative_imports_resolve_from_packages_and_modules() -> None:
    assert "curl_moco.rl" in imported_names("from .. import rl", "curl_moco.contrastive", True)
    assert "curl_moco.contrastive.rl" in imported_names(
        "from . import rl", "curl_moco.contrastive", True
    )
    assert "curl_moco.rl.sac" in imported_names("from ..rl.sac import A", "curl_moco.pretrain.moco")
    assert (
        violations("from ..contrastive import losses", "curl_moco.rl.sac", RULES["curl_moco/rl"])
        == []
    )
    assert violations("from ..pretrain import moco", "curl_moco.rl.sac", RULES["curl_moco/rl"]) == [
        "curl_moco.pretrain",
        "curl_moco.pretrain.moco",
    ]
    assert module_name(ROOT / "curl_moco/contrastive/__init__.py") == "curl_moco.contrastive"


def test_a_violating_file_on_disk_is_caught(tmp_path: Path) -> None:
    """The directory scan itself finds a bad file (same code path as the real check)."""
    pkg = tmp_path / "curl_moco" / "rl"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "agent.py").write_text("from ..pretrain.moco import MoCo\n")
    found = {
        module_name(p, tmp_path): violations(
            p.read_text(), module_name(p, tmp_path), RULES["curl_moco/rl"]
        )
        for p in sorted(pkg.rglob("*.py"))
    }
    assert found == {
        "curl_moco.rl": [],
        "curl_moco.rl.agent": ["curl_moco.pretrain.moco", "curl_moco.pretrain.moco.MoCo"],
    }
