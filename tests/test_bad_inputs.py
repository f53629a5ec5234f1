"""The error convention of every entry point: a setting, file or environment problem the user can
fix prints one ``error: ...`` line naming it and exits 2, without a traceback, before any work.

Most cases call the entry points' ``cli``/``main`` in-process (fast); a few run real processes
(``python -m ...``, torchrun) to check the exit status and stderr end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_args import MOCO, RL
from digits import write_digits_folder

from curl_moco.experiments import (
    collect_frames,
    evaluate,
    export_encoder,
    linear_eval,
    plot_results,
    pretrain_moco,
    train_dmc,
)
from curl_moco.io.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]

ENTRY_POINTS: dict[str, Callable[[list[str]], int]] = {
    "train_dmc": train_dmc.main, "pretrain_moco": pretrain_moco.cli,
    "linear_eval": linear_eval.cli, "export_encoder": export_encoder.cli,
    "collect_frames": collect_frames.cli, "plot_results": plot_results.cli,
    "evaluate": evaluate.cli,
}

EVAL = ["--random-init", "--arch", "pixel", "--data", "{digits}", "--load-size", "32",
        "--crop-size", "28", "--num-workers", "0", "--device", "cpu"]
EXPORT = ["--checkpoint", "{moco_ckpt}", "--out", "{tmp}/enc.pt"]
COLLECT = ["--out", "{tmp}/frames", "--domains", "cartpole", "--frames-per-domain", "2",
           "--episode-frames", "2", "--image-size", "16"]

# (entry point, argv, text the error line must contain: the setting / flag / file)
CASES: list[tuple[str, list[str], str]] = [
    # ---- train_dmc: values as typed, each setting checked before any work
    ("train_dmc", RL + ["--lr", "inf"], "lr=inf"),
    ("train_dmc", RL + ["--lr", "nan"], "lr=nan"),
    ("train_dmc", RL + ["--lr", "-0.001"], "lr=-0.001"),
    ("train_dmc", RL + ["--lr", "fast"], "--lr"),
    ("train_dmc", RL + ["--alpha-lr", "0"], "alpha_lr=0"),
    ("train_dmc", RL + ["--init-temperature", "inf"], "init_temperature=inf"),
    ("train_dmc", RL + ["--seed", "-1"], "seed=-1"),
    ("train_dmc", RL + ["--seed", "99999999999"], "seed=99999999999"),
    ("train_dmc", RL + ["--video-size", "1"], "video_size=1"),
    ("train_dmc", RL + ["--video-size", "100000"], "video_size=100000"),
    ("train_dmc", RL + ["--image-size", "0"], "image_size=0"),
    ("train_dmc", RL + ["--crop-size", "48"], "crop_size=48"),
    ("train_dmc", RL + ["--batch-size", "0"], "batch_size=0"),
    ("train_dmc", RL + ["--batch-size", "64"], "batch_size=64"),
    ("train_dmc", RL + ["--discount", "1.5"], "discount=1.5"),
    ("train_dmc", RL + ["--steps", "0"], "steps=0"),
    ("train_dmc", RL + ["--steps"], "--steps"),
    ("train_dmc", RL + ["--eval-episodes", "0"], "eval_episodes=0"),
    ("train_dmc", RL + ["--eval-every", "0"], "eval_every=0"),
    ("train_dmc", RL + ["--checkpoint-every", "-5"], "checkpoint_every=-5"),
    ("train_dmc", RL + ["--threads", "0"], "threads=0"),
    ("train_dmc", RL + ["--actor-log-std-min", "3"], "actor_log_std_min=3"),
    ("train_dmc", RL + ["--queue-size", "64"], "queue_size=64"),
    ("train_dmc", RL + ["--episode-length", "100"], "episode_length=100"),
    ("train_dmc", [a for a in RL if a != "{tmp}/rl"][:-1] + ["--name", ".."], "name='..'"),
    ("train_dmc", [a for a in RL if a != "{tmp}/rl"][:-1] + ["--name", "a/b"], "name='a/b'"),
    ("train_dmc", RL + ["--task", "walker-walkk"], "unknown task 'walker-walkk'"),
    ("train_dmc", RL + ["--preset", "nope"], "preset='nope'"),
    ("train_dmc", RL + ["--similarity", "l2"], "--similarity"),
    ("train_dmc", RL + ["--camera-id", "9"], "camera_id=9"),
    ("train_dmc", RL + ["--camera-id", "-2"], "camera_id=-2"),
    ("train_dmc", RL + ["--device", "tpu"], "device='tpu'"),
    ("train_dmc", RL + ["--init-encoder", "{tmp}/missing.pt"], "init_encoder="),
    ("train_dmc", RL[:-1] + ["{file}"], "run_dir="),
    ("train_dmc", RL[:-1] + ["{file}/run"], "run_dir="),
    ("train_dmc", RL + ["--config", "{tmp}/missing.json"], "config="),
    ("train_dmc", RL + ["--config", "{dir}"], "config="),
    ("train_dmc", RL + ["--config", "{bad_json}"], "not valid JSON"),
    ("train_dmc", RL + ["--config", "{list_json}"], "JSON object"),
    ("train_dmc", RL + ["--config", "{unknown_json}"], "unknown config field(s): stepz"),
    ("train_dmc", RL + ["--config", "{typed_json}"], "steps='100'"),
    ("train_dmc", RL + ["--frobnicate"], "--frobnicate"),
    # ---- paths: names too long, symlink loops and links to nothing, virtual file systems
    ("train_dmc", RL[:-1] + ["{tmp}/" + "r" * 300], "is 300 bytes long"),
    ("train_dmc", RL[:-1] + ["{loop}/run"], "symlink loop"),
    ("train_dmc", RL[:-1] + ["{dangling}/run"], "which does not exist"),
    ("train_dmc", RL[:-1] + ["/proc/self/run"], "virtual 'proc' file system"),
    ("train_dmc", RL[:-1] + [""], "run_dir='' is empty"),
    ("train_dmc", RL[:-1] + ["{videos_file}"], "videos_file/videos exists but is not a folder"),
    ("pretrain_moco", MOCO[:-1] + ["/sys/kernel/run"], "virtual 'sysfs' file system"),
    ("pretrain_moco", MOCO[:-1] + ["{loop}"], "symlink loop"),
    ("collect_frames", COLLECT[:1] + ["/proc/self/frames"] + COLLECT[2:], "virtual 'proc'"),
    ("collect_frames", COLLECT[:1] + ["{tmp}/" + "f" * 300] + COLLECT[2:], "300 bytes long"),
    # ---- an output that is an input: destroyed before it is read
    ("export_encoder", EXPORT[:-1] + ["{moco_ckpt}"], "moco.pt is the input checkpoint="),
    ("export_encoder", EXPORT[:-1] + ["{moco_link}"], "moco_link.pt is the input checkpoint="),
    ("export_encoder", EXPORT[:-1] + ["{tmp}/exports/"], "ends with '/', so it names a folder"),
    ("linear_eval", ["--checkpoint", "{moco_ckpt}", "--json-out", "{moco_ckpt}"],
     "moco.pt is the input checkpoint="),
    # ---- an output that is some run's checkpoint (an older export may be replaced)
    ("export_encoder", EXPORT[:-1] + ["{rl_ckpt}"],
     "rl.pt is a curl_moco checkpoint of kind 'curl_sac': writing it would destroy it"),
    ("linear_eval", EVAL + ["--json-out", "{moco_ckpt}"],
     "moco.pt is a curl_moco checkpoint of kind 'moco'"),
    ("linear_eval", EVAL + ["--json-out", "{flipped_ckpt}"], "checkpoint of kind 'unreadable'"),
    # ---- pretrain_moco
    ("pretrain_moco", MOCO[2:], "data is required"),
    ("pretrain_moco", MOCO + ["--data", "{tmp}/nowhere"], "data="),
    ("pretrain_moco", MOCO + ["--data", "{file}"], "data="),
    ("pretrain_moco", MOCO + ["--lr", "inf"], "lr=inf"),
    ("pretrain_moco", MOCO + ["--lr", "0"], "lr=0"),
    ("pretrain_moco", MOCO + ["--knn-k", "0"], "knn_k=0"),
    ("pretrain_moco", MOCO + ["--knn-temperature", "0"], "knn_temperature=0"),
    ("pretrain_moco", MOCO + ["--knn-bank-size", "0"], "knn_bank_size=0"),
    ("pretrain_moco", MOCO + ["--warmup-epochs", "-1"], "warmup_epochs=-1"),
    ("pretrain_moco", MOCO + ["--warmup-epochs", "5"], "warmup_epochs=5"),
    ("pretrain_moco", MOCO + ["--seed", "-3"], "seed=-3"),
    ("pretrain_moco", MOCO + ["--load-size", "0"], "load_size=0"),
    ("pretrain_moco", MOCO + ["--crop-size", "300"], "crop_size=300"),
    ("pretrain_moco", MOCO + ["--crop-size", "4"], "crop_size=4"),
    ("pretrain_moco", MOCO + ["--dim", "0"], "dim=0"),
    ("pretrain_moco", MOCO + ["--queue-size", "12"], "queue_size=12"),
    ("pretrain_moco", MOCO + ["--val-fraction", "1.0"], "val_fraction=1 must be < 1"),
    ("pretrain_moco", MOCO + ["--momentum", "1.5"], "momentum=1.5"),
    ("pretrain_moco", MOCO + ["--temperature", "-1"], "temperature=-1"),
    ("pretrain_moco", MOCO + ["--batch-size", "0"], "batch_size=0"),
    ("pretrain_moco", MOCO + ["--batch-size", "512", "--queue-size", "0"], "batch_size=512"),
    ("pretrain_moco", MOCO + ["--name", "../up", "--run-dir", ""], "name='../up'"),
    ("pretrain_moco", MOCO + ["--run-dir", "{file}"], "run_dir="),
    ("pretrain_moco", MOCO + ["--arch", "vgg"], "--arch"),
    ("pretrain_moco", MOCO + ["--config", "{bad_json}"], "config="),
    ("pretrain_moco", MOCO + ["--data", "{single}"], "single class"),
    ("pretrain_moco", MOCO + ["--data", "{mode_f}"], "mode 'F'"),
    ("pretrain_moco", MOCO + ["--frame-stack", "3", "--crop-size", "28"], "frame_stack=3"),
    # ---- linear_eval
    ("linear_eval", ["--data", "{digits}"], "checkpoint is required"),
    ("linear_eval", ["--checkpoint", "{tmp}/missing.pt"], "checkpoint="),
    ("linear_eval", ["--checkpoint", "{dir}"], "checkpoint="),
    ("linear_eval", ["--checkpoint", "{file}", "--data", "{digits}"], "not a curl_moco checkpoint"),
    ("linear_eval", EVAL + ["--knn-k", "0"], "knn_k=0"),
    ("linear_eval", EVAL + ["--probe-lr", "inf"], "probe_lr=inf"),
    ("linear_eval", EVAL + ["--probe-epochs", "0"], "probe_epochs=0"),
    ("linear_eval", EVAL + ["--ridge-alphas"], "ridge_alphas"),
    ("linear_eval", EVAL + ["--ridge-alphas", "-1"], "ridge_alphas=-1"),
    ("linear_eval", EVAL + ["--target", "state"], "target='state'"),
    ("linear_eval", EVAL + ["--data", "{single}"], "single class"),
    ("linear_eval", EVAL + ["--json-out", "{dir}"], "json_out="),
    ("linear_eval", EVAL + ["--data", "{tmp}/nowhere"], "data="),
    ("linear_eval", EVAL + ["--crop-size", "100"], "crop_size=100"),
    ("linear_eval", EVAL + ["--seed", "-1"], "seed=-1"),
    # ---- export_encoder
    ("export_encoder", ["--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/e.pt"],
     "checkpoint="),
    ("export_encoder", ["--checkpoint", "{moco_ckpt}"], "--out"),
    ("export_encoder", ["--checkpoint", "{rl_ckpt}", "--out", "{tmp}/e.pt"],
     "expected a 'moco' checkpoint"),
    ("export_encoder", ["--checkpoint", "{flipped_ckpt}", "--out", "{tmp}/e.pt"], "corrupt"),
    ("export_encoder", EXPORT[:-1] + ["{dir}"], "out="),
    ("export_encoder", EXPORT + ["--format", "onnx"], "--format"),
    ("export_encoder", EXPORT + ["--format", "torchvision"], "format='torchvision'"),
    # ---- collect_frames
    ("collect_frames", COLLECT[:1] + ["{nonempty}"] + COLLECT[2:], "is not empty"),
    ("collect_frames", COLLECT[:1] + ["{nonempty}"] + COLLECT[2:] + ["--overwrite"],
     "not a frame data set"),
    ("collect_frames", COLLECT[:1] + ["{file}"] + COLLECT[2:], "out="),
    ("collect_frames", COLLECT + ["--domains", "nosuch"], "unknown domain='nosuch'"),
    ("collect_frames", COLLECT + ["--domains", "cartpole,cartpole-balance"], "twice"),
    ("collect_frames", COLLECT + ["--frames-per-domain", "0"], "frames_per_domain=0"),
    ("collect_frames", COLLECT + ["--image-size", "0"], "image_size=0"),
    ("collect_frames", COLLECT + ["--policy", "no_such_module:act"], "policy="),
    ("collect_frames", COLLECT + ["--policy", "randm"], "policy='randm'"),
    ("collect_frames", COLLECT + ["--seed", "-1"], "seed=-1"),
    # ---- plot_results
    ("plot_results", ["--results", "{tmp}/nowhere"], "results="),
    ("plot_results", ["--results", "{results}", "--out", "{file}"], "out="),
    ("plot_results", ["--results", "{results}", "--out", "{tmp}/plots"], "eval.csv"),
    # ---- evaluate (camera, video size, task, output folder of a real run: tests/test_evaluate.py)
    ("evaluate", [], "run is required"),
    ("evaluate", ["--run", "{tmp}/nowhere"], "run="),
    ("evaluate", ["--run", "{dir}"], "holds no checkpoint.pt"),
    ("evaluate", ["--run", "{moco_ckpt}"], "is a MoCo pretraining checkpoint"),
    ("evaluate", ["--run", "{flipped_ckpt}"], "corrupt"),
    ("evaluate", ["--run", "{rl_ckpt}"], "lacks the trainer's or agent's state"),
    ("evaluate", ["--run", "{dir}", "--episodes", "0"], "episodes=0"),
    ("evaluate", ["--run", "{dir}", "--video", "movie"], "--video"),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """Files and folders the bad inputs refer to."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("bad_inputs")
    digits = write_digits_folder(root / "digits", size=32, per_class=4)
    single = root / "single"
    shutil.copytree(digits / "0", single / "0")
    mode_f = root / "mode_f" / "a"
    mode_f.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((32, 32), 0.5, dtype=np.float32), "F").save(mode_f / f"{i}.tif")
    (root / "mode_f" / "b").mkdir()
    shutil.copy(digits / "1" / "00000.png", root / "mode_f" / "b" / "0.png")
    (root / "file.txt").write_text("not a folder\n")
    (root / "adir").mkdir()
    (root / "bad.json").write_text('{"steps": 100,, }')
    (root / "list.json").write_text("[1, 2]")
    (root / "unknown.json").write_text('{"stepz": 100}')
    (root / "typed.json").write_text('{"steps": "100"}')
    nonempty = root / "nonempty"
    nonempty.mkdir()
    (nonempty / "notes.txt").write_text("precious\n")
    save_checkpoint(root / "rl.pt", {"x": 1}, kind="curl_sac", config={})
    moco = save_checkpoint(root / "moco.pt", {"model": {}}, kind="moco",
                           config={"arch": "pixel", "frame_stack": 1, "crop_size": 28,
                                   "feature_dim": 16, "pixel_layers": 2, "pixel_filters": 8})
    flipped = bytearray(moco.read_bytes())
    flipped[60] ^= 0x01  # inside the header
    (root / "flipped.pt").write_bytes(bytes(flipped))
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "moved_away")
    (root / "moco_link.pt").symlink_to(moco)
    (root / "videos_file" / "videos").parent.mkdir()
    (root / "videos_file" / "videos").write_text("not a folder\n")
    run = root / "results" / "dmc" / "cartpole-swingup" / "seed_1"
    run.mkdir(parents=True)
    (run / "eval.csv").write_text("step,episode_reward\n1000,abc\n")
    return {"tmp": str(root), "digits": str(digits), "single": str(single),
            "mode_f": str(root / "mode_f"), "file": str(root / "file.txt"),
            "dir": str(root / "adir"), "bad_json": str(root / "bad.json"),
            "list_json": str(root / "list.json"), "unknown_json": str(root / "unknown.json"),
            "typed_json": str(root / "typed.json"), "nonempty": str(nonempty),
            "rl_ckpt": str(root / "rl.pt"), "moco_ckpt": str(moco),
            "flipped_ckpt": str(root / "flipped.pt"), "results": str(root / "results"),
            "loop": str(root / "loop"), "dangling": str(root / "dangling"),
            "moco_link": str(root / "moco_link.pt"), "videos_file": str(root / "videos_file")}


