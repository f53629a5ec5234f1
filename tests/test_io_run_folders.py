"""Nothing lost: one writer per folder (a lock naming the holder's PID, stale locks taken over),
refusals instead of guesses for folders that hold data but no usable checkpoint, atomic outputs
that name their path when the disk is full, SIGHUP stopping like SIGTERM, a quiet Ctrl-C during
start-up, and ranks under torchrun that agree before their first collective.

Entry points are called in-process where possible (fast); the lock holder, the start-up Ctrl-C
and torchrun are real processes."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from digits import write_digits_folder

from curl_moco.experiments import collect_frames, export_encoder, pretrain_moco, train_dmc
from curl_moco.io import atomic
from curl_moco.io.checkpoint import save_checkpoint
from curl_moco.io.lock import LOCK_NAME, FolderInUseError, FolderLock

REPO = Path(__file__).resolve().parents[1]

RL = ["--preset", "smoke", "--task", "cartpole-swingup", "--image-size", "40", "--crop-size",
      "32", "--num-layers", "2", "--batch-size", "8", "--seed-steps", "80", "--steps", "160",
      "--eval-every", "160", "--eval-episodes", "1", "--device", "cpu", "--no-progress"]
MOCO = ["--arch", "pixel", "--load-size", "32", "--crop-size", "28", "--pixel-layers", "2",
        "--batch-size", "8", "--queue-size", "16", "--epochs", "1", "--num-workers", "0",
        "--device", "cpu", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits_folder(tmp_path_factory.mktemp("digits") / "d", size=32, per_class=4)


def argv_for(entry: str, run_dir: Path, digits: Path) -> list[str]:
    if entry == "train_dmc":
        return [*RL, "--run-dir", str(run_dir)]
    return [*MOCO, "--data", str(digits), "--run-dir", str(run_dir)]


ENTRY = {"train_dmc": train_dmc.main, "pretrain_moco": pretrain_moco.cli}


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-2000:]
    return errors[0]


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every file (content) and folder (None) under ``folder``: to compare before and after."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@contextmanager
def held_by_another_process(folder: Path, setting: str = "run_dir") -> Iterator[int]:
    """A real second process holding ``folder``'s lock; yields its PID."""
    code = ("import sys, time; from curl_moco.io.lock import FolderLock; "
            "lock = FolderLock(sys.argv[1], sys.argv[2]).acquire(); print('locked', flush=True); "
            "time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), setting], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# ---------------------------------------------------------------- the lock
def test_lock_refuses_a_second_process_and_takes_over_a_dead_ones(tmp_path, caplog) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    with held_by_another_process(folder) as pid:
        owner = json.loads((folder / LOCK_NAME).read_text())
        assert owner["pid"] == pid and owner["command"].endswith(f"-c {folder} run_dir")
        with pytest.raises(FolderInUseError, match=f"PID {pid}.*choose another run_dir"):
            FolderLock(folder).acquire()
    # The holder was killed (SIGKILL: no clean-up): its lock file is still there, but stale.
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == pid
    caplog.set_level("INFO", logger="curl_moco")
    with FolderLock(folder) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        assert f"took over the lock of PID {pid}" in caplog.text
    assert not (folder / LOCK_NAME).exists()  # released cleanly: no lock file left


@pytest.mark.parametrize("entry", ["train_dmc", "pretrain_moco"])
def test_second_trainer_on_a_run_folder_is_refused_naming_the_first(entry, tmp_path, digits,
                                                                     capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.csv").write_text("step,loss\n10,1.0\n")
    with held_by_another_process(run_dir) as pid:
        before = listing(run_dir)
        assert ENTRY[entry](argv_for(entry, run_dir, digits)) == 2
        assert f"PID {pid}" in error_line(capsys)
        assert listing(run_dir) == before  # nothing written, nothing dropped


@pytest.mark.slow
def test_two_real_train_dmc_processes_on_one_folder(tmp_path) -> None:
    """End to end (``python -m``; the in-process test above checks the same faster): the second
    process exits 2 naming the holder; the holder's folder is untouched."""
    run_dir = tmp_path / "my run"
    run_dir.mkdir()
    with held_by_another_process(run_dir) as pid:
        proc = subprocess.run([sys.executable, "-m", "experiments.train_dmc", *RL, "--run-dir",
                               str(run_dir)], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: run_dir={shlex.quote(str(run_dir))} is in use") and \
        f"PID {pid}" in last
    assert [p.name for p in run_dir.iterdir()] == [LOCK_NAME]  # the (dead) holder's


def test_two_collect_frames_on_one_folder(tmp_path, capsys) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"domains": [{"domain": "cartpole",
                                                                 "frames": 1}]}))
    with held_by_another_process(out, "out") as pid:
        before = listing(out)
        assert collect_frames.cli(["--out", str(out), "--overwrite", "--domains", "cartpole",
                                   "--frames-per-domain", "1", "--image-size", "16"]) == 2
        line = error_line(capsys)
        assert line.startswith(f"error: out={out} is in use") and f"PID {pid}" in line, line
        assert listing(out) == before


