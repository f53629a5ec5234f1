"""scripts/run_curl_benchmark.sh: the commands it would run, where an ablation's logs go, and its
one-line usage errors (no training: --dry-run and --collect-only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_curl_benchmark.sh"


def run_script(*args: str, home: Path) -> subprocess.CompletedProcess:
    """Run the script from the repository root; ``home`` keeps caches (matplotlib's) out of it."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(home)}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_dry_run_names_each_variant_run_and_passes_the_ablation_flags(tmp_path):
    done = run_script("--dry-run", "--device", "cpu", "--tasks", "cartpole-swingup", "--seeds",
                      "1 2", "--runs-dir", "R", "--variant", "no_curl", "--",
                      "--curl-update-freq", "0", "--threads", "1", home=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for seed, line in zip((1, 2), lines):
        assert f"--task cartpole-swingup --seed {seed} " in line
        assert f"--run-dir R/cartpole-swingup/no_curl/seed_{seed} " in line
        assert line.rstrip().endswith("--curl-update-freq 0 --threads 1")
    plain = run_script("--dry-run", "--tasks", "walker-walk", "--seeds", "3", "--runs-dir", "R",
                       home=tmp_path)
    assert "--run-dir R/walker-walk/seed_3 " in plain.stdout  # no variant: the CURL layout


def test_collect_only_copies_a_variants_logs_into_its_own_results_folder(tmp_path):
    run = tmp_path / "runs" / "cartpole-swingup" / "no_curl" / "seed_1"
    run.mkdir(parents=True)
    (run / "eval.csv").write_text("step,episode_reward\n10000,50.0\n20000,120.0\n")
    (run / "config.json").write_text("{}\n")
    results = tmp_path / "results"
    done = run_script("--collect-only", "--device", "cpu", "--tasks", "cartpole-swingup",
                      "--seeds", "1", "--variant", "no_curl", "--runs-dir", str(tmp_path / "runs"),
                      "--results-dir", str(results), home=tmp_path)
    assert done.returncode == 0, done.stderr
    dest = results / "dmc" / "cartpole-swingup" / "no_curl" / "seed_1"
    assert (dest / "eval.csv").read_text() == (run / "eval.csv").read_text()
    assert "# variant: no_curl" in (dest / "command.txt").read_text()
    assert "| cartpole-swingup | no_curl | not reached |" in (results / "dmc_table.md").read_text()


def test_bad_settings_are_one_line_errors_with_exit_2(tmp_path):
    for args, word in ((("--variant", "seed_2"), "--variant"), (("--variant", "a/b"), "--variant"),
                       (("--jobs", "0"), "--jobs"), (("--bogus",), "--bogus")):
        done = run_script("--dry-run", "--tasks", "cartpole-swingup", *args, home=tmp_path)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and word in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
