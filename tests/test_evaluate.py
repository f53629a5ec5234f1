"""The evaluate command and the public load API on a tiny trained run: the evaluation replays the
training log's at the checkpoint, videos at the real-time rate with cameras, the agent's view and
an overlay, checkpoints written on CUDA load on the CPU, run.json, TensorBoard, README snippets,
and the bad inputs of the evaluate command."""

from __future__ import annotations

import csv
import io
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from curl_moco.experiments import evaluate
from curl_moco.io.checkpoint import load_checkpoint, save_checkpoint
from curl_moco.io.logger import read_csv
from curl_moco.io.run_record import cpu_model
from curl_moco.io.video import count_video_frames, video_fps
from curl_moco.rl import CurlSacAgent, CurlSacConfig, load_agent
from curl_moco.rl.evaluation import agent_view
from curl_moco.rl.trainer import Trainer, train

REPO = Path(__file__).resolve().parents[1]
# 2 episodes of 10 agent steps (action repeat 8): one checkpoint and one evaluation (2 episodes,
# with video) at 160 environment steps.
TINY = dict(task="cartpole-swingup", action_repeat=8, image_size=40, crop_size=32,
            episode_length=80, steps=160, seed_steps=80, batch_size=8, hidden_dim=32,
            feature_dim=16, num_filters=8, num_layers=2, replay_capacity=1000, eval_every=160,
            eval_episodes=2, checkpoint_every=160, video_size=64, device="cpu",
            progress=False, seed=3, amp="off", tb_video=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = tmp_path_factory.mktemp("eval") / "run"
        train(CurlSacConfig(**TINY, run_dir=str(run_dir)))
    finally:
        torch.set_num_threads(threads)
    return run_dir


def test_evaluate_replays_the_training_evaluation_and_records(run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = evaluate.cli(["--run", str(run), "--out", str(out), "--video", "both", "--record",
                         "2", "--agent-view", "--overlay", "--gif", "--still", "--camera", "0",
                         "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    logged = read_csv(run / "eval.csv")[-1]
    saved = load_checkpoint(run / "checkpoint.pt")["payload"]["trainer"]["last_eval"]
    # the same episodes as the training run's evaluation at its checkpoint: the same returns
    assert summary["returns"] == saved["returns"]
    assert summary["mean"] == float(logged["episode_reward"])
    assert summary["std"] == float(logged["episode_reward_std"])
    assert summary["checkpoint_step"] == int(logged["env_steps"]) == 160
    assert summary["replays_training_evaluation"] and summary["episodes"] == 2
    assert summary["min"] == min(saved["returns"]) and summary["max"] == max(saved["returns"])
    rows = list(csv.DictReader(open(out / "episodes.csv")))
    assert [float(r["return"]) for r in rows] == saved["returns"]
    assert [int(r["length"]) for r in rows] == [10, 10] and len({r["seed"] for r in rows}) == 2
    # cartpole's real time: 1 / (0.01 s x 8) = 12.5 frames per second, reset frame + 10 steps
    assert summary["fps"] == 12.5
    for name in ("episode_000.mp4", "episode_001.mp4", "grid.mp4"):
        assert video_fps(out / name) == 12.5 and count_video_frames(out / name) == 11
    # two cameras and the agent's view, 64 px each, 2 px apart
    with imageio.get_reader(out / "episode_000.mp4") as reader:
        assert reader.get_data(0).shape == (64, 3 * 64 + 2 * 2, 3)
    with imageio.get_reader(out / "grid.mp4") as reader:  # 2 episodes: 2 columns, 1 row
        assert reader.get_data(0).shape == (64, 2 * 196 + 2, 3)
    gif = Image.open(out / "episode_000.gif")
    assert gif.n_frames == 11 and gif.info["duration"] == 80
    still = np.asarray(Image.open(out / "still.png").convert("RGB"))
    assert still.shape == (64, 196, 3)
    assert still[2:12, 2:20].min() == 0  # the overlay's dark box, top left
    message = capsys.readouterr().out
    assert "the same episodes, same returns" in message


def test_agent_view_is_the_centre_crop_the_network_sees() -> None:
    obs = np.arange(9 * 10 * 10, dtype=np.int64).reshape(9, 10, 10) % 251
    obs = obs.astype(np.uint8)
    view = agent_view(obs, crop_size=6, size=12)  # crop rows/cols 2..7, upscaled 2x
    assert view.shape == (12, 12, 3)
    newest = obs[-3:, 2:8, 2:8].transpose(1, 2, 0)
    assert np.array_equal(view[::2, ::2], newest) and np.array_equal(view[1::2, 1::2], newest)


def test_stochastic_evaluation_is_reproducible(run, tmp_path) -> None:
    returns = []
    for name in ("a", "b"):
        assert evaluate.cli(["--run", str(run), "--out", str(tmp_path / name), "--episodes",
                             "1", "--video", "none", "--stochastic", "--seed", "5"]) == 0
        returns.append(json.loads((tmp_path / name / "summary.json").read_text())["returns"])
    assert returns[0] == returns[1]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert not summary["replays_training_evaluation"] and not list((tmp_path / "a").glob("*.mp4"))


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_bad_inputs_are_one_line_before_any_file(run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    moco = tmp_path / "moco"
    save_checkpoint(moco / "checkpoint.pt", {"model": {}}, kind="moco", config={"arch": "pixel"})
    afile = tmp_path / "a_file"
    afile.write_text("x")
    cases = {
        "holds no checkpoint.pt": ["--run", str(empty)],
        "is a MoCo pretraining checkpoint, not a CURL-SAC agent": ["--run", str(moco)],
        "camera=7: cartpole-swingup has cameras 0..1": ["--run", str(run), "--camera", "0", "7"],
        "video_size=5000 is outside 16..4096": ["--run", str(run), "--video-size", "5000"],
        "out=": ["--run", str(run), "--out", str(afile / "sub")],
        "task='walker-walk' has 6 action dimensions": ["--run", str(run), "--task",
                                                       "walker-walk"],
        "run=": ["--run", str(tmp_path / "missing")],
        "episodes=0": ["--run", str(run), "--episodes", "0"],
    }
    for expected, argv in cases.items():
        target = out if "--out" not in argv else None
        assert evaluate.cli([*argv, *(["--out", str(target)] if target else [])]) == 2, argv
        assert expected in _error_line(capsys), argv
        assert not out.exists()
    assert not (run / "evaluate").exists()


def _claims_cuda(path: Path) -> None:
    """Rewrite the checkpoint at ``path`` so that every tensor is stored as a CUDA tensor (what
    a GPU run writes), without a GPU: a storage tagger that names cuda:0."""
    from torch import serialization

    loaded = load_checkpoint(path)

    def cuda_tag(obj):
        device = getattr(obj, "device", None)
        return "cuda:0" if device is not None and device.type == "cpu" else None

    serialization.register_package(1, cuda_tag, lambda obj, location: None)
    try:
        save_checkpoint(path, loaded["payload"], kind=loaded["kind"], config=loaded["config"])
    finally:
        serialization._package_registry[:] = [entry for entry in serialization._package_registry
                                               if entry[1] is not cuda_tag]


def test_checkpoint_written_on_cuda_loads_on_the_cpu(run, tmp_path) -> None:
    import shutil

    gpu_run = tmp_path / "gpu_run"
    shutil.copytree(run, gpu_run)
    _claims_cuda(gpu_run / "checkpoint.pt")
    raw = (gpu_run / "checkpoint.pt").read_bytes()
    payload_bytes = json.loads(raw[48:48 + int.from_bytes(raw[8:16], "little")])["payload_bytes"]
    if not torch.cuda.is_available():  # the file really asks for CUDA
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(io.BytesIO(raw[-payload_bytes:]), weights_only=True)
    agent, cfg, make_env = load_agent(gpu_run, device="cpu")
    original, _, _ = load_agent(run, device="cpu")
    for key, value in original.state_dict().items():
        assert torch.equal(agent.state_dict()[key], value), key
    assert agent.device.type == "cpu" and cfg.task == "cartpole-swingup"
    assert evaluate.cli(["--run", str(gpu_run), "--video", "none", "--device", "cpu"]) == 0
    summary = json.loads((gpu_run / "evaluate" / "step_160" / "summary.json").read_text())
    assert summary["mean"] == float(read_csv(run / "eval.csv")[-1]["episode_reward"])


def test_load_api_returns_agent_config_and_matching_envs(run) -> None:
    agent, cfg, make_env = CurlSacAgent.load(run / "checkpoint.pt", device="cpu")
    state = load_checkpoint(run / "checkpoint.pt")["payload"]["agent"]["model"]
    for key, value in state.items():
        assert torch.equal(agent.state_dict()[key], value), key
    assert (cfg.task, cfg.action_repeat, cfg.image_size, cfg.crop_size) == (
        "cartpole-swingup", 8, 40, 32)
    env = make_env(seed=0)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (9, 40, 40) and env.unwrapped.action_repeat == 8
        action = agent.act(obs, deterministic=True)
        assert action.shape == (1,) and np.array_equal(action, agent.act(obs, deterministic=True))
        steps = 0
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(action)
            done, steps = terminated or truncated, steps + 1
        assert steps == 10  # the run's episode_length (80 environment steps)
    finally:
        env.close()


def test_run_record_says_what_ran_and_when(run, tmp_path) -> None:
    record = json.loads((run / "run.json").read_text())
    assert record["device"] == {"type": "cpu", "name": "cpu", "model": cpu_model(),
                                "count": record["device"]["count"]}
    assert record["precision"]["mode"] == "float32" and "amp=off" in record["precision"]["reason"]
    assert record["threads"] == 1 and record["compile_mode"] == "off"
    assert record["versions"]["python"] == platform.python_version()
    assert record["versions"]["numpy"] == np.__version__
    assert record["versions"]["torch"] == torch.__version__.split("+")[0]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert record["git"]["commit"] == head.stdout.strip()
        assert isinstance(record["git"]["dirty"], bool)
    times = record["times"]
    assert times["resumed"] == [] and times["started"] <= times["ended"]
    assert record["command"]["argv"] == sys.argv and record["run"]["env_steps"] == 160
    # config.json keeps the settings as given; the resolved ones are in run.json only
    assert json.loads((run / "config.json").read_text())["device"] == "cpu"

    # a resumed run keeps its start time and lists the resume
    import shutil

    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    trainer = Trainer(CurlSacConfig(**{**TINY, "steps": 240, "run_dir": str(resumed)}))
    try:
        trainer.setup()
        header = trainer.header()
    finally:
        trainer.close()
    again = json.loads((resumed / "run.json").read_text())
    assert again["times"]["started"] == times["started"]
    assert [entry["step"] for entry in again["times"]["resumed"]] == [160]
    assert "CURL-SAC on cartpole-swingup: 240 environment steps (action repeat 8), seed 3" \
        in header
    assert f"{resumed} (resumed from step 160)" in header and "float32 (amp=off)" in header


def test_tensorboard_gets_config_hparams_and_video(run) -> None:
    from tensorboard.backend.event_processing.event_file_loader import (
        LegacyEventFileLoader as EventFileLoader,  # summaries as written (images stay images)
    )

    tags: dict[str, object] = {}
    for path in sorted((run / "tb").glob("events.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                tags[value.tag] = value
    assert "_hparams_/experiment" in tags and "_hparams_/session_start_info" in tags
    text = tags["config/text_summary"].tensor.string_val[0].decode()
    assert '"task": "cartpole-swingup"' in text and '"seed": 3' in text
    image = tags["eval/video"].image
    assert (image.height, image.width) == (64, 64)
    gif = Image.open(io.BytesIO(image.encoded_image_string))
    assert gif.n_frames == 11 and gif.info["duration"] == 80
    # the training's own evaluation video plays in real time too (12.5 fps, not 12)
    assert video_fps(run / "videos" / "eval_160.mp4") == 12.5


def test_readme_python_snippets_run(run, tmp_path, monkeypatch, capsys) -> None:
    """Every ```python block of the README runs as written, in a folder where the paths it
    names hold the tiny run (the snippet the user reads is the one executed)."""
    import shutil

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert blocks, "the README has no Python snippet"
    for block in blocks:
        for path in re.findall(r'"(runs/[^"]+)"', block):
            if not (tmp_path / path).exists():
                shutil.copytree(run, tmp_path / path)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})  # noqa: S102
    assert "cartpole-swingup: return" in capsys.readouterr().out