def test_train_dmc_under_torchrun_is_refused(tmp_path, monkeypatch, capsys) -> None:
    """train_dmc is one process: N torchrun copies would train N times into one folder."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert train_dmc.main([*RL, "--run-dir", str(tmp_path / "run")]) == 2
    assert "WORLD_SIZE=2: train_dmc trains one agent in one process" in error_line(capsys)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- refusals, not guesses
@pytest.mark.parametrize("entry", ["train_dmc", "pretrain_moco"])
@pytest.mark.parametrize("kind", ["folder", "dangling symlink", "symlink loop"])
def test_unusable_checkpoint_is_refused_not_taken_for_none(entry, kind, tmp_path, digits,
                                                           capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.csv").write_text("step,loss\n10,1.0\n20,0.9\n")
    ckpt = run_dir / "checkpoint.pt"
    if kind == "folder":
        ckpt.mkdir()
    elif kind == "dangling symlink":
        ckpt.symlink_to(tmp_path / "moved_away.pt")
    else:
        ckpt.symlink_to(ckpt)
    before = listing(run_dir) if kind == "folder" else sorted(os.listdir(run_dir))
    assert ENTRY[entry](argv_for(entry, run_dir, digits)) == 2
    line = error_line(capsys)
    assert "checkpoint.pt" in line and "cannot be resumed" in line, line
    assert {"folder": "is a folder", "dangling symlink": "does not exist",
            "symlink loop": "is a symlink to"}[kind] in line
    after = listing(run_dir) if kind == "folder" else sorted(os.listdir(run_dir))
    assert after == before  # the CSV rows are kept


@pytest.mark.parametrize("entry", ["train_dmc", "pretrain_moco"])
@pytest.mark.parametrize("flags", [["--no-resume"], []])
def test_logs_without_a_checkpoint_are_never_overwritten(entry, flags, tmp_path, digits,
                                                         capsys) -> None:
    """--no-resume over a run's logs and videos, or logs without config.json (which run?)."""
    run_dir = tmp_path / "run"
    (run_dir / "videos").mkdir(parents=True)
    (run_dir / "videos" / "eval_1000.mp4").write_bytes(b"video")
    (run_dir / "eval.csv").write_text("step,episode_reward\n1000,12.5\n")
    before = listing(run_dir)
    assert ENTRY[entry](argv_for(entry, run_dir, digits) + flags) == 2
    line = error_line(capsys)
    expected = ("holds a run's eval.csv, videos but no checkpoint; --no-resume would overwrite"
                if flags else "holds eval.csv, videos but neither a checkpoint nor config.json")
    assert expected in line, line
    assert listing(run_dir) == before


def test_rerun_after_a_crash_before_the_first_checkpoint_is_accepted(tmp_path) -> None:
    """config.json holds config fields only; the world size lives in checkpoints."""
    import dataclasses

    from curl_moco.io.run import RunDir

    @dataclasses.dataclass
    class Toy:
        lr: float = 0.1

    first = RunDir(tmp_path / "run", Toy(), kind="toy", may_change=(), extra={"world_size": 1})
    assert first.check(resume=True) is None
    first.prepare()
    first.release()  # crashed here, before any checkpoint
    again = RunDir(tmp_path / "run", Toy(), kind="toy", may_change=(), extra={"world_size": 1})
    assert again.check(resume=True) is None  # the same command: accepted
    again.release()
    with pytest.raises(ValueError, match="lr=0.1, this run has lr=0.2"):
        RunDir(tmp_path / "run", Toy(lr=0.2), kind="toy", may_change=(),
               extra={"world_size": 1}).check(resume=True)


def test_no_file_is_written_before_a_late_start_up_refusal(tmp_path, capsys) -> None:
    """A pretrained encoder that does not fit is refused after the environments are built:
    still before config.json, the CSV files or tb/ exist."""
    from curl_moco.io.encoder_export import save_encoder_state

    wrong = tmp_path / "encoder.pt"
    save_encoder_state(wrong, __import__("torch").nn.Linear(2, 2),
                       {"arch": "pixel", "image_size": 32, "in_channels": 9, "feature_dim": 7,
                        "num_layers": 2, "num_filters": 32})
    run_dir = tmp_path / "run"
    assert train_dmc.main([*RL, "--run-dir", str(run_dir), "--init-encoder", str(wrong)]) == 2
    assert "encoder" in error_line(capsys)
    assert not run_dir.exists() or list(run_dir.iterdir()) == []


