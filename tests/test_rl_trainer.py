"""CURL-SAC trainer and command line: validation, a tiny end-to-end run, determinism, resume
(in-process stop, a real SIGKILL, Ctrl-C and SIGTERM mid-episode and during an evaluation),
refused checkpoints, stale temporary files, pretrained encoder initialisation."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from curl_moco.contrastive.encoders import PixelEncoder
from curl_moco.experiments.configs.curl_dmc import CURL_PRESETS
from curl_moco.experiments.train_dmc import main
from curl_moco.io.checkpoint import CheckpointError, load_checkpoint
from curl_moco.io.config import parse_config
from curl_moco.io.encoder_export import save_encoder_state
from curl_moco.io.interrupt import TrainingInterrupted
from curl_moco.io.logger import read_csv
from curl_moco.io.video import count_video_frames
from curl_moco.rl.config import CurlSacConfig
from curl_moco.rl.trainer import LEGACY_COLUMNS, Trainer, train

REPO = Path(__file__).resolve().parents[1]
# 8 episodes of 10 agent steps (80 environment steps at action repeat 8); checkpoints at 320
# and 640, evaluations (1 episode, with video) at 320 and 640.
TINY = dict(task="cartpole-swingup", action_repeat=8, image_size=40, crop_size=32,
            episode_length=80, steps=640, seed_steps=80, batch_size=8, hidden_dim=32,
            feature_dim=16, num_filters=8, num_layers=2, replay_capacity=1000, eval_every=320,
            eval_episodes=1, checkpoint_every=320, video_size=64, device="cpu",
            progress=False, seed=3)
TIMING = {"env_steps_per_s", "episode_s"}


def tiny(run_dir: Path, **overrides) -> CurlSacConfig:
    return CurlSacConfig(**{**TINY, "run_dir": str(run_dir), **overrides})


def argv_of(cfg: dict) -> list[str]:
    argv = []
    for key, value in cfg.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            argv += [flag, "none" if value is None else str(value)]
    return argv


def rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_csv(path)]


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt", kind="curl_sac")["payload"]["agent"]["model"]


def assert_same_parameters(a: Path, b: Path) -> None:
    sa, sb = model_state(a), model_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same as OMP_NUM_THREADS=1 in the subprocess runs
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted tiny run, shared by the end-to-end, determinism and resume tests."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = train(tiny(run_dir))
    assert result.env_steps == 640 and not result.stopped_early
    return run_dir


# ---------------------------------------------------------------- validation, before any work
@pytest.mark.parametrize(("overrides", "match"), [
    (dict(batch_size=64), "batch_size=64"),
    (dict(crop_size=48), "crop_size=48 is larger than image_size=40"),
    (dict(steps=0), "steps=0"),
    (dict(steps=-5), "steps=-5"),
    (dict(similarity="cosine", queue_size=100), "queue_size=100"),
    (dict(queue_size=64), "queue_size=64 needs similarity='cosine'"),
    (dict(episode_length=100), "episode_length=100"),
    (dict(replay_capacity=8), "batch_size=8"),
    (dict(discount=1.5), "discount=1.5"),
    (dict(compile_mode="fastest"), "compile_mode='fastest' is not one of"),
    (dict(amp="fp8"), "amp='fp8' is not one of"),
    (dict(augment="shift"), "augment='shift' keeps the render size: crop_size=32"),
    (dict(augment="flip"), "augment='flip' is not one of"),
    (dict(curl_update_freq=-1), "curl_update_freq=-1"),
    (dict(curl_update_freq=0, similarity="cosine", queue_size=16), "needs the CURL loss"),
    (dict(seed_update_burst=-1), "seed_update_burst=-1"),
    (dict(encoder_output_activation="relu"), "encoder_output_activation='relu' is not one of"),
])
def test_bad_settings_fail_before_any_work(tmp_path: Path, overrides, match) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        Trainer(tiny(run_dir, **overrides))
    assert not run_dir.exists()


def test_unknown_task_and_preset_are_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(KeyError, match="cartpole-swingup"):
        Trainer(tiny(tmp_path, task="cartpole-swingupp"))
    with pytest.raises(KeyError, match="preset='nope'"):
        parse_config(CurlSacConfig, ["--preset", "nope"], CURL_PRESETS)
    assert main(["--preset", "nope"]) == 2
    assert "preset='nope'" in capsys.readouterr().err
    assert main(["--task", "walker-walkk", "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'walker-walkk'" in err and "walker-walk" in err
    assert main(argv_of({**TINY, "steps": 0, "run_dir": str(tmp_path / "y")})) == 2
    assert "steps=0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device='cuda'"):
        Trainer(tiny(tmp_path, device="cuda"))


def test_long_run_presets_compile_and_need_a_compiler(tmp_path: Path, monkeypatch) -> None:
    """The CURL presets (hours) compile the conv stacks, the short ones do not; compiling on a
    CPU without a C++ compiler is refused at start-up, naming the setting."""
    for preset, mode in (("curl", "default"), ("cartpole-swingup", "default"),
                         ("quickstart", "off"), ("smoke", "off")):
        cfg = parse_config(CurlSacConfig, ["--preset", preset], CURL_PRESETS)
        assert cfg.compile_mode == mode, preset
    from curl_moco import runtime
    from curl_moco.io.errors import UsageError

    monkeypatch.setattr(runtime, "cpp_compiler", lambda: None)
    with pytest.raises(UsageError, match="compile_mode='default'.*C\\+\\+ compiler"):
        Trainer(tiny(tmp_path / "run", compile_mode="default"))
    assert not (tmp_path / "run").exists()


def test_presets_resolve_curl_values() -> None:
    cfg = parse_config(CurlSacConfig, ["--task", "cheetah-run"], CURL_PRESETS,
                       default_preset="curl")
    from curl_moco.rl.config import resolve_config

    resolved = resolve_config(cfg)
    assert (resolved.action_repeat, resolved.lr, resolved.batch_size) == (4, 2e-4, 512)
    assert resolved.seed_steps == 4000  # CURL: 1000 agent steps
    cart = resolve_config(parse_config(CurlSacConfig, ["--preset", "cartpole-swingup"],
                                       CURL_PRESETS))
    assert (cart.task, cart.action_repeat, cart.lr, cart.batch_size) == (
        "cartpole-swingup", 8, 1e-3, 128)
    flags = parse_config(CurlSacConfig, ["--preset", "quickstart", "--batch-size", "32"],
                         CURL_PRESETS)
    assert flags.batch_size == 32 and flags.image_size == CURL_PRESETS["quickstart"]["image_size"]


# ---------------------------------------------------------------- end to end
@pytest.mark.parametrize("overrides", [dict(curl_update_freq=0),
                                       dict(augment="shift", crop_size=40)])
def test_pixel_sac_and_shift_ablations_train(tmp_path: Path, overrides, caplog) -> None:
    """The ablation switches of the reproduction: no CURL loss (pixel SAC) and DrQ's shift; the
    start-up log names the precision chosen."""
    import logging

    with caplog.at_level(logging.INFO, logger="curl_moco"):
        result = train(tiny(tmp_path, steps=160, eval_every=160, checkpoint_every=160,
                            **overrides))
    assert result.env_steps == 160
    assert "precision: " in caplog.text and "amp=auto" in caplog.text
    last = read_csv(tmp_path / "train.csv")[-1]
    assert float(last["critic_loss"]) == float(last["critic_loss"])
    curl_logged = last.get("curl_loss") not in (None, "", "nan")
    assert curl_logged == ("curl_update_freq" not in overrides)



def test_seed_update_burst_replaces_the_first_steps_updates(tmp_path: Path) -> None:
    """SAC+AE's schedule: ``seed_update_burst`` updates at the agent step that ends seeding,
    then ``updates_per_step`` per step; the total is what validation counts."""
    from curl_moco.rl.config import count_updates, validate

    cfg = tiny(tmp_path, steps=240, eval_every=240, checkpoint_every=240, curl_update_freq=0,
               seed_update_burst=6, encoder_output_activation="tanh")
    result = train(cfg)
    # seeding ends at the 10th agent step, the last of episode 1: 6 updates, then 10 per episode
    assert [int(r["updates"]) for r in read_csv(tmp_path / "train.csv")] == [6, 16, 26]
    assert count_updates(validate(cfg)) == 26 == int(
        load_checkpoint(result.checkpoint, kind="curl_sac")["payload"]["agent"]["num_updates"])
    assert count_updates(validate(tiny(tmp_path, steps=240))) == 21


def test_tiny_run_writes_logs_tensorboard_checkpoint_and_videos(reference: Path) -> None:
    train_rows = rows(reference / "train.csv")
    assert [int(r["env_steps"]) for r in train_rows] == list(range(80, 641, 80))
    assert [int(r["episode_agent_steps"]) for r in train_rows] == [10] * 8
    assert int(train_rows[-1]["updates"]) == 80 - 10 + 1  # one per agent step after seeding
    for key in ("critic_loss", "actor_loss", "alpha", "q1", "curl_loss", "curl_accuracy"):
        assert float(train_rows[-1][key]) == float(train_rows[-1][key])  # present, not NaN
    eval_rows = rows(reference / "eval.csv")
    assert [int(r["env_steps"]) for r in eval_rows] == [320, 640]
    assert all(float(r["episode_reward_std"]) == 0.0 for r in eval_rows)  # one episode each

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((reference / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(reference / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/critic_loss", "train/curl_accuracy", "train/alpha", "train/env_steps_per_s",
            "eval/episode_reward"} <= tags
    assert [e.step for e in acc.Scalars("eval/episode_reward")] == [320, 640]

    ckpt = load_checkpoint(reference / "checkpoint.pt", kind="curl_sac")
    assert ckpt["payload"]["trainer"]["env_steps"] == 640
    assert ckpt["config"]["task"] == "cartpole-swingup" and ckpt["config"]["lr"] == 1e-3
    assert ckpt["payload"]["replay"]["num_transitions"] == 80
    assert (reference / "config.json").is_file()
    for step in (320, 640):  # reset frame + 10 agent steps
        assert count_video_frames(reference / "videos" / f"eval_{step}.mp4") == 11


def test_same_seed_same_returns_and_losses(reference: Path, tmp_path: Path) -> None:
    train(tiny(tmp_path, steps=320))
    ref_train = [r for r in rows(reference / "train.csv") if int(r["env_steps"]) <= 320]
    assert rows(tmp_path / "train.csv") == ref_train
    assert rows(tmp_path / "eval.csv") == rows(reference / "eval.csv")[:1]
    other = tmp_path / "other_seed"
    train(tiny(other, steps=160, seed=4))
    assert rows(other / "train.csv")[1]["critic_loss"] != ref_train[1]["critic_loss"]


# ---------------------------------------------------------------- resume
def test_stopped_run_resumes_to_the_same_parameters(reference: Path, tmp_path: Path) -> None:
    first = train(tiny(tmp_path, stop_after=320))
    assert first.stopped_early and first.env_steps == 320
    assert max(int(r["env_steps"]) for r in rows(tmp_path / "train.csv")) == 320
    # the user's own table in the run folder, past the checkpoint: not the run's, kept whole
    theirs = "env_steps,smoothed_return\n160,10.5\n480,20.5\n"
    (tmp_path / "smoothed.csv").write_text(theirs)
    second = train(tiny(tmp_path))  # the same command again
    assert second.resumed_from == 320 and second.env_steps == 640
    assert (tmp_path / "smoothed.csv").read_text() == theirs
    assert second.csv_paths == [tmp_path / "eval.csv", tmp_path / "train.csv"]
    assert rows(tmp_path / "train.csv") == rows(reference / "train.csv")
    assert rows(tmp_path / "eval.csv") == rows(reference / "eval.csv")
    assert_same_parameters(tmp_path, reference)
    third = train(tiny(tmp_path))  # finished: nothing to do, nothing duplicated
    assert third.resumed_from == 640
    assert rows(tmp_path / "train.csv") == rows(reference / "train.csv")



def test_resuming_a_run_logged_under_the_old_column_names(reference: Path,
                                                          tmp_path: Path) -> None:
    """A run stopped by an older version (columns step, steps_per_s, episode_length; no
    agent_steps) resumes into one table under the new names: no row lost, none garbled."""
    train(tiny(tmp_path, stop_after=320))
    old_names = {new: old for old, new in LEGACY_COLUMNS.items()}
    for name in ("train.csv", "eval.csv"):
        old_rows = [{old_names.get(k, k): v for k, v in row.items() if k != "agent_steps"}
                    for row in read_csv(tmp_path / name)]
        with open(tmp_path / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(old_rows[0]))
            writer.writeheader()
            writer.writerows(old_rows)
    assert "steps_per_s" in (tmp_path / "train.csv").read_text().splitlines()[0].split(",")
    train(tiny(tmp_path))
    resumed, expected = rows(tmp_path / "train.csv"), rows(reference / "train.csv")
    assert set(resumed[0]) == set(expected[0])  # the new names only
    for row in expected[:4]:  # logged before the upgrade: no agent_steps value
        row["agent_steps"] = ""
    assert sorted(map(sorted, (r.items() for r in resumed))) == sorted(
        map(sorted, (r.items() for r in expected)))
    assert [int(r["env_steps"]) for r in resumed] == list(range(80, 641, 80))
    assert rows(tmp_path / "eval.csv") == rows(reference / "eval.csv")


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_without_lost_or_duplicated_rows(
        reference: Path, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "experiments.train_dmc",
            *argv_of({**TINY, "run_dir": str(tmp_path)})]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    csv_path, deadline = tmp_path / "train.csv", time.time() + 240
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            steps = ([int(r["env_steps"]) for r in read_csv(csv_path)]
                     if csv_path.is_file() else [])
            # a checkpoint exists at 320 and rows after it have been written
            if steps and 320 < max(steps) < 640:
                proc.send_signal(signal.SIGKILL)
                killed_at = max(steps)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
    assert killed_at is not None, f"run ended before it could be killed:\n{out[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "checkpoint.pt")["payload"]["trainer"]["env_steps"] == 320

    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "resumed at 320" in done.stdout
    for name in ("checkpoint:", "evaluation video:", "logs (CSV):"):
        assert name in done.stdout
    assert rows(csv_path) == rows(reference / "train.csv")  # rows after 320 not duplicated
    assert rows(tmp_path / "eval.csv") == rows(reference / "eval.csv")
    assert_same_parameters(tmp_path, reference)


def test_ctrl_c_writes_a_checkpoint_and_the_printed_command_resumes_exactly(
        reference: Path, tmp_path: Path) -> None:
    """A real SIGINT to a training process: exit 130, no traceback, a checkpoint at the step
    where it stopped (mid-episode), and the printed command finishes the run as if never
    interrupted."""
    argv = [sys.executable, "-m", "experiments.train_dmc",
            *argv_of({**TINY, "run_dir": str(tmp_path)})]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    csv_path, deadline, sent = tmp_path / "train.csv", time.time() + 240, False
    try:
        while time.time() < deadline and proc.poll() is None:
            steps = ([int(r["env_steps"]) for r in read_csv(csv_path)]
                     if csv_path.is_file() else [])
            if steps and 320 < max(steps) < 560:  # after the first checkpoint and evaluation
                proc.send_signal(signal.SIGINT)
                sent = True
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and not sent:
            proc.kill()
        out, err = proc.communicate(timeout=120)
    assert sent, f"run ended before it could be interrupted:\n{err[-2000:]}"
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("interrupted by SIGINT")]
    assert len(message) == 1, err[-2000:]
    stopped_at = int(message[0].split(" at ")[1].split()[0])
    state = load_checkpoint(tmp_path / "checkpoint.pt")["payload"]["trainer"]
    assert state["env_steps"] == stopped_at and 320 < stopped_at < 640
    assert stopped_at > max(int(r["env_steps"]) for r in read_csv(csv_path)) - 80
    resume = err.split("resume with: ")[1].strip()
    # started as `python -m experiments.train_dmc`: the same interpreter and module
    assert resume == (f"{sys.executable} -m experiments.train_dmc --config "
                      f"{tmp_path / 'config.json'}")

    done = subprocess.run([sys.executable, *resume.split()[1:]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed at {stopped_at}" in done.stdout
    assert rows(csv_path) == rows(reference / "train.csv")
    assert rows(tmp_path / "eval.csv") == rows(reference / "eval.csv")
    assert_same_parameters(tmp_path, reference)


def _signal_on_call(obj, name: str, call: int, signum: int, monkeypatch) -> None:
    """Make ``obj.name`` send ``signum`` to this process right after its ``call``-th call."""
    original, calls = getattr(obj, name), [0]

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == call:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(obj, name, wrapper)


def test_sigterm_mid_episode_and_ctrl_c_during_evaluation_resume_exactly(
        reference: Path, tmp_path: Path, monkeypatch) -> None:
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    # 1) Ctrl-C during the evaluation at 320: that evaluation is abandoned, a checkpoint is
    #    written at the episode end, and the resumed run evaluates (and checkpoints) first.
    first = Trainer(tiny(tmp_path))
    first.setup()
    _signal_on_call(first.eval_env, "step", 3, signal.SIGINT, monkeypatch)
    with pytest.raises(TrainingInterrupted) as info:
        first.run()
    first.close()
    assert info.value.exit_code == 130 and info.value.checkpoint == tmp_path / "checkpoint.pt"
    state = load_checkpoint(tmp_path / "checkpoint.pt")["payload"]["trainer"]
    assert (state["env_steps"], state["pending_periodic"], state["num_evals"]) == (320, True, 0)
    assert not (tmp_path / "eval.csv").exists()
    # 2) SIGTERM in the middle of the 7th episode (5 agent steps into it).
    second = Trainer(tiny(tmp_path))
    second.setup()
    _signal_on_call(second.env, "step", 25, signal.SIGTERM, monkeypatch)
    with pytest.raises(TrainingInterrupted) as info:
        second.run()
    second.close()
    assert info.value.exit_code == 143
    state = load_checkpoint(tmp_path / "checkpoint.pt")["payload"]["trainer"]
    assert state["env_steps"] == 520 and state["episode"] == 6
    assert state["episode_in_progress"]["actions"].shape == (5, 1)
    # 3) The same command again: replays the 5 actions, then continues as if never stopped.
    monkeypatch.undo()
    result = train(tiny(tmp_path))
    assert result.resumed_from == 520 and result.env_steps == 640
    assert rows(tmp_path / "train.csv") == rows(reference / "train.csv")
    assert rows(tmp_path / "eval.csv") == rows(reference / "eval.csv")
    assert_same_parameters(tmp_path, reference)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == previous


def test_copied_run_dir_reports_its_own_video_and_stale_temp_files_are_removed(
        reference: Path, tmp_path: Path, caplog) -> None:
    copy = tmp_path / "copied"
    shutil.copytree(reference, copy)
    stale = copy / ".checkpoint.pt.x7f3k2.tmp"
    stale.write_bytes(b"\0" * 4096)  # left by a run killed while saving
    trainer = Trainer(tiny(copy))
    try:
        with caplog.at_level("INFO", logger="curl_moco"):
            trainer.setup()
        assert trainer.last_eval.video == copy / "videos" / "eval_640.mp4"
        assert trainer.last_eval.video.is_file()
    finally:
        trainer.close()
    assert not stale.exists() and "interrupted write" in caplog.text
    saved = load_checkpoint(reference / "checkpoint.pt")["payload"]["trainer"]["last_eval"]
    assert saved["video_file"] == "videos/eval_640.mp4"  # relative to the run folder


def test_disk_full_at_checkpoint_time_is_one_line_and_keeps_the_previous(
        reference: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import errno

    from curl_moco.io import atomic

    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    before = (run_dir / "checkpoint.pt").read_bytes()
    real_write = atomic._write_all

    def full_disk(fd, parts):  # the disk fills up while the checkpoint is written
        if ".checkpoint.pt." not in os.readlink(f"/proc/self/fd/{fd}"):
            return real_write(fd, parts)
        os.write(fd, b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_write_all", full_disk)
    code = main(argv_of({**TINY, "run_dir": str(run_dir), "steps": 720}))  # resume, then save
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"error: could not write checkpoint {run_dir / 'checkpoint.pt'}: No space left on " \
           "device; free disk space" in err
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert not list(run_dir.glob(".checkpoint.pt*.tmp"))


# ---------------------------------------------------------------- refused run dirs / checkpoints
def test_run_dir_of_another_run_is_refused(reference: Path) -> None:
    with pytest.raises(CheckpointError, match="task='cartpole-swingup'.*task='walker-walk'"):
        Trainer(tiny(reference, task="walker-walk", action_repeat=2, episode_length=80))
    with pytest.raises(CheckpointError, match="feature_dim=16.*feature_dim=32"):
        Trainer(tiny(reference, feature_dim=32))
    with pytest.raises(ValueError, match="run_dir"):
        Trainer(tiny(reference, resume=False))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_refused(reference: Path, tmp_path: Path, capsys,
                                       damage: str) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    ckpt = run_dir / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 1000]
    else:
        data[-500] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    reason = "truncated" if damage == "truncate" else "corrupt"
    with pytest.raises(CheckpointError, match=reason):
        Trainer(tiny(run_dir)).setup()
    assert main(argv_of({**TINY, "run_dir": str(run_dir)})) == 2
    assert reason in capsys.readouterr().err


# ---------------------------------------------------------------- pretrained encoder
def test_init_encoder_loads_a_pretrained_export(tmp_path: Path) -> None:
    torch.manual_seed(123)
    pretrained = PixelEncoder(9, 32, feature_dim=16, num_layers=2, num_filters=8)
    path = tmp_path / "encoder.pt"
    save_encoder_state(path, pretrained, {"arch": "pixel", "in_channels": 9, "image_size": 32,
                                          "feature_dim": 16, "num_layers": 2, "num_filters": 8})
    cfg = parse_config(CurlSacConfig, argv_of({**TINY, "run_dir": str(tmp_path / "run"),
                                               "init_encoder": str(path)}))
    assert cfg.init_encoder == str(path)
    trainer = Trainer(cfg)
    try:
        trainer.setup()
        agent = trainer.agent
        for key, value in pretrained.state_dict().items():
            assert torch.equal(agent.critic.encoder.state_dict()[key], value), key
            assert torch.equal(agent.key_encoder.encoder.state_dict()[key], value), key
            assert torch.equal(agent.actor.encoder.state_dict()[key], value), key
    finally:
        trainer.close()

    wrong = tmp_path / "wrong.pt"
    save_encoder_state(wrong, PixelEncoder(9, 40, 16, 2, 8),
                       {"arch": "pixel", "in_channels": 9, "image_size": 40, "feature_dim": 16,
                        "num_layers": 2, "num_filters": 8})
    trainer = Trainer(tiny(tmp_path / "run2", init_encoder=str(wrong)))
    try:
        with pytest.raises(CheckpointError, match="image_size=40.*image_size=32.*--crop-size"):
            trainer.setup()
    finally:
        trainer.close()