def _fill(argv: list[str], paths: dict[str, str]) -> list[str]:
    return [arg.format(**paths) for arg in argv]


def test_enough_cases_across_every_entry_point() -> None:
    assert len(CASES) >= 60
    assert {entry for entry, _, _ in CASES} == set(ENTRY_POINTS)


@pytest.mark.parametrize(("entry", "argv", "expected"), CASES,
                         ids=[f"{e}:{' '.join(a[-2:])}" for e, a, _ in CASES])
def test_bad_input_gives_one_error_line_and_exit_2(entry, argv, expected, paths, capsys,
                                                   one_thread) -> None:
    before = sorted(os.listdir(paths["tmp"]))
    code = ENTRY_POINTS[entry](_fill(argv, paths))
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-2000:]
    assert expected in errors[0], errors[0]
    assert sorted(os.listdir(paths["tmp"])) == before  # nothing written before the check


def test_help_and_good_flags_still_work(capsys) -> None:
    assert train_dmc.main(["--help"]) == 0
    assert "--video-size" in capsys.readouterr().out
    assert pretrain_moco.cli(["--help"]) == 0
    assert "--knn-k" in capsys.readouterr().out


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("module", "argv", "expected"), [
    ("experiments.train_dmc", ["--lr", "inf"], "error: lr=inf must be a finite number"),
    ("experiments.train_dmc", ["--config", "missing.json"], "error: config='missing.json'"),
    ("experiments.collect_frames", ["--out", "{tmp}/x", "--domains", "nosuch"],
     "error: unknown domain='nosuch'"),
    ("experiments.export_encoder", ["--checkpoint", "{tmp}/none.pt", "--out", "{tmp}/e.pt"],
     "error: checkpoint="),
])
def test_bad_input_in_a_real_process(module, argv, expected, tmp_path) -> None:
    proc = _run(["-m", module, *[a.format(tmp=tmp_path) for a in argv], "--run-dir",
                 str(tmp_path / "run")] if module.endswith("train_dmc") else
                ["-m", module, *[a.format(tmp=tmp_path) for a in argv]])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(expected), proc.stderr[-2000:]