# ---------------------------------------------------------------- outputs
@pytest.mark.parametrize("writer", ["checkpoint", "config", "torchvision export", "csv row"])
def test_full_disk_names_the_path_and_leaves_no_partial_file(writer, tmp_path,
                                                             monkeypatch) -> None:
    import torch

    from curl_moco.io.checkpoint import CheckpointWriteError
    from curl_moco.io.config import save_config
    from curl_moco.io.logger import CsvSink
    from curl_moco.pretrain.config import MocoConfig
    from curl_moco.pretrain.export import build_backbone, export_torchvision

    def full_disk(fd, parts):
        os.write(fd, b"x" * 100)  # part of the file reaches the disk, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_write_all", full_disk)
    target = tmp_path / ("train.csv" if writer == "csv row" else "out.file")
    with pytest.raises((OSError, CheckpointWriteError)) as info:
        if writer == "checkpoint":
            save_checkpoint(target, {"x": torch.zeros(3)}, kind="toy", config={})
        elif writer == "config":
            save_config(MocoConfig(), target)
        elif writer == "torchvision export":
            export_torchvision(build_backbone({"arch": "resnet18", "in_channels": 3}), target)
        else:
            real_open = open

            def full_open(path, *args, **kwargs):
                f = real_open(path, *args, **kwargs)
                f.write = lambda text: (_ for _ in ()).throw(
                    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
                return f

            monkeypatch.setattr("builtins.open", full_open)
            CsvSink(tmp_path).write("train", 1, {"loss": 1.0})
    error = info.value
    if isinstance(error, CheckpointWriteError):  # a usage error whose one line names the file
        assert f"{target}: No space left on device" in str(error), error
    else:
        assert (error.errno, error.filename) == (errno.ENOSPC, str(target)), error
    if writer != "csv row":
        assert list(tmp_path.iterdir()) == []  # no .tmp, no 0-byte file


def test_export_on_a_full_disk_is_one_line_naming_the_output(tmp_path, monkeypatch,
                                                             capsys) -> None:
    moco = save_checkpoint(tmp_path / "ckpt.pt", {"model": {}}, kind="moco",
                           config={"arch": "pixel", "frame_stack": 1, "crop_size": 28,
                                   "feature_dim": 16, "pixel_layers": 2, "pixel_filters": 8})
    from curl_moco.pretrain.export import arch_config, build_backbone

    backbone = build_backbone(arch_config(json.loads(json.dumps(
        {"arch": "pixel", "frame_stack": 1, "crop_size": 28, "feature_dim": 16,
         "pixel_layers": 2, "pixel_filters": 8}))))
    save_checkpoint(moco, {"model": {f"encoder_q.backbone.{k}": v for k, v in
                                     backbone.state_dict().items()}}, kind="moco",
                    config={"arch": "pixel", "frame_stack": 1, "crop_size": 28,
                            "feature_dim": 16, "pixel_layers": 2, "pixel_filters": 8})

    def full_disk(fd, parts):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_write_all", full_disk)
    out = tmp_path / "exports" / "enc.pt"
    assert export_encoder.cli(["--checkpoint", str(moco), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert str(out) in line and "No space left on device" in line, line
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_read_only_videos_folder_is_refused_at_start_up(tmp_path, capsys) -> None:
    videos = tmp_path / "run" / "videos"
    videos.mkdir(parents=True)
    immutable = os.geteuid() == 0
    if immutable:  # root writes through permission bits: make the folder immutable instead
        if subprocess.run(["chattr", "+i", str(videos)], capture_output=True).returncode:
            pytest.skip("root without chattr +i: cannot make a read-only folder here")
    else:
        videos.chmod(0o555)
    try:
        assert train_dmc.main([*RL, "--run-dir", str(tmp_path / "run")]) == 2
        line = error_line(capsys)
        assert line.startswith(f"error: videos folder={videos} is not writable"), line
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(videos)], check=True)
        else:
            videos.chmod(0o755)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["videos"]


# ---------------------------------------------------------------- signals
def test_sighup_checkpoints_and_exits_129_with_a_quoted_resume_command(tmp_path, monkeypatch,
                                                                       capsys) -> None:
    from curl_moco.rl.agent import CurlSacAgent

    original, calls = CurlSacAgent.update, [0]

    def update_then_hang_up(self, batch):
        calls[0] += 1
        if calls[0] == 1:
            os.kill(os.getpid(), signal.SIGHUP)  # the terminal was closed
        return original(self, batch)

    monkeypatch.setattr(CurlSacAgent, "update", update_then_hang_up)
    previous = signal.getsignal(signal.SIGHUP)
    run_dir = tmp_path / "it's a run"
    assert train_dmc.main([*RL, "--run-dir", str(run_dir)]) == 129
    assert signal.getsignal(signal.SIGHUP) is previous  # handler restored
    err = capsys.readouterr().err
    assert re.search(r"interrupted by SIGHUP at \d+ environment steps", err), err[-2000:]
    assert f"checkpoint saved to {shlex.quote(str(run_dir / 'checkpoint.pt'))}" in err
    command = err.split("resume with: ")[1].splitlines()[0]
    assert shlex.split(command)[-2:] == ["--config", str(run_dir / "config.json")]
    assert (run_dir / "checkpoint.pt").is_file()


def _wait_for_torch_import(pid: int, timeout: float = 60) -> bool:
    """Until the process has started loading torch's shared library (mid-import)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if "libtorch" in Path(f"/proc/{pid}/maps").read_text():
                return True
        except OSError:
            return False
        time.sleep(0.01)
    return False


def test_ctrl_c_during_start_up_exits_130_without_traceback(tmp_path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train_dmc", *RL, "--run-dir",
                             str(run_dir)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert _wait_for_torch_import(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err, err[-2000:]
    assert not run_dir.exists()


# ---------------------------------------------------------------- torchrun
RANK_SCRIPT = """
import os, sys
from curl_moco.experiments import pretrain_moco
extra = sys.argv[2:] if os.environ["RANK"] == sys.argv[1] else []
sys.exit(pretrain_moco.cli([*{argv!r}, *extra]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("rank_flags", "expected"), [
    (["--knn-k", "0"], "error (rank 1): knn_k=0 must be > 0"),
    (["--seed", "1"], "error: seed differs between ranks: rank 0 has seed=0, rank 1 has seed=1"),
])
def test_ranks_agree_before_training(rank_flags, expected, tmp_path, digits) -> None:
    """One rank with a bad or different setting: every rank stops with exit 2 and an error
    line, rank 0 without a gloo traceback; nothing is written."""
    script = tmp_path / "per_rank.py"
    run_dir = tmp_path / "run"
    script.write_text(RANK_SCRIPT.format(argv=argv_for("pretrain_moco", run_dir, digits)))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script), "1", *rank_flags], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr[-3000:]
    assert "gloo" not in proc.stderr.lower() and "Connection closed" not in proc.stderr
    for package in ("curl_moco", "envs", "experiments"):
        assert f'File "{REPO / package}' not in proc.stderr
    root_cause = proc.stderr.split("Root Cause")[1]
    assert "exitcode  : 2" in root_cause
    if "knn" in expected:  # the rank that refused, not rank 0 waiting for it
        assert "rank      : 1 (local_rank: 1)" in root_cause, proc.stderr[-3000:]
    assert not run_dir.exists()


