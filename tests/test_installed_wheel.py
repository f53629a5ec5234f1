"""The installed distribution works from any folder: the wheel is built (offline, no build
isolation) and installed into a fresh virtual env whose only other packages are the project's
dependencies (a .pth file pointing at this env's site-packages; the repository is not on the
path). From a folder that holds its own ``envs/`` and ``experiments/`` packages, as many RL
projects do, the library imports, builds an agent, makes an environment, every console command
answers ``--help``, and a short training runs and plots."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHADOWS = "raise ImportError('the user project shadows curl_moco: this must never run')\n"

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
pytestmark = pytest.mark.slow  # builds a wheel and trains for a few seconds


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A venv with the wheel installed, and a user project folder to run from."""
    pytest.importorskip("setuptools", reason="building the wheel without build isolation "
                        "(offline) needs setuptools in this env")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building writes build/ and *.egg-info next to the sources
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results", "build", "*.egg-info")
    for name in ("curl_moco", "envs", "experiments"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(tmp / "dist"), str(src)], tmp, clean)
    (wheel,) = (tmp / "dist").glob("curl_moco-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, clean)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; "
                         "print(sysconfig.get_paths()['purelib'])"], tmp, clean).strip())
    # the dependencies: this env's site-packages as a plain path (its .pth files, among them
    # an editable install of this repository, are not processed)
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
            if Path(p).is_dir()]
    (purelib / "project_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], tmp, clean)

    project = tmp / "user_project"  # the user's own packages with the generic names
    for package in ("envs", "experiments"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(SHADOWS)
    (project / "experiments" / "train_dmc.py").write_text(SHADOWS)
    env = {**clean, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MPLCONFIGDIR": str(tmp / "mpl")}
    return {"venv": venv, "python": python, "purelib": purelib, "project": project,
            "wheel": wheel, "env": env}  # type: ignore[dict-item]


def test_wheel_holds_one_top_level_package(installed) -> None:
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"curl_moco"}
    assert "curl_moco/envs/tasks.py" in names and "curl_moco/experiments/train_dmc.py" in names
    assert "curl_moco/experiments/configs/curl_dmc.py" in names


def test_library_imports_builds_an_agent_and_makes_environments(installed) -> None:
    code = """
import json, sys
import gymnasium, torch
import curl_moco
from curl_moco.rl import CurlSacAgent
from curl_moco.rl.config import CurlSacConfig, validate
from curl_moco.envs.registry import make_env
cfg = validate(CurlSacConfig(image_size=40, crop_size=32, num_layers=2, num_filters=8,
                             hidden_dim=32, feature_dim=16, batch_size=8, seed_steps=80,
                             device="cpu", run_dir="unused"))
agent = CurlSacAgent.from_config(cfg, 9, 1, device=torch.device("cpu"), seed=0)
env = make_env("cartpole-swingup", image_size=40, frame_stack=3)
obs, _ = env.reset(seed=1)
action = agent.act(obs, deterministic=True)
genv = gymnasium.make("curl_moco/walker-walk-v0", image_size=32)
gobs, _ = genv.reset(seed=1)
env.close(); genv.close()
print(json.dumps({"file": curl_moco.__file__, "obs": list(obs.shape),
                  "action": list(action.shape), "gobs": list(gobs.shape),
                  "envs": sys.modules["curl_moco.envs"].__file__,
                  "user_envs_imported": "envs" in sys.modules}))
"""
    out = json.loads(_run([str(installed["python"]), "-c", code], installed["project"],
                          installed["env"]).splitlines()[-1])
    purelib = str(installed["purelib"])
    assert out["file"].startswith(purelib) and out["envs"].startswith(purelib)
    assert out["obs"] == [9, 40, 40] and out["action"] == [1] and out["gobs"] == [9, 32, 32]
    assert out["user_envs_imported"] is False


def test_every_console_command_answers_help(installed) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    procs = {}
    for command in scripts:  # side by side: each one imports torch
        path = installed["venv"] / "bin" / command
        assert path.is_file(), command
        procs[command] = subprocess.Popen([str(path), "--help"], cwd=installed["project"],
                                          env=installed["env"], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
    for command, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "usage:" in out, (command, out[-2000:], err[-2000:])


def test_smoke_training_with_python_m_and_plot(installed) -> None:
    run_dir = installed["project"] / "runs" / "smoke"
    _run([str(installed["python"]), "-m", "curl_moco.experiments.train_dmc", "--preset",
          "smoke", "--steps", "320", "--eval-every", "320", "--eval-episodes", "1",
          "--episode-length", "80", "--no-video", "--no-tensorboard", "--no-progress",
          "--device", "cpu", "--run-dir", str(run_dir)], installed["project"], installed["env"])
    rows = (run_dir / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("env_steps,") and rows[1].startswith("320,")
    out = _run([str(installed["venv"] / "bin" / "curl-moco-plot")], installed["project"],
               installed["env"])  # no argument: ./runs, never site-packages
    assert "| cartpole-swingup | smoke |" in out
    assert (installed["project"] / "runs" / "dmc_table.md").is_file()
    assert not list(installed["purelib"].rglob("dmc_table.md"))
