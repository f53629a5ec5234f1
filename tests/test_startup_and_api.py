"""Start-up messages (third-party noise silenced at its source, real warnings kept, one log format,
the resume command as launched, the ETA after compilation) and the Python API's building blocks
(from_config validates, honours cfg.device and seeds its weights; MoCo the same; the typed MoCo
result where the README says)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from curl_moco.io.console import DropMessages, quiet_third_party, setup_logging
from curl_moco.io.errors import UsageError, launch_head, resume_command
from curl_moco.pretrain.config import MocoConfig
from curl_moco.pretrain.moco import MoCo
from curl_moco.rl import CurlSacAgent, CurlSacConfig, resolve_config
from curl_moco.rl.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def test_third_party_noise_is_dropped_and_real_warnings_kept() -> None:
    code = (
        "from curl_moco.io.console import setup_logging\n"
        "setup_logging()\n"
        "from curl_moco.envs import make_env\n"
        "for _ in range(2):\n"
        "    env = make_env('cheetah-run', image_size=16)\n"
        "    env.reset(seed=0)\n"
        "    env.close()\n"
        "from absl import logging as absl_logging\n"
        "absl_logging.warning('a real absl warning')\n"
        "import logging\n"
        "logging.getLogger('curl_moco').warning('ours')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = proc.stderr
    for noise in ("settotalmass", "attempting to import specified OpenGL backend",
                  "MuJoCo library version", "OpenGL_accelerate"):
        assert noise not in err, err
    lines = err.strip().splitlines()
    assert any(line.endswith("] warning: a real absl warning") for line in lines), err
    assert any(line.endswith("] warning: ours") for line in lines), err
    assert any(line.endswith("] MuJoCo rendering backend: " + line.split(": ")[-1])
               for line in lines if "rendering backend" in line)


def test_inductor_cuda_home_line_is_dropped_other_messages_kept(caplog) -> None:
    quiet_third_party()
    logger = logging.getLogger("torch.utils.cpp_extension")
    assert sum(isinstance(f, DropMessages) for f in logger.filters) == 1
    quiet_third_party()  # idempotent
    assert sum(isinstance(f, DropMessages) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="torch.utils.cpp_extension"):
        logger.warning("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
        logger.warning("Error checking compiler version for c++")
    assert [r.getMessage() for r in caplog.records] == ["Error checking compiler version for c++"]


def test_one_log_format(capsys) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        setup_logging()
        setup_logging()  # replaces its own handler: one line per message
        logging.getLogger("curl_moco.x").info("hello")
        logging.getLogger("curl_moco.x").error("broken")
        err = capsys.readouterr().err.splitlines()
    finally:
        root.handlers[:], root.level = before
    assert len(err) == 2
    assert err[0][0] == "[" and err[0][9:] == "] hello" and err[1].endswith("] error: broken")
    time.strptime(err[0][1:9], "%H:%M:%S")


def test_log_lines_follow_stderr_when_it_is_replaced() -> None:
    """The handler writes to the sys.stderr of the moment: a redirection after set-up is
    followed, and a replaced stream that was closed is never written to."""
    import contextlib
    import io

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    first, second = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(first):
            setup_logging()
        first.close()
        with contextlib.redirect_stderr(second):
            logging.getLogger("curl_moco.x").info("after the first stream closed")
    finally:
        root.handlers[:], root.level = before
    assert second.getvalue().endswith("] after the first stream closed\n")


def test_header_device_line_names_the_cpu_and_counts_threads() -> None:
    """``cpu (<model>), 1 thread`` with one thread, ``... 2 threads`` with two."""
    from curl_moco.io.run_record import cpu_model, device_line

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert device_line(torch.device("cpu")) == f"cpu ({cpu_model()}), 1 thread"
        torch.set_num_threads(2)
        assert device_line(torch.device("cpu")).endswith(", 2 threads")
    finally:
        torch.set_num_threads(before)


def test_resume_command_is_the_way_the_run_was_started(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(sys, "argv", ["/opt/venv/bin/curl-moco-train", "--preset", "smoke"])
    assert launch_head("experiments.train_dmc") == ["curl-moco-train"]
    assert resume_command("experiments.train_dmc", "r/config.json") == (
        "curl-moco-train --config r/config.json")
    monkeypatch.setattr(sys, "argv", ["/repo/experiments/train_dmc.py", "--preset", "smoke"])
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "experiments.train_dmc"])
    assert launch_head("experiments.train_dmc") == [sys.executable, "-m",
                                                    "experiments.train_dmc"]
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "curl_moco.experiments.train_dmc"])
    assert launch_head("experiments.train_dmc")[-1] == "curl_moco.experiments.train_dmc"
    monkeypatch.setattr(sys, "orig_argv", ["python3", "my_script.py"])  # called from Python
    assert launch_head("experiments.train_dmc") == [sys.executable, "-m",
                                                    "curl_moco.experiments.train_dmc"]


def test_eta_restarts_after_compilation() -> None:
    from tqdm import tqdm

    bar = tqdm(total=1000, file=io.StringIO(), smoothing=0.05)
    bar.update(100)
    bar.start_t -= 60.0  # a minute of compilation inside the first update
    state = types.SimpleNamespace(_compile_started=time.time() - 60.0, _compile_done=False)
    Trainer._compiled(state, bar)
    assert bar.n == bar.initial == 100 and bar.format_dict["elapsed"] < 1.0
    assert state._compile_started is None and state._compile_done
    bar.update(100)
    assert bar.format_dict["n"] - bar.format_dict["initial"] == 100  # rate counts new steps only
    bar.close()


SMALL = dict(hidden_dim=16, feature_dim=8, num_layers=2, num_filters=4, crop_size=32,
             image_size=40, device="cpu")


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_agent_from_config_validates_uses_cfg_device_and_seeds_weights() -> None:
    cfg = CurlSacConfig(**SMALL, seed=5)
    torch.manual_seed(0)
    first = CurlSacAgent.from_config(cfg, 9, 1)
    torch.manual_seed(123)  # another global RNG state: the same weights
    second = CurlSacAgent.from_config(cfg, 9, 1)
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(123).get_state())  # untouched
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = _weights(CurlSacAgent.from_config(CurlSacConfig(**SMALL, seed=6), 9, 1))
    key = "critic.encoder.convs.0.weight"
    assert not torch.equal(a[key], other[key])
    assert first.device == torch.device("cpu")
    # resolve_config's output with a crop larger than the render: refused like the command line
    with pytest.raises(UsageError, match="crop_size=84 is larger than image_size=64"):
        CurlSacAgent.from_config(resolve_config(CurlSacConfig(image_size=64)), 9, 1)
    with pytest.raises(UsageError, match="lr=-1"):
        CurlSacAgent.from_config(CurlSacConfig(**SMALL, lr=-1.0), 9, 1)
    with pytest.raises(ValueError, match="in_channels=6 does not match frame_stack=3"):
        CurlSacAgent.from_config(cfg, 6, 1)
    if not torch.cuda.is_available():  # cfg.device is honoured: asking for CUDA is refused
        with pytest.raises(UsageError, match="device='cuda'"):
            CurlSacAgent.from_config(CurlSacConfig(**{**SMALL, "device": "cuda"}), 9, 1)
    # an unvalidated config (None = CURL's per-task values) builds: lr resolved for the task
    assert CurlSacAgent.from_config(CurlSacConfig(**SMALL), 9, 1) \
        .critic_optimizer.param_groups[0]["lr"] == 1e-3


def test_moco_from_config_validates_uses_cfg_device_and_seeds_weights() -> None:
    base = dict(data="d", arch="pixel", crop_size=16, load_size=16, pixel_layers=2,
                pixel_filters=4, feature_dim=8, dim=8, head_hidden=8, batch_size=8,
                queue_size=16, device="cpu", seed=4)
    torch.manual_seed(0)
    first = _weights(MoCo.from_config(MocoConfig(**base)))
    torch.manual_seed(99)
    model = MoCo.from_config(MocoConfig(**base))
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(99).get_state())
    second = _weights(model)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = _weights(MoCo.from_config(MocoConfig(**{**base, "seed": 5})))
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())
    assert next(model.parameters()).device == torch.device("cpu")
    with pytest.raises(UsageError, match="queue_size=12 must be a multiple"):
        MoCo.from_config(MocoConfig(**{**base, "queue_size": 12}))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="device='cuda'"):
            MoCo.from_config(MocoConfig(**{**base, "device": "cuda"}))


def test_moco_train_is_importable_where_the_readme_says() -> None:
    import dataclasses

    from curl_moco.pretrain import PretrainResult, train
    from curl_moco.pretrain.trainer import train as trainer_train

    assert train is trainer_train
    fields = {f.name for f in dataclasses.fields(PretrainResult)}
    assert {"step", "epochs", "metrics", "checkpoint", "encoder", "run_dir"} <= fields
    assert "from curl_moco.pretrain import MocoConfig, train" in (REPO / "README.md").read_text()