@pytest.mark.slow
def test_train_dmc_under_real_torchrun_is_refused_by_every_rank(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "experiments.train_dmc", *RL,
                           "--run-dir", str(tmp_path / "run")], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    # Every rank refuses on its own; torchrun may stop the slower rank before it prints, so
    # one refusal line (rank 0's or rank 1's) is what is certain, and no rank may train.
    assert re.search(r"error( \(rank [01]\))?: WORLD_SIZE=2: train_dmc trains one agent",
                     proc.stderr), proc.stderr[-3000:]
    for package in ("curl_moco", "envs", "experiments"):  # no traceback from our code
        assert f'File "{REPO / package}' not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_importing_an_entry_point_leaves_ctrl_c_alone() -> None:
    """Library users and tests import the entry points: the start-up handler is not theirs."""
    from curl_moco.io import quiet_start

    assert not quiet_start.launched_as_entry_point()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_claimed_new_folder_is_locked_and_removed_again_if_nothing_was_written(
        tmp_path) -> None:
    """Trainers lock a new run folder before their work (two runs started at the same moment:
    the second is refused early); a run refused after that leaves nothing behind."""
    import dataclasses

    from curl_moco.io.run import RunDir

    @dataclasses.dataclass
    class Toy:
        lr: float = 0.1

    folder = RunDir(tmp_path / "new" / "run", Toy(), kind="toy", may_change=())
    assert folder.check(resume=True) is None and not folder.path.exists()
    folder.claim()
    assert [p.name for p in folder.path.iterdir()] == [LOCK_NAME]
    with pytest.raises(FolderInUseError, match=f"PID {os.getpid()}"):
        RunDir(folder.path, Toy(), kind="toy", may_change=()).check(resume=True)
    folder.release()
    assert not (tmp_path / "new").exists()  # the parents it created too
    folder.prepare()  # a run that wrote its config keeps its folder
    folder.release()
    assert [p.name for p in folder.path.iterdir()] == ["config.json"]
