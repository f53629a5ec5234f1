"""The project on one CUDA machine in under 8 minutes: one JSON of what ran and how fast.

Stages, in order, each a child process with its own time budget (seconds, ``STAGES``); a stage
that fails or runs out of time is recorded (status, exit code, the end of its log) and the next
one starts. The budgets add up to less than ``--budget-s`` (465 s by default), which also caps
every stage's timeout, so the whole stays under 8 minutes:

1. ``tests``: the test suite's CUDA-capable tests on the GPU (``pytest -m cuda tests``: the
   tests taking the ``device`` fixture of ``tests/conftest.py``, on the ``cuda`` parameter).
2. ``bench_update``: :mod:`~experiments.bench.bench_update` at batch 128 and 512: the official
   CURL code (``--official-curl DIR`` or ``$CURL_OFFICIAL_DIR``), the in-project baseline and
   our eager rows; ``bench_update_compile``: the baseline and ``ours-default+compile`` (a
   process of its own: compilation is what may overrun).
3. ``cartpole``: 20k environment steps of ``--preset cartpole-swingup`` (the paper's recipe,
   ``torch.compile`` of the conv stacks) with ``--device cuda``; environment steps per second
   read from the run's ``train.csv`` (training episodes only, evaluations excluded).
4. ``frames`` then ``moco_vit_s``: real images (dm_control frames of the six CURL domains rendered
   by :mod:`~experiments.collect_frames`; scikit-learn's handwritten digits if rendering fails),
   then one epoch of ``--preset mocov3_vit`` (ViT-S/16, 224 px) on them; images per second read
   from the run's ``train.csv``.

Output: ``<out>/gpu_check.json`` (the machine: GPU, driver, torch/CUDA/cuDNN versions, CPU; every
stage's status and figures; rewritten after each stage) and ``<out>/gpu_check_logs/`` (each
stage's log and the benchmarks' own JSON). ``<out>`` is ``--out``, else ``$OUT``, else
``experiments/bench/results/gpu_check``. Runs and images go to a temporary folder, deleted at
the end (``--keep-work`` keeps it).

Without a CUDA device it says so and exits 0 (nothing written). A bad flag or official-code
folder prints one ``error: ...`` line and exits 2 before any work.

    scripts/gpu_check.sh [--official-curl ~/src/curl] [--out DIR]
    python -m experiments.bench.gpu_check --dry-run          # the stage commands, no GPU needed
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curl_moco.io.errors import ArgumentParser, UsageError
from curl_moco.io.logger import read_csv

#: Seconds per stage (a ceiling: most finish well before it). Sum 450 s, plus about 10 s for
#: this process's own start and device query: under the 465 s default of ``--budget-s``.
STAGES: dict[str, int] = {
    "tests": 60,
    "bench_update": 75,
    "bench_update_compile": 90,
    "cartpole": 110,
    "frames": 45,
    "moco_vit_s": 70,
}
TOTAL_BUDGET_S = 465
#: After a stage's budget: SIGTERM (trainers then write a checkpoint and their logs), then
#: SIGKILL after this many seconds.
GRACE_S = 10
#: A stage is not started with less time left than this.
MIN_STAGE_S = 15
EAGER_ROWS = ("official", "baseline", "ours-default", "ours-fp32", "ours-plain")
COMPILE_ROWS = ("baseline", "ours-default+compile")
CARTPOLE_STEPS = 20_000
DOMAINS = ("cartpole", "walker", "cheetah", "finger", "reacher", "ball_in_cup")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_check"
PYTHON_MODULE = "curl_moco.experiments"


@dataclass
class Settings:
    out: Path
    official_curl: Path | None
    device: str
    budget_s: float
    stages: tuple[str, ...]
    moco_batch_size: int
    moco_images: int
    work_dir: Path | None
    keep_work: bool
    dry_run: bool
    argv: tuple[str, ...]


def parse_args(argv: Sequence[str] | None) -> Settings:
    """Parse and check every flag (raises :class:`UsageError`)."""
    parser = ArgumentParser(prog="scripts/gpu_check.sh",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None,
                        help="folder of gpu_check.json and the stage logs (default: $OUT, else "
                             "experiments/bench/results/gpu_check)")
    parser.add_argument("--official-curl", default=None,
                        help="clone of github.com/MishaLaskin/curl for bench_update's official "
                             "row (default: $CURL_OFFICIAL_DIR; without it the in-project "
                             "baseline only)")
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N")
    parser.add_argument("--budget-s", type=float, default=TOTAL_BUDGET_S,
                        help="seconds for everything; caps each stage's timeout")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES),
                        help="stages to run, in the fixed order")
    parser.add_argument("--moco-batch-size", type=int, default=256,
                        help="MoCo v3 ViT-S batch on one GPU (the preset's 4096 needs 32 GPUs)")
    parser.add_argument("--moco-images", type=int, default=4096,
                        help="images rendered for the MoCo epoch (split over six domains)")
    parser.add_argument("--work-dir", default=None,
                        help="folder for runs and images (default: a temporary folder)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the stage commands and budgets, run nothing")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)

    if not re.fullmatch(r"cuda(:\d+)?", args.device):
        raise UsageError(f"--device={args.device}: use cuda or cuda:N (this is a GPU check)")
    if not args.budget_s > 0:
        raise UsageError(f"--budget-s={args.budget_s} must be > 0")
    for flag, value, low in (("--moco-batch-size", args.moco_batch_size, 2),
                             ("--moco-images", args.moco_images, 60)):
        if value < low:
            raise UsageError(f"{flag}={value} must be at least {low}")
    official = _official_folder(args.official_curl)
    out = Path(args.out or os.environ.get("OUT") or DEFAULT_OUT).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out={out}: is a file, not a folder")
    stages = tuple(s for s in STAGES if s in args.stages)
    return Settings(out=out, official_curl=official, device=args.device,
                    budget_s=float(args.budget_s), stages=stages,
                    moco_batch_size=args.moco_batch_size, moco_images=args.moco_images,
                    work_dir=Path(args.work_dir).expanduser() if args.work_dir else None,
                    keep_work=args.keep_work, dry_run=args.dry_run, argv=tuple(argv))


def _official_folder(path: str | None) -> Path | None:
    """The official CURL folder (flag or ``$CURL_OFFICIAL_DIR``), checked to import as the
    benchmark will import it; None when neither is given."""
    from curl_moco.experiments.bench.official_curl import import_official, locate

    folder = locate(path)  # UsageError: no curl_sac.py / utils.py there
    if folder is not None:
        try:
            import_official(folder)  # UsageError: scikit-image missing
        except UsageError:
            raise
        except Exception as error:  # noqa: BLE001 - any import failure is about that folder
            raise UsageError(f"--official-curl {folder}: its code does not import here "
                             f"({type(error).__name__}: {error})") from error
    return folder


# ------------------------------------------------------------------ the stages' commands
def stage_command(name: str, s: Settings, work: Path, logs: Path) -> list[str]:
    """The child process of stage ``name`` (run from the repository root)."""
    py = [sys.executable, "-m"]
    if name == "tests":
        return [*py, "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    if name in ("bench_update", "bench_update_compile"):
        rows = EAGER_ROWS if name == "bench_update" else COMPILE_ROWS
        cmd = [*py, f"{PYTHON_MODULE}.bench.bench_update", "--device", s.device,
               "--batch-sizes", "128", "512", "--repeats", "20", "--warmup", "3",
               "--rows", *rows, "--out-dir", str(logs / name)]
        if s.official_curl is not None and "official" in rows:
            cmd += ["--official-curl", str(s.official_curl)]
        return cmd
    if name == "cartpole":
        return [*py, f"{PYTHON_MODULE}.train_dmc", "--preset", "cartpole-swingup",
                "--steps", str(CARTPOLE_STEPS), "--device", s.device, "--seed", "1",
                "--eval-every", str(CARTPOLE_STEPS), "--eval-episodes", "2",
                "--checkpoint-every", str(CARTPOLE_STEPS), "--no-progress",
                "--run-dir", str(work / "cartpole")]
    if name == "frames":
        per_domain = -(-s.moco_images // len(DOMAINS))
        return [*py, f"{PYTHON_MODULE}.collect_frames", "--out", str(work / "frames"),
                "--domains", ",".join(DOMAINS), "--frames-per-domain", str(per_domain),
                "--episode-frames", "100", "--image-size", "224",
                "--workers", str(len(DOMAINS)), "--overwrite"]
    if name == "moco_vit_s":
        workers = max(1, min(8, (os.cpu_count() or 2) - 1))
        return [*py, f"{PYTHON_MODULE}.pretrain_moco", "--preset", "mocov3_vit",
                "--data", str(work / "frames"), "--epochs", "1", "--warmup-epochs", "0",
                "--batch-size", str(s.moco_batch_size), "--load-size", "224",
                "--crop-size", "224", "--num-workers", str(workers), "--device", s.device,
                "--log-every-steps", "2", "--knn-every-epochs", "0", "--no-progress",
                "--run-dir", str(work / "moco_vit_s")]
    raise KeyError(name)


# ------------------------------------------------------------------ running a stage
def run_stage(command: Sequence[str], budget_s: float, log_path: Path, cwd: Path,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` (its own process group) with output to ``log_path``; past ``budget_s``
    seconds send SIGTERM, and SIGKILL ``GRACE_S`` later. Returns status (ok | failed |
    timeout), exit code, seconds and, unless ok, the last lines of the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                env=env, start_new_session=True)
        status = "ok"
        try:
            code = proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            status = "timeout"
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                code = proc.wait()
    if status == "ok" and code != 0:
        status = "failed"
    record: dict[str, Any] = {"status": status, "exit_code": code,
                              "seconds": round(time.monotonic() - started, 1),
                              "budget_s": round(budget_s, 1), "command": " ".join(command),
                              "log": log_path.name}
    if status != "ok":
        lines = log_path.read_text(errors="replace").splitlines()
        record["log_tail"] = lines[-15:]
    return record


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the stage's own process group (start_new_session)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------ reading the figures
def _read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a run's metrics CSV; none when the stage did not get to write it."""
    return read_csv(path) if path.is_file() else []


