"""scripts/gpu_check.sh on a machine without CUDA: it says so and exits 0; its usage errors; the
stage commands the entry points accept; time budgets, failing stages and the figures read from
the runs' logs (stages replaced by small commands: no GPU, no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curl_moco.experiments.bench import gpu_check
from curl_moco.experiments.configs.curl_dmc import CURL_PRESETS
from curl_moco.experiments.configs.moco import MOCO_PRESETS
from curl_moco.io.config import parse_config
from curl_moco.pretrain.config import MocoConfig
from curl_moco.pretrain.config import validate as validate_moco
from curl_moco.rl.config import CurlSacConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The script with no GPU visible (also on a GPU machine) and no $OUT."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path),
           "CUDA_VISIBLE_DEVICES": "", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_without_cuda_it_says_so_exits_0_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_script("--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device visible" in done.stdout
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "error: unrecognized arguments: --bogus (see --help)"),
    (["--official-curl", "{tmp}/no_clone"], "error: --official-curl {tmp}/no_clone: no "
                                            "curl_sac.py and utils.py there (clone "
                                            "github.com/MishaLaskin/curl into that folder)"),
])
def test_the_script_reports_a_bad_flag_or_folder_in_one_line_with_exit_2(
        tmp_path: Path, args: list[str], message: str) -> None:
    done = run_script(*[a.format(tmp=tmp_path) for a in args], "--out", str(tmp_path / "out"),
                      tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [message.format(tmp=tmp_path)]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, names", [
    (["--device", "cpu"], "--device=cpu"),
    (["--stages", "frames", "nope"], "--stages: invalid choice: 'nope'"),
    (["--moco-images", "5"], "--moco-images=5"),
    (["--budget-s", "0"], "--budget-s=0.0"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              args: list[str], names: str) -> None:
    from curl_moco.io.errors import run_entry_point

    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path) for a in args] + ["--out", str(out)]
    assert run_entry_point(gpu_check.main, argv, prog="gpu_check") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert names.format(tmp=tmp_path) in lines[0]
    assert not out.exists()


def test_stage_commands_are_accepted_by_the_entry_points(tmp_path: Path) -> None:
    from digits import write_digits_folder

    s = gpu_check.parse_args(["--out", str(tmp_path / "out")])
    work, logs = tmp_path / "work", tmp_path / "logs"

    def args_of(name: str) -> list[str]:  # after "python -m module", on the CPU
        return [a.replace("cuda", "cpu") for a in gpu_check.stage_command(name, s, work, logs)[3:]]

    rl = parse_config(CurlSacConfig, args_of("cartpole"), CURL_PRESETS)
    assert (rl.task, rl.steps, rl.compile_mode, rl.batch_size) == (
        "cartpole-swingup", 20_000, "default", 128)
    write_digits_folder(work / "frames", size=16, per_class=30)
    moco = parse_config(MocoConfig, args_of("moco_vit_s"), MOCO_PRESETS)
    validate_moco(moco, world_size=1)
    assert (moco.arch, moco.epochs, moco.batch_size, moco.crop_size, moco.optimizer) == (
        "vit_small", 1, 256, 224, "adamw")

    update = gpu_check.stage_command("bench_update", s, work, logs)
    assert update[update.index("--batch-sizes") + 1:][:2] == ["128", "512"]
    assert update[update.index("--device") + 1] == "cuda"
    assert "--official-curl" not in update  # none given: the in-project baseline
    compiled = gpu_check.stage_command("bench_update_compile", s, work, logs)
    assert "ours-default+compile" in compiled
    assert gpu_check.stage_command("tests", s, work, logs)[2:6] == ["pytest", "-q", "-m", "cuda"]


def test_run_stage_records_success_failure_and_timeout(tmp_path: Path) -> None:
    py = sys.executable
    ok = gpu_check.run_stage([py, "-c", "print('fine')"], 30, tmp_path / "ok.log", tmp_path)
    assert ok["status"] == "ok" and ok["exit_code"] == 0 and "log_tail" not in ok
    bad = gpu_check.run_stage([py, "-c", "import sys; print('broken'); sys.exit(3)"], 30,
                              tmp_path / "bad.log", tmp_path)
    assert bad["status"] == "failed" and bad["exit_code"] == 3 and "broken" in bad["log_tail"]
    slow = gpu_check.run_stage(
        [py, "-c", "import time; print('started', flush=True); time.sleep(60)"], 1.0,
        tmp_path / "slow.log", tmp_path)
    assert slow["status"] == "timeout" and slow["seconds"] < 1.0 + gpu_check.GRACE_S
    assert "started" in slow["log_tail"]


def test_figures_read_from_the_logs(tmp_path: Path) -> None:
    run = tmp_path / "cartpole"
    run.mkdir()
    # 3 seeding episodes of 1000 env steps in 2 s, then one of 20 s (compilation) and 2 of 4 s
    rows = ["step,episode,updates,episode_s"] + [
        f"{1000 * (i + 1)},{i + 1},{u},{t}"
        for i, (u, t) in enumerate([(0, 2), (0, 2), (0, 2), (125, 20), (250, 4), (375, 4)])]
    (run / "train.csv").write_text("\n".join(rows) + "\n")
    (run / "eval.csv").write_text("step,episode_reward,episode_reward_std,episodes\n"
                                  "6000,212.5,3.0,2\n")
    fig = gpu_check.cartpole_figures(run)
    assert fig["env_steps"] == 6000 and fig["updates"] == 375
    assert fig["env_steps_per_s"] == pytest.approx(6000 / 34, abs=0.01)
    assert fig["env_steps_per_s_seeding"] == 500.0
    assert fig["env_steps_per_s_training"] == 250.0  # without the compiling episode
    assert fig["updates_per_s_training"] == 31.25
    assert fig["first_training_episode_s"] == 20.0
    assert fig["last_eval"] == {"step": 6000.0, "episode_reward": 212.5,
                                "episode_reward_std": 3.0, "episodes": 2.0}

    moco = tmp_path / "moco"
    moco.mkdir()
    (moco / "train.csv").write_text("step,epoch,loss,images_per_s\n2,0.1,5.0,100\n4,0.2,4.9,400\n"
                                    "6,0.3,4.8,600\n8,0.4,4.7,500\n")
    fig = gpu_check.moco_figures(moco)
    assert fig["images_per_s"] == 500.0 and fig["images_per_s_first_window"] == 100.0
    assert fig["steps"] == 8 and fig["windows"] == 4 and fig["last_loss"] == 4.7

    log = tmp_path / "tests.log"
    log.write_text("....ss\n12 passed, 3 skipped, 479 deselected in 21.30s\n")
    assert gpu_check.tests_figures(log) == {
        "pytest": {"passed": 12, "skipped": 3, "deselected": 479}}


def test_a_failing_stage_is_recorded_and_the_next_one_runs(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """run_all with the stages replaced by small commands: one fails, the others still run and
    the JSON holds every stage's status and the cartpole figures of the run it left behind."""
    py = sys.executable
    csv_text = "step,episode,updates,episode_s\\n1000,1,0,4\\n2000,2,125,5\\n3000,3,250,2\\n"

    def fake_command(name: str, s, work: Path, logs: Path) -> list[str]:
        if name == "bench_update":
            return [py, "-c", "raise SystemExit('no official code here')"]
        if name == "cartpole":
            run = work / "cartpole"
            return [py, "-c", f"import pathlib; p = pathlib.Path({str(run)!r}); "
                              f"p.mkdir(parents=True); (p / 'train.csv').write_text('{csv_text}')"]
        return [py, "-c", "print('4 passed in 1.0s')"]

    monkeypatch.setattr(gpu_check, "stage_command", fake_command)
    monkeypatch.setattr(gpu_check, "machine", lambda device: {
        "gpu": "stub", "gpu_memory_gib": 0, "driver": None, "cuda": None, "torch": "x",
        "cpu": "y", "cpu_cores": 1})
    s = gpu_check.parse_args(["--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "w"),
                              "--stages", "tests", "bench_update", "cartpole"])
    assert gpu_check.run_all(s, ROOT) == 1
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    stages = data["stages"]
    assert list(stages) == ["tests", "bench_update", "cartpole"]
    assert stages["tests"]["status"] == "ok" and stages["tests"]["pytest"] == {"passed": 4}
    assert stages["bench_update"]["status"] == "failed"
    assert "no official code here" in stages["bench_update"]["log_tail"]
    assert stages["cartpole"]["status"] == "ok"
    assert stages["cartpole"]["env_steps_per_s_training"] == 500.0
    assert data["machine"]["gpu"] == "stub" and data["benchmark"] == "gpu_check"
    assert (tmp_path / "out" / "gpu_check_logs" / "bench_update.log").is_file()

    s.budget_s, s.out = 1.0, tmp_path / "out2"  # no time left: no stage starts
    assert gpu_check.run_all(s, ROOT) == 1
    late = json.loads((tmp_path / "out2" / "gpu_check.json").read_text())["stages"]
    assert {v["status"] for v in late.values()} == {"out_of_time"}
