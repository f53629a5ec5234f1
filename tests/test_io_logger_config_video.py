"""Logger resume semantics, config parsing/presets, mp4 writing, device resolution."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from curl_moco.io.config import knob, parse_config, save_config
from curl_moco.io.logger import Logger, csv_files, read_csv
from curl_moco.io.video import count_video_frames, write_video
from curl_moco.runtime import resolve_device


def test_logger_writes_rows_and_tensorboard(tmp_path):
    with Logger.to_folder(tmp_path) as logger:
        logger.log("train", 10, {"loss": torch.tensor(0.5), "alpha": 0.1})
        logger.log("train", 20, {"loss": 0.25, "alpha": 0.1, "new_metric": 3})
    rows = read_csv(tmp_path / "train.csv")
    assert [row["step"] for row in rows] == ["10", "20"]
    assert float(rows[0]["loss"]) == 0.5 and rows[0]["new_metric"] == ""
    assert rows[1]["new_metric"] == "3"
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_logger_resume_drops_rows_after_checkpoint_step(tmp_path):
    with Logger.to_folder(tmp_path, tensorboard=False) as logger:
        for step in (10, 20, 30, 40):
            logger.log("train", step, {"loss": step / 10})
        logger.log("eval", 20, {"return": 1.0})
        logger.log("eval", 40, {"return": 2.0})
    with Logger.to_folder(tmp_path, resume_step=20, tensorboard=False) as logger:
        logger.log("train", 30, {"loss": 9.0})
    train = read_csv(tmp_path / "train.csv")
    assert [(r["step"], r["loss"]) for r in train] == [("10", "1.0"), ("20", "2.0"), ("30", "9.0")]
    assert [r["step"] for r in read_csv(tmp_path / "eval.csv")] == ["20"]



def test_logger_upgrades_old_column_names_then_truncates(tmp_path):
    """A CSV written under older names is rewritten under the new ones, values in place, then
    cut after the resume step; new rows line up with the old ones."""
    (tmp_path / "train.csv").write_text(
        "step,loss,steps_per_s\n10,1.0,5.0\n20,2.0,6.0\n30,3.0,7.0\n")
    renames = {"step": "env_steps", "steps_per_s": "env_steps_per_s"}
    with Logger.to_folder(tmp_path, resume_step=20, tensorboard=False, step_column="env_steps",
                          renames=renames) as logger:
        logger.log("train", 30, {"loss": 9.0, "env_steps_per_s": 8.0, "agent_steps": 4})
    assert (tmp_path / "train.csv").read_text().splitlines() == [
        "env_steps,loss,env_steps_per_s,agent_steps", "10,1.0,5.0,", "20,2.0,6.0,",
        "30,9.0,8.0,4"]


def test_resume_rewrites_each_metrics_csv_once_and_leaves_other_csv_files_alone(tmp_path,
                                                                                monkeypatch):
    """Renaming old columns and dropping rows after the resume step is one atomic rewrite per
    file; a CSV without the step column (a user's own file in the run folder) is not a metrics
    file and keeps every row."""
    import curl_moco.io.logger as logger_module

    (tmp_path / "train.csv").write_text("step,loss\n10,1.0\n20,2.0\n30,3.0\n")
    (tmp_path / "eval.csv").write_text("env_steps,return\n10,5.0\n20,6.0\n")  # nothing to do
    notes = "seed,comment\n1,slow start\n2,diverged\n"
    (tmp_path / "notes.csv").write_text(notes)
    rewritten = []
    real_atomic_write = logger_module.atomic_write
    monkeypatch.setattr(logger_module, "atomic_write",
                        lambda path, data: (rewritten.append(Path(path).name),
                                            real_atomic_write(path, data)))
    logger_module.CsvSink(tmp_path, resume_step=20, step_column="env_steps",
                          renames={"step": "env_steps"})
    assert rewritten == ["train.csv"]
    assert (tmp_path / "train.csv").read_text().splitlines() == [
        "env_steps,loss", "10,1.0", "20,2.0"]
    assert (tmp_path / "notes.csv").read_text() == notes


def test_resume_leaves_a_csv_whose_step_column_holds_other_values_and_drops_a_torn_row(
        tmp_path, caplog):
    """A CSV of the user's with a ``step`` column of non-integers (``1000.0``) is not a metrics
    file of the run: the resume goes on and leaves it whole. A metrics row cut short by a full
    disk is dropped even when what is left of its step is a number."""
    theirs = "step,comment\n1000.0,warm-up\n2000.5,plateau\n"
    (tmp_path / "mine.csv").write_text(theirs)
    (tmp_path / "train.csv").write_text("step,loss,lr\n10,1.0,0.1\n20,2.0,0.1\n2")
    with Logger.to_folder(tmp_path, resume_step=20, tensorboard=False) as logger:
        logger.log("train", 30, {"loss": 3.0, "lr": 0.1})
    assert (tmp_path / "mine.csv").read_text() == theirs
    assert "mine.csv: its 'step' column holds values that are not step counts; left as it is" \
        in caplog.text
    assert (tmp_path / "train.csv").read_text().splitlines() == [
        "step,loss,lr", "10,1.0,0.1", "20,2.0,0.1", "30,3.0,0.1"]

    # the RL trainer's sink (step column env_steps, older runs' 'step' renamed to it): the
    # warning names the column as the user's file has it
    caplog.clear()
    renamed_run = tmp_path / "rl"
    renamed_run.mkdir()
    (renamed_run / "mine.csv").write_text(theirs)
    Logger.to_folder(renamed_run, resume_step=20, tensorboard=False, step_column="env_steps",
                     renames={"step": "env_steps"}).close()
    assert (renamed_run / "mine.csv").read_text() == theirs
    assert "mine.csv: its 'step' column holds values" in caplog.text


def test_a_run_that_names_its_groups_leaves_every_other_csv_alone(tmp_path):
    """With ``groups``, only those groups' CSV files are the run's: a user's table with an
    integer step column is neither cut on resume nor listed, and a row of another group is
    refused rather than written where the next resume would not clean it."""
    theirs = "step,smoothed\n10,1.5\n30,2.5\n"
    (tmp_path / "mine.csv").write_text(theirs)
    (tmp_path / "train.csv").write_text("step,loss\n10,1.0\n30,3.0\n")
    with Logger.to_folder(tmp_path, resume_step=10, tensorboard=False,
                          groups=("train", "eval")) as logger:
        logger.log("train", 20, {"loss": 2.0})
        with pytest.raises(ValueError, match="'probe' is not one of this run's CSV groups"):
            logger.log("probe", 20, {"accuracy": 0.5})
    assert (tmp_path / "mine.csv").read_text() == theirs
    assert (tmp_path / "train.csv").read_text().splitlines() == ["step,loss", "10,1.0", "20,2.0"]
    assert csv_files(tmp_path, ("train", "eval")) == [tmp_path / "train.csv"]
    assert csv_files(tmp_path) == [tmp_path / "mine.csv", tmp_path / "train.csv"]
    # without groups (a library user's own logger) every CSV with the step column is the run's
    Logger.to_folder(tmp_path, resume_step=10, tensorboard=False).close()
    assert (tmp_path / "mine.csv").read_text() == "step,smoothed\n10,1.5\n"


def test_csv_rewrites_are_atomic_and_leftovers_of_a_killed_one_are_cleared(tmp_path,
                                                                          monkeypatch):
    """Widening, renaming and truncating a CSV replace it whole: a rewrite that fails keeps the
    previous complete file, and a temporary file left by a killed rewrite goes at the next
    start."""
    import curl_moco.io.logger as logger_module

    before = "step,loss\n10,1.0\n20,2.0\n"
    (tmp_path / "train.csv").write_text(before)
    (tmp_path / ".train.csv.k1ll3d.tmp").write_text("step,lo")
    (tmp_path / ".checkpoint.pt.other.tmp").write_text("not ours")

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(logger_module, "atomic_write", full_disk)
    with Logger.to_folder(tmp_path, tensorboard=False) as logger:
        assert not (tmp_path / ".train.csv.k1ll3d.tmp").exists()
        assert (tmp_path / ".checkpoint.pt.other.tmp").exists()  # the run folder's business
        with pytest.raises(OSError, match="train.csv"):
            logger.log("train", 30, {"loss": 3.0, "new_metric": 1.0})  # widens the header
    assert (tmp_path / "train.csv").read_text() == before
    monkeypatch.undo()
    with Logger.to_folder(tmp_path, resume_step=10, tensorboard=False) as logger:
        logger.log("train", 20, {"loss": 4.0, "new_metric": 1.0})
    assert (tmp_path / "train.csv").read_text().splitlines() == [
        "step,loss,new_metric", "10,1.0,", "20,4.0,1.0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checkpoint.pt.other.tmp",
                                                          "train.csv"]


@dataclasses.dataclass
class ToyConfig:
    task: str = knob("cartpole-swingup", "task name")
    lr: float = knob(1e-3, "learning rate")
    batch_size: int = knob(128, "batch size")
    queue_size: int | None = knob(None, "queue size")
    use_queue: bool = knob(False, "use a queue")
    crop: tuple[int, ...] = knob((84, 84), "crop")


PRESETS = {"cheetah": {"task": "cheetah-run", "lr": 2e-4}}


def test_config_defaults_presets_and_overrides(tmp_path):
    assert parse_config(ToyConfig, []) == ToyConfig()
    cfg = parse_config(ToyConfig, ["--preset", "cheetah", "--batch-size", "32", "--use-queue",
                                   "--queue-size", "64", "--crop", "64", "64"], PRESETS)
    assert (cfg.task, cfg.lr, cfg.batch_size, cfg.use_queue) == ("cheetah-run", 2e-4, 32, True)
    assert cfg.queue_size == 64 and cfg.crop == (64, 64)
    explicit = parse_config(ToyConfig, ["--preset", "cheetah", "--lr", "0.5"], PRESETS)
    assert explicit.lr == 0.5
    path = save_config(cfg, tmp_path / "config.json")
    assert json.loads(path.read_text())["batch_size"] == 32
    assert parse_config(ToyConfig, ["--config", str(path)]) == cfg


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(KeyError, match="unknown preset='nope'.*cheetah"):
        parse_config(ToyConfig, ["--preset", "nope"], PRESETS)


def test_write_video_is_readable_with_all_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (65, 63, 3), dtype=np.uint8) for _ in range(12)]
    path = write_video(tmp_path / "eval.mp4", frames, fps=10)
    assert path.stat().st_size > 0
    assert count_video_frames(path) == 12
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [])


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device='tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_pixel_encoder_flags_are_one_set_in_both_commands_old_names_kept():
    """--pixel-layers / --pixel-filters / --image-size in train_dmc and pretrain_moco; the
    older names (--num-layers, --num-filters, --load-size) still set the same fields."""
    from curl_moco.io.config import build_parser
    from curl_moco.pretrain.config import MocoConfig
    from curl_moco.rl.config import CurlSacConfig

    for argv in (["--pixel-layers", "2", "--pixel-filters", "8", "--image-size", "40"],
                 ["--num-layers", "2", "--num-filters", "8", "--image-size", "40"]):
        cfg = parse_config(CurlSacConfig, argv)
        assert (cfg.num_layers, cfg.num_filters, cfg.image_size) == (2, 8, 40)
    for argv in (["--pixel-layers", "2", "--pixel-filters", "8", "--image-size", "40"],
                 ["--pixel-layers", "2", "--pixel-filters", "8", "--load-size", "40"]):
        cfg = parse_config(MocoConfig, argv)
        assert (cfg.pixel_layers, cfg.pixel_filters, cfg.load_size) == (2, 8, 40)
    for cls in (CurlSacConfig, MocoConfig):
        text = build_parser(cls).format_help()
        assert "--pixel-layers" in text and "--pixel-filters" in text and "--image-size" in text
    assert "--num-layers" in build_parser(CurlSacConfig).format_help()  # listed as aliases
    assert "--load-size" in build_parser(MocoConfig).format_help()