def _step(row: dict[str, str], column: str) -> str | None:
    """The row's step counter: ``column`` (``env_steps`` / ``optimizer_steps``), or ``step`` in
    runs logged before the columns named their units."""
    return row.get(column) or row.get("step") or None


def cartpole_figures(run_dir: Path) -> dict[str, Any]:
    """Environment steps per second from a run's ``train.csv`` (one row per training episode:
    ``env_steps`` at its end, ``episode_s``, ``updates``; evaluations are not in ``episode_s``):
    overall, while seeding (no updates yet), and while training after the first updating
    episode (which includes ``torch.compile``'s compilation)."""
    rows = _read_csv(run_dir / "train.csv")
    if not rows:
        return {}
    steps, seconds, updates, start = [], [], [], 0
    for row in rows:
        end = int(float(_step(row, "env_steps") or 0))
        steps.append(end - start)
        seconds.append(float(row["episode_s"]))
        updates.append(int(float(row["updates"])))
        start = end

    def rate(idx: list[int]) -> float | None:
        time_s = sum(seconds[i] for i in idx)
        return round(sum(steps[i] for i in idx) / time_s, 2) if idx and time_s > 0 else None

    seeding = [i for i, u in enumerate(updates) if u == 0]
    training = [i for i, u in enumerate(updates) if u > 0]
    figures: dict[str, Any] = {
        "env_steps": start, "episodes": len(rows), "updates": updates[-1],
        "training_episode_s": round(sum(seconds), 2),
        "env_steps_per_s": rate(list(range(len(rows)))),
        "env_steps_per_s_seeding": rate(seeding),
        "env_steps_per_s_training": rate(training[1:]),
        "first_training_episode_s": round(seconds[training[0]], 2) if training else None,
    }
    if len(training) > 1:
        update_time = sum(seconds[i] for i in training[1:])
        new_updates = updates[training[-1]] - updates[training[0]]
        figures["updates_per_s_training"] = round(new_updates / update_time, 2)
    evals = _read_csv(run_dir / "eval.csv")
    if evals:
        last = evals[-1]
        last = {**last, "step": _step(last, "env_steps")}
        figures["last_eval"] = {k: float(last[k]) for k in ("step", "episode_reward",
                                                            "episode_reward_std", "episodes")
                                if last.get(k)}
    return figures