def test_bad_mujoco_gl_is_one_line(tmp_path) -> None:
    proc = _run(["-m", "experiments.train_dmc", "--preset", "smoke", "--device", "cpu",
                 "--run-dir", str(tmp_path / "run")], MUJOCO_GL="nonsense")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "error: MUJOCO_GL='nonsense' is not a supported rendering backend" in proc.stderr


@pytest.mark.slow
def test_bad_input_under_torchrun(tmp_path) -> None:
    """Every rank reports the setting (rank 0 as ``error:``) and exits 2; the only traceback is
    torchrun's own failure report, none from this project's code."""
    data = write_digits_folder(tmp_path / "digits", size=32, per_class=4)
    argv = _fill(MOCO, {"digits": str(data), "tmp": str(tmp_path)}) + ["--knn-k", "0"]
    proc = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "experiments.pretrain_moco", *argv])
    assert proc.returncode != 0
    assert "error: knn_k=0 must be > 0" in proc.stderr
    assert "error (rank 1): knn_k=0" in proc.stderr
    assert "exitcode  : 2" in proc.stderr
    for package in ("curl_moco", "envs", "experiments"):  # (torchrun's own report may pass
        # through .venv/, which lives in the repository)
        assert f'File "{REPO / package}' not in proc.stderr  # none through this project's code


