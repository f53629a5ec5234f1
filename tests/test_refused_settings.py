"""Settings that used to pass the checks and then crash in torch or do nothing at all: each is
refused with one ``error:`` line naming it (exit 2, nothing written), or, where it still does
something useful, named in a warning. Also policies of collect_frames, class folders, metrics
CSVs with a byte-order mark and the benchmark script's start-up checks and signal handling."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_args import MOCO, RL
from digits import write_digits_folder

from curl_moco.experiments import collect_frames, linear_eval, pretrain_moco, train_dmc
from curl_moco.io import checks
from curl_moco.io.checks import listing
from curl_moco.io.logger import CsvSink, read_csv
from curl_moco.pretrain.data import ImageFolderDataset

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"train_dmc": train_dmc.main, "pretrain_moco": pretrain_moco.cli,
                "linear_eval": linear_eval.cli, "collect_frames": collect_frames.cli}
COLLECT = ["--out", "{tmp}/frames", "--domains", "cartpole,walker", "--frames-per-domain", "2",
           "--episode-frames", "2", "--image-size", "16"]

# (entry point, argv, text the one error line must contain)
CASES: list[tuple[str, list[str], str]] = [
    # torch refuses these (Adam's beta1 = 1 divides by 0; OpenMP cannot start 100000 threads;
    # SGD's float32 update overflows)
    ("train_dmc", RL + ["--alpha-beta", "1.0"], "alpha_beta=1 must be < 1"),
    ("train_dmc", RL + ["--threads", "100000"], "threads=100000 is more than the"),
    ("train_dmc", RL + ["--lr", "1e308"], "lr=1e+308 is beyond float32's range"),
    ("train_dmc", RL + ["--alpha-lr", "1e300"], "alpha_lr=1e+300 is beyond float32's range"),
    ("pretrain_moco", MOCO + ["--lr", "1e300"], "lr=1e+300 is beyond float32's range"),
    ("pretrain_moco", MOCO + ["--lr", "1e38", "--batch-size", "1024", "--queue-size", "0"],
     "lr=1e+38 is beyond float32's range once scaled (4e+38)"),
    ("pretrain_moco", MOCO + ["--sgd-momentum", "1"], "sgd_momentum=1 must be < 1"),
    ("linear_eval", ["--random-init", "--arch", "pixel", "--data", "{digits}",
                     "--lincls-momentum", "1"], "lincls_momentum=1 must be < 1"),
    # settings that would do nothing
    ("train_dmc", RL + ["--seed-steps", "160"], "seed_steps=160: the run would do 1 update(s)"),
    ("train_dmc", RL + ["--seed-steps", "400"], "seed_steps=400: the run would do 0 update(s)"),
    ("train_dmc", ["--task", "cartpole-swingup", "--steps", "1200", "--run-dir", "{tmp}/rl"],
     "steps=1200: the run would do 0 update(s): its first seed_steps=8000"),
    ("train_dmc", RL + ["--critic-tau", "0"], "critic_tau=0 means the target networks never"),
    ("train_dmc", RL + ["--encoder-tau", "0"], "encoder_tau=0 means the target networks never"),
    ("pretrain_moco", MOCO + ["--momentum", "1"], "momentum=1 means the key encoder never moves"),
    # memory and capacity: blamed on replay_capacity, with a fix that helps
    ("train_dmc", RL + ["--replay-capacity", str(10**12)],
     "replay_capacity=1000000000000 needs at least"),
    ("train_dmc", RL + ["--replay-capacity", "8"],
     "replay_capacity=8 holds at most 5 sampleable transitions (frame_stack=3 slots hold no "
     "transition), fewer than batch_size=8; raise replay_capacity to at least 11"),
    # a preset (or config file) of one task moved to another
    ("train_dmc", ["--preset", "cheetah-run", "--task", "walker-walk", "--device", "cpu",
                   "--run-dir", "{tmp}/rl"],
     "task='walker-walk': preset='cheetah-run' is made for cheetah-run and would train "
     "walker-walk with cheetah-run's action_repeat=4, lr=0.0002"),
    ("train_dmc", ["--preset", "quickstart", "--task", "walker-walk", "--run-dir", "{tmp}/rl"],
     "give --action-repeat explicitly"),
    ("train_dmc", ["--config", "{cheetah_json}", "--task", "walker-walk", "--run-dir",
                   "{tmp}/rl"], "is made for cheetah-run"),
    # config files: a key given twice
    ("train_dmc", RL + ["--config", "{twice_json}"], "sets 'steps' more than once"),
    ("pretrain_moco", MOCO + ["--config", "{twice_json}"], "sets 'steps' more than once"),
    # linear_eval: --arch beside a checkpoint is a contradiction, not a silent no-op
    ("linear_eval", ["--checkpoint", "{moco_ckpt}", "--arch", "resnet18", "--data", "{digits}"],
     "arch='resnet18' conflicts with checkpoint="),
    # collect_frames --policy: wrong signature, action shape, non-numeric / NaN actions
    ("collect_frames", COLLECT + ["--policy", "bad_policies:one_argument"],
     "cannot be called as one_argument(obs, rng, action_space)"),
    ("collect_frames", COLLECT + ["--policy", "bad_policies:fixed_shape"],
     "returned an action of shape (1,) for walker-walk, which needs shape (6,)"),
    ("collect_frames", COLLECT + ["--policy", "bad_policies:words"],
     "returned str 'left' for cartpole-swingup: not a numeric action of shape (1,)"),
    ("collect_frames", COLLECT + ["--policy", "bad_policies:nan"],
     "returned a non-finite action [nan] for cartpole-swingup"),
]

BAD_POLICIES = '''
import numpy as np

def one_argument(obs):
    return np.zeros(1)

def fixed_shape(obs, rng, space):
    return np.zeros(1)

def words(obs, rng, space):
    return "left"

def nan(obs, rng, space):
    return np.full(space.shape, np.nan)

def half(obs, rng, space):
    return [0.5] * space.shape[0]  # a list is a numeric action too
'''


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    from curl_moco.io.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("refused")
    digits = write_digits_folder(root / "digits", size=32, per_class=4)
    (root / "twice.json").write_text('{"steps": 100, "seed": 1, "steps": 200}')
    (root / "cheetah.json").write_text('{"task": "cheetah-run", "action_repeat": 4, '
                                       '"lr": 0.0002, "batch_size": 512}')
    moco = save_checkpoint(root / "moco.pt", {"model": {}}, kind="moco",
                           config={"arch": "pixel", "frame_stack": 1, "crop_size": 28,
                                   "feature_dim": 16, "pixel_layers": 2, "pixel_filters": 8})
    policies = root / "policies"
    policies.mkdir()
    (policies / "bad_policies.py").write_text(BAD_POLICIES)
    return {"tmp": str(root), "digits": str(digits), "twice_json": str(root / "twice.json"),
            "cheetah_json": str(root / "cheetah.json"), "moco_ckpt": str(moco),
            "policies": str(policies)}


@pytest.mark.parametrize(("entry", "argv", "expected"), CASES,
                         ids=[f"{e}:{' '.join(a[-2:])}" for e, a, _ in CASES])
def test_refused_with_one_error_line_and_nothing_written(entry, argv, expected, paths, capsys,
                                                         monkeypatch, one_thread) -> None:
    monkeypatch.syspath_prepend(paths["policies"])
    before = sorted(os.listdir(paths["tmp"]))
    code = ENTRY_POINTS[entry]([arg.format(**paths) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-2000:]
    assert expected in errors[0], errors[0]
    assert sorted(os.listdir(paths["tmp"])) == before


def test_a_good_custom_policy_collects_its_actions(paths, tmp_path, monkeypatch) -> None:
    import numpy as np

    monkeypatch.syspath_prepend(paths["policies"])
    out = tmp_path / "frames"
    argv = [a.format(tmp=tmp_path) for a in COLLECT] + ["--policy", "bad_policies:half"]
    assert collect_frames.cli(argv) == 0
    with np.load(out / "walker" / "frames.npz") as meta:
        assert meta["action"].shape == (2, 6) and np.all(meta["action"] == 0.5)


def test_memory_check_names_the_available_memory(monkeypatch, tmp_path) -> None:
    """A buffer that does not fit the memory left is refused with the numbers and a capacity
    that fits; one that fits passes."""
    from curl_moco.io.errors import UsageError
    from curl_moco.rl import config as rl_config

    monkeypatch.setattr(rl_config, "available_memory", lambda: 2**30)  # 1 GiB left
    cfg = rl_config.CurlSacConfig(run_dir=str(tmp_path / "r"), device="cpu")
    with pytest.raises(UsageError, match=r"^replay_capacity=100000 needs at least 2.8 GiB of "
                       r"memory \(29.3 KiB per slot at image_size=100\), but only 1.0 GiB is "
                       r"available; lower replay_capacity \(at most 35766 slots fit now\)"):
        rl_config.validate(cfg)
    rl_config.validate(rl_config.CurlSacConfig(run_dir=str(tmp_path / "r"), device="cpu",
                                                replay_capacity=30_000))
    assert checks.available_memory() is None or checks.available_memory() > 0


def test_a_preset_used_for_its_own_task_or_with_explicit_values_passes() -> None:
    from curl_moco.io.config import parse_config
    from curl_moco.rl.config import CurlSacConfig, check_task_override

    def parse(*argv: str) -> CurlSacConfig:
        return parse_config(CurlSacConfig, list(argv), train_dmc.CURL_PRESETS,
                            check_overrides=check_task_override)

    assert parse("--preset", "walker-walk", "--task", "walker-walk").action_repeat == 2
    moved = parse("--preset", "cheetah-run", "--task", "walker-walk", "--action-repeat", "2",
                  "--lr", "1e-3")
    assert (moved.task, moved.action_repeat, moved.lr) == ("walker-walk", 2, 1e-3)
    # quickstart's own batch size (not a per-task value) moves along silently
    assert parse("--preset", "quickstart", "--task", "walker-walk", "--action-repeat",
                 "2").batch_size == 32
    assert parse("--task", "cheetah-run").action_repeat is None  # 'curl' fills it in later


def test_empty_class_folders_are_skipped_with_a_note(tmp_path, caplog) -> None:
    data = write_digits_folder(tmp_path / "d", size=16, per_class=2)
    (data / "empty_a").mkdir()
    (data / "empty_b").mkdir()
    (data / "empty_b" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="curl_moco"):
        dataset = ImageFolderDataset(data, 16)
    assert dataset.classes == [str(i) for i in range(10)]
    assert sorted(set(dataset.labels.tolist())) == list(range(10))
    assert "skipping 2 class folder(s) without images (empty_a, empty_b)" in caplog.text


def test_moco_notes_a_skipped_knn_monitor_and_a_queue_longer_than_the_data(
        tmp_path, caplog, one_thread) -> None:
    data = write_digits_folder(tmp_path / "d", size=32, per_class=2)  # 20 images
    argv = [a.format(digits=data, tmp=tmp_path) for a in MOCO]
    with caplog.at_level(logging.WARNING, logger="curl_moco"):
        assert pretrain_moco.cli(argv + ["--val-fraction", "0", "--queue-size", "32"]) == 0
    assert "kNN monitor skipped: the held-out split is empty (val_fraction=0" in caplog.text
    assert ("queue_size=32 is larger than the training split (20 items)" in caplog.text)
    caplog.clear()
    single = tmp_path / "single"  # classes 0-4 have two images, 5-9 one: those are not tested
    shutil.copytree(data, single)
    for label in range(5, 10):
        (single / str(label) / "00001.png").unlink()
    with caplog.at_level(logging.WARNING, logger="curl_moco"):
        assert pretrain_moco.cli(argv + ["--data", str(single), "--val-fraction", "0.5",
                                         "--run-dir", str(tmp_path / "m2")]) == 0
    assert ("kNN monitor: 5 class(es) have a single image or episode and so none held out "
            "(5, 6, 7, 8, 9)") in caplog.text


def test_class_lists_say_when_they_are_cut(tmp_path) -> None:
    assert listing(["a", "b"]) == "a, b"
    assert listing(range(12)) == "0, 1, 2, 3, 4, ... (12 in all)"
    from curl_moco.io.errors import UsageError

    root = tmp_path / "d"
    for name in "abc":
        (root / name).mkdir(parents=True)
    with pytest.raises(UsageError, match=r"has class folders \(a, b, c\) but no image files"):
        ImageFolderDataset(root, 16)


def test_metrics_csv_saved_with_a_byte_order_mark_keeps_its_rows_on_resume(tmp_path) -> None:
    """A train.csv opened and saved by a spreadsheet program starts with a UTF-8 BOM: its first
    column is still 'step' (not '\\ufeffstep', an unknown column), so resuming keeps the rows up
    to the checkpoint instead of dropping them all."""
    (tmp_path / "train.csv").write_text("\ufeffstep,loss\n10,1.0\n20,2.0\n30,3.0\n",
                                        encoding="utf-8")
    sink = CsvSink(tmp_path, resume_step=20)
    sink.write("train", 30, {"step": 30, "loss": 3.5})
    rows = read_csv(tmp_path / "train.csv")
    assert [(r["step"], r["loss"]) for r in rows] == [("10", "1.0"), ("20", "2.0"),
                                                      ("30", "3.5")]
    assert list(rows[0]) == ["step", "loss"]


# ---------------------------------------------------------------- run_curl_benchmark.sh
SCRIPT = REPO / "scripts" / "run_curl_benchmark.sh"


def run_script(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(home),
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("args", "expected"), [
    (("--tasks", "cartpole-swingup nosuch-task"), "error: unknown task 'nosuch-task'"),
    (("--tasks", "cartpole-swingup", "--", "--frobnicate"), "error: unrecognized arguments: "
                                                             "--frobnicate"),
])
def test_benchmark_checks_every_run_before_starting_any(args, expected, tmp_path) -> None:
    done = run_script("--device", "cpu", "--seeds", "1 2", "--runs-dir", str(tmp_path / "runs"),
                      "--results-dir", str(tmp_path / "results"), *args, home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert done.stderr.startswith(expected), done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_benchmark_with_a_missing_python_is_one_error_line(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "nopython"), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPT), "--device", "cpu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: PYTHON={tmp_path / 'nopython'} not found: run "
                                   "scripts/setup.sh or set PYTHON")


@pytest.mark.slow
def test_killing_the_benchmark_stops_its_runs_with_a_checkpoint(tmp_path) -> None:
    """SIGTERM to the script: each training run gets SIGTERM, writes its checkpoint and exits;
    none is left running, and the script exits 143."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path),
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--device", "cpu", "--tasks", "cartpole-swingup", "--seeds", "1",
         "--steps", "100000", "--runs-dir", str(runs), "--results-dir", str(tmp_path / "res"),
         "--", "--preset", "smoke", "--threads", "1", "--checkpoint-every", "100000"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    train_csv = runs / "cartpole-swingup" / "seed_1" / "train.csv"
    deadline = time.time() + 240
    while not (train_csv.is_file() and train_csv.stat().st_size) and time.time() < deadline:
        time.sleep(1)  # the run has started training
    children = subprocess.run(["pgrep", "-f", f"train_dmc.*{runs}"], capture_output=True,
                              text=True).stdout.split()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    assert "stopped cartpole-swingup seed 1 (signal, exit 143)" in err
    assert children
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert (runs / "cartpole-swingup" / "seed_1" / "checkpoint.pt").is_file()