def moco_figures(run_dir: Path) -> dict[str, Any]:
    """Images per second from a MoCo run's ``train.csv`` (``images_per_s`` of each logging
    window of ``log_every_steps`` steps): all windows together, and without the first (CUDA
    and cuDNN warm-up)."""
    rows = _read_csv(run_dir / "train.csv")
    rates = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    if not rates:
        return {}
    figures: dict[str, Any] = {
        "steps": (int(float(_step(rows[-1], "optimizer_steps")))
                  if _step(rows[-1], "optimizer_steps") else None),
        "windows": len(rates), "images_per_s_first_window": round(rates[0], 1),
        "images_per_s": round(rates[0] if len(rates) == 1 else statistics.median(rates[1:]), 1),
        "last_loss": float(rows[-1]["loss"]) if rows[-1].get("loss") else None,
    }
    epochs = _read_csv(run_dir / "epoch.csv")
    if epochs:
        figures["epoch_loss"] = float(epochs[-1]["loss"])
    return figures


def bench_update_figures(path: Path) -> dict[str, Any]:
    """Per batch size: milliseconds per update (median, min) and speed-up against the baseline
    of each row, and baseline / official when the official row ran."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    out: dict[str, Any] = {}
    for record in data.get("results", []):
        rows = {}
        for row, t in record["rows"].items():
            if "median_s" in t:
                rows[row] = {"ms_per_update": round(t["seconds_per_update"] * 1e3, 2),
                             "min_ms_per_update": round(t["min_s"] / 2 * 1e3, 2),
                             "speedup_vs_baseline": round(t.get("speedup_vs_baseline", 0), 3)}
            else:
                rows[row] = {"error": t.get("error", "")}
        entry: dict[str, Any] = {"rows": rows}
        if "baseline_over_official" in record:
            entry["baseline_over_official"] = round(record["baseline_over_official"], 3)
        out[f"batch_{record['batch_size']}"] = entry
    if data.get("skipped"):
        out["skipped"] = data["skipped"]
    return out


def tests_figures(log_path: Path) -> dict[str, Any]:
    """pytest's summary counts (``3 passed, 1 skipped in 2.1s``) from the stage log."""
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    counts = {word: int(n) for n, word in re.findall(
        r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", text)}
    return {"pytest": counts} if counts else {}


# ------------------------------------------------------------------ machine
def machine(device: str) -> dict[str, Any]:
    """GPU name, memory, driver, compute capability; torch, CUDA and cuDNN versions; CPU."""
    import torch

    from curl_moco.experiments.bench.common import machine_info

    dev = torch.device(device)
    props = torch.cuda.get_device_properties(dev)
    info = machine_info(dev)
    info.update({
        "gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_count": torch.cuda.device_count(), "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "driver": _nvidia_smi("driver_version"),
        "bf16": torch.cuda.is_bf16_supported(),
    })
    return info


def _nvidia_smi(field: str) -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


# ------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    if s.dry_run:
        work, logs = s.work_dir or Path("<work>"), s.out / "gpu_check_logs"
        for name in s.stages:
            print(f"[{STAGES[name]:>3d} s] {name}: {' '.join(stage_command(name, s, work, logs))}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch (torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}): nothing to check on this "
              "machine; run scripts/gpu_check.sh on a machine with an NVIDIA GPU")
        return 0
    index = int(s.device.split(":")[1]) if ":" in s.device else 0
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device={s.device}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s), numbered from 0")
    return run_all(s, repo)


def run_all(s: Settings, repo: Path) -> int:
    started = time.monotonic()
    logs = s.out / "gpu_check_logs"
    logs.mkdir(parents=True, exist_ok=True)
    work = s.work_dir or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
    info = machine(s.device)
    print(f"gpu_check: {info['gpu']} ({info['gpu_memory_gib']} GiB, driver {info['driver']}, "
          f"CUDA {info['cuda']}, torch {info['torch']}), CPU {info['cpu']} x "
          f"{info['cpu_cores']}; budget {s.budget_s:.0f} s", flush=True)
    results: dict[str, Any] = {
        "machine": info, "command": "scripts/gpu_check.sh " + " ".join(s.argv),
        "budget_s": s.budget_s, "stage_budgets_s": {n: STAGES[n] for n in s.stages},
        "official_curl": str(s.official_curl) if s.official_curl else None, "stages": {}}
    failed = 0
    try:
        for name in s.stages:
            left = s.budget_s - (time.monotonic() - started) - GRACE_S
            if left < MIN_STAGE_S:
                record: dict[str, Any] = {"status": "out_of_time",
                                          "why": f"{left:.0f} s left of --budget-s"}
            elif name == "tests" and not (repo / "tests").is_dir():
                record = {"status": "skipped", "why": f"no tests folder in {repo}"}
            elif name == "moco_vit_s" and not _frames_ready(work / "frames"):
                _write_digits(work / "frames")
                left = s.budget_s - (time.monotonic() - started) - GRACE_S
                record = {"data": "scikit-learn digits, 224 px (dm_control frames not rendered)"}
                record.update(_run(name, s, work, logs, repo, env, min(STAGES[name], left)))
            else:
                record = _run(name, s, work, logs, repo, env, min(STAGES[name], left))
            failed += record["status"] in ("failed", "timeout", "out_of_time")
            results["stages"][name] = record
            results["total_s"] = round(time.monotonic() - started, 1)
            _save(results, s.out)
            print(f"gpu_check: {name}: {record['status']} "
                  f"({record.get('seconds', 0):.0f} s) {_headline(name, record)}", flush=True)
    finally:
        if not s.keep_work and s.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = round(time.monotonic() - started, 1)
    path = _save(results, s.out)
    print(f"gpu_check: {len(s.stages) - failed}/{len(s.stages)} stages ok in "
          f"{results['total_s']:.0f} s; wrote {path}")
    return 0 if failed == 0 else 1


def _run(name: str, s: Settings, work: Path, logs: Path, repo: Path, env: dict[str, str],
         budget_s: float) -> dict[str, Any]:
    log = logs / f"{name}.log"
    if name in ("cartpole", "moco_vit_s"):  # a fresh run, never a resumed one (--work-dir)
        shutil.rmtree(work / name, ignore_errors=True)
    record = run_stage(stage_command(name, s, work, logs), budget_s, log, repo, env)
    if name == "tests":
        record.update(tests_figures(log))
    elif name.startswith("bench_update"):
        record.update(bench_update_figures(logs / name / "bench_update.json"))
    elif name == "cartpole":
        record.update(cartpole_figures(work / "cartpole"))
    elif name == "frames":
        record["images"] = _count_images(work / "frames")
    elif name == "moco_vit_s":
        record["images"] = _count_images(work / "frames")
        record["batch_size"] = s.moco_batch_size
        record.update(moco_figures(work / "moco_vit_s"))
    return record


def _headline(name: str, record: dict[str, Any]) -> str:
    if name == "tests":
        return str(record.get("pytest", ""))
    if name == "cartpole":
        return f"env steps/s {record.get('env_steps_per_s')} (training " \
               f"{record.get('env_steps_per_s_training')})"
    if name == "moco_vit_s":
        return f"images/s {record.get('images_per_s')}"
    if name.startswith("bench_update"):
        return ", ".join(f"{b}: {row} {v['ms_per_update']} ms ({v['speedup_vs_baseline']}x)"
                         for b, entry in record.items()
                         if b.startswith("batch_") for row, v in entry["rows"].items()
                         if "ms_per_update" in v and row.startswith(("ours", "official")))
    return ""


def _frames_ready(folder: Path) -> bool:
    """Rendered images there, and not the remains of an interrupted rendering."""
    from curl_moco.pretrain.data import INCOMPLETE_MARKER

    return _count_images(folder) > 0 and not (folder / INCOMPLETE_MARKER).exists()


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.glob("*/*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def _write_digits(folder: Path) -> None:
    from curl_moco.experiments.bench.bench_pretrain import write_digits_jpeg_folder

    shutil.rmtree(folder, ignore_errors=True)
    write_digits_jpeg_folder(folder, image_size=224, per_class=1_000)


def _save(results: dict[str, Any], out: Path) -> Path:
    from curl_moco.experiments.bench.common import write_results

    return write_results("gpu_check", results, out)


if __name__ == "__main__":
    from curl_moco.io.errors import run_entry_point

    sys.exit(run_entry_point(main, prog="experiments.bench.gpu_check"))