def test_config_file_round_trip_still_works(tmp_path) -> None:
    from curl_moco.io.config import parse_config, save_config
    from curl_moco.rl.config import CurlSacConfig

    cfg = parse_config(CurlSacConfig, ["--steps", "123", "--lr", "0.002"])
    save_config(cfg, tmp_path / "config.json")
    again = parse_config(CurlSacConfig, ["--config", str(tmp_path / "config.json")])
    assert again == cfg
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 123
    # A saved config is complete: the entry point's default preset does not override it (the
    # resume command printed after Ctrl-C is --config RUN/config.json); an explicit one does.
    from curl_moco.experiments.configs.moco import MOCO_PRESETS
    from curl_moco.pretrain.config import MocoConfig

    moco = MocoConfig(data="d", batch_size=16, queue_size=32)
    save_config(moco, tmp_path / "moco.json")
    argv = ["--config", str(tmp_path / "moco.json")]
    assert parse_config(MocoConfig, argv, MOCO_PRESETS, default_preset="mocov2") == moco
    v3 = parse_config(MocoConfig, argv + ["--preset", "mocov3"], MOCO_PRESETS)
    assert v3.batch_size == 4096 and v3.data == "d"


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_entry_point_prints_its_help(name, capsys) -> None:
    """--help lists the knobs and exits 0 (argparse formats help texts: a stray % once broke
    linear_eval's)."""
    try:
        status = ENTRY_POINTS[name](["--help"])
    except SystemExit as exit_info:
        status = exit_info.code
    assert status in (0, None)
    out = capsys.readouterr().out
    assert "usage:" in out and "--" in out
