"""plot_results on synthetic eval.csv files: PNGs, the Markdown table, milestone statistics."""

from __future__ import annotations

import numpy as np
import pytest

from curl_moco.experiments import plot_results


def write_run(root, task, seed, rows, header="step,episode_reward,episode_reward_std",
              variant=None):
    folder = root / "dmc" / task / (variant or "") / f"seed_{seed}"
    folder.mkdir(parents=True)
    lines = [header] + [f"{step},{value},0.0" for step, value in rows]
    (folder / "eval.csv").write_text("\n".join(lines) + "\n")


def test_plot_results_writes_pngs_and_table(tmp_path):
    steps = range(0, 100_001, 20_000)
    for seed, offset in ((1, 0.0), (2, 100.0)):
        write_run(tmp_path, "cartpole-swingup", seed, [(s, s / 200 + offset) for s in steps])
    # a 500k run whose 100k evaluation is at 100,500 (within the tolerance)
    write_run(tmp_path, "walker-walk", 1, [(0, 30.0), (100_500, 450.0), (500_000, 910.0)])
    out = tmp_path / "out"
    written = plot_results.main(["--results", str(tmp_path), "--out", str(out)])
    for name in ("cartpole-swingup.png", "walker-walk.png", "dmc_curves.png"):
        path = out / "plots" / name
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
        assert str(path) in written["plots"]
    table = (out / "dmc_table.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    # cartpole at 100k: seeds 500 and 600 -> mean 550, std 50; CURL 582 -> -32
    assert "| curl | 550 ± 50 (n=2) | 582 | -32 | not reached | 841 |" in rows["cartpole-swingup"]
    # one seed: no spread is shown (not a misleading "± 0")
    assert "| curl | 450 (n=1) | 403 | +47 | 910 (n=1) | 902 | 910 at 500k (n=1) |" in rows[
        "walker-walk"]
    assert "| curl | not run | 767 | – | not run | 926 | – |" in rows["finger-spin"]


def test_variants_get_their_own_rows_and_curves(tmp_path):
    """Ablations live in <task>/<variant>/seed_<s>: one table row and one curve each, beside
    the paper's pixel SAC and SAC+AE numbers."""
    steps = [0, 50_000, 100_000]
    for seed, offset in ((1, 0.0), (2, 40.0), (3, 80.0)):
        write_run(tmp_path, "cartpole-swingup", seed, [(s, s / 250 + offset) for s in steps],
                  variant="curl")
    for seed, offset in ((1, 0.0), (2, 20.0)):
        write_run(tmp_path, "cartpole-swingup", seed, [(s, s / 500 + offset) for s in steps],
                  variant="no_curl")
    out = tmp_path / "out"
    plot_results.main(["--results", str(tmp_path), "--out", str(out)])
    data = plot_results.load_dmc(tmp_path)
    assert sorted(data["cartpole-swingup"]) == ["curl", "no_curl"]
    table = (out / "dmc_table.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| cartpole-swingup")]
    # curl at 100k: 400, 440, 480 -> 440 +- 32.7; no_curl: 200, 220 -> 210 +- 10
    assert any("| curl | 440 ± 33 (n=3) | 582 | -142 |" in line for line in lines)
    assert any("| no_curl | 210 ± 10 (n=2) | 582 | -372 |" in line for line in lines)
    assert "pixel SAC (no augmentation) 419" in table and "SAC+AE 311" in table
    assert (out / "plots" / "cartpole-swingup.png").read_bytes()[:4] == b"\x89PNG"


def test_wall_clock_per_run_sums_training_episodes(tmp_path):
    """The table's last column: per seed the sum of train.csv's episode_s (across resumes),
    mean and range over the seeds that have one; '–' without train.csv."""
    for seed, episode_s in ((1, 30.0), (2, 60.0)):
        write_run(tmp_path, "cartpole-swingup", seed, [(100_000, 500.0)], variant="curl")
        rows = [f"{1000 * (i + 1)},{i},{episode_s}" for i in range(100)]
        (tmp_path / "dmc/cartpole-swingup/curl" / f"seed_{seed}" / "train.csv").write_text(
            "step,episode,episode_s\n" + "\n".join(rows) + "\n")
    write_run(tmp_path, "cartpole-swingup", 1, [(100_000, 300.0)], variant="no_curl")
    table = plot_results.dmc_table(plot_results.load_dmc(tmp_path))
    lines = {line.split(" | ")[1]: line for line in table.splitlines()
             if line.startswith("| cartpole-swingup")}
    assert lines["curl"].endswith("| 75 min (50-100, n=2) |")  # 100 x 30 s and 100 x 60 s
    assert lines["no_curl"].endswith("| – |")


def test_milestones_and_band():
    a = plot_results.Curve("1", np.array([0, 50, 100]), np.array([0.0, 10.0, 20.0]))
    b = plot_results.Curve("2", np.array([0, 100, 200]), np.array([0.0, 40.0, 80.0]))
    assert a.at(100) == 20.0 and a.at(150) is None
    assert plot_results.milestone_values([a, b], 100) == [20.0, 40.0]
    assert plot_results.milestone_values([a, b], 150) == []
    assert plot_results.mean_spread([20.0, 40.0]) == "30 ± 10 (n=2)"
    assert plot_results.mean_spread([20.0], at=" at 100k") == "20 at 100k (n=1)"
    steps, avg, low, high = plot_results.mean_band([a, b])
    assert steps.tolist() == [0, 50, 100]  # up to the shortest run's end
    assert avg.tolist() == [0.0, 15.0, 30.0]  # b interpolated to 20 at step 50
    assert low.tolist() == [0.0, 10.0, 20.0] and high.tolist() == [0.0, 20.0, 40.0]  # -+ std


def test_unknown_columns_are_rejected(tmp_path):
    path = tmp_path / "eval.csv"
    path.write_text("step,score\n0,1\n")
    with pytest.raises(ValueError, match="episode_reward"):
        plot_results.read_eval_csv(path)
