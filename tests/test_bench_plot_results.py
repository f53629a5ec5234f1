"""plot_results on synthetic eval.csv files: PNGs, the Markdown table, milestone statistics."""

from __future__ import annotations

import json

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
    assert any("| curl | 440 ± 33 (n=3)<br>IQM 440 [" in line and "| 582 | -142 |" in line
               for line in lines)
    assert any("| no_curl | 210 ± 10 (n=2) | 582 | -372 |" in line for line in lines)
    assert "pixel SAC (no augmentation; same entry at 500k) 419" in table and "SAC+AE 311" in table
    assert (out / "plots" / "cartpole-swingup.png").read_bytes()[:4] == b"\x89PNG"


def test_wall_clock_per_run_sums_training_episodes(tmp_path):
    """The table's last column: per seed the sum of train.csv's episode_s (across resumes),
    listed (beyond MAX_LISTED_SEEDS seeds: mean and range); '–' without train.csv."""
    for seed, episode_s in ((1, 30.0), (2, 60.0)):
        write_run(tmp_path, "cartpole-swingup", seed, [(100_000, 500.0)], variant="curl")
        rows = [f"{1000 * (i + 1)},{i},{episode_s}" for i in range(100)]
        (tmp_path / "dmc/cartpole-swingup/curl" / f"seed_{seed}" / "train.csv").write_text(
            "step,episode,episode_s\n" + "\n".join(rows) + "\n")
    write_run(tmp_path, "cartpole-swingup", 1, [(100_000, 300.0)], variant="no_curl")
    table = plot_results.dmc_table(plot_results.load_dmc(tmp_path))
    lines = {line.split(" | ")[1]: line for line in table.splitlines()
             if line.startswith("| cartpole-swingup")}
    assert lines["curl"].endswith("| 50, 100 min (n=2) |")  # 100 x 30 s and 100 x 60 s
    assert lines["no_curl"].endswith("| – |")
    many = [plot_results.Curve(str(s), np.array([1.0]), np.array([1.0]), 60.0 * s)
            for s in range(1, plot_results.MAX_LISTED_SEEDS + 2)]
    assert plot_results._wall_clock(many) == "4 min (1-6, n=6)"


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


# ---------------------------------------------------------------- the trainer's run folders
def write_trainer_run(root, name, task, seed, returns, step_column="env_steps", bom=False):
    """A run folder as experiments.train_dmc writes it: runs/<name>/<task>/seed<N>/ with
    config.json and eval.csv (evaluations every 50k environment steps)."""
    folder = root / name / task / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"task": task, "name": name, "seed": seed}))
    lines = [f"{step_column},episode_reward"] + [f"{50_000 * (i + 1)},{r}"
                                                  for i, r in enumerate(returns)]
    (folder / "eval.csv").write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n",
                                     encoding="utf-8")
    return folder


@pytest.mark.filterwarnings("ignore::FutureWarning")  # arch: RandomState to be replaced
def test_run_folders_grouped_by_config_with_iqm_and_bootstrap_interval(tmp_path, capsys):
    """RUNS in the trainer's layout: grouped by config.json's (task, name), not by the path;
    4 seeds: IQM (mean of the middle two) with rliable's 95 % stratified-bootstrap interval
    beside mean +- std; 2 seeds: mean +- std only."""
    runs = tmp_path / "runs"
    finals = [400.0, 440.0, 480.0, 600.0]
    for seed, final in enumerate(finals, start=1):
        write_trainer_run(runs, "curl", "cartpole-swingup", seed, [final / 2, final])
    # a run folder moved elsewhere still belongs to its (task, name) group
    moved = write_trainer_run(tmp_path / "elsewhere", "no_aug", "cartpole-swingup", 1,
                              [100.0, 200.0])
    write_trainer_run(runs, "no_aug", "cartpole-swingup", 2, [120.0, 220.0],
                      step_column="step")  # an older run: "step" column
    out = tmp_path / "out"
    written = plot_results.main([str(runs), str(moved), "--out", str(out)])
    assert str(out / "dmc_table.md") in written["tables"]
    table = (out / "dmc_table.md").read_text()
    rows = {line.split(" | ")[1]: line for line in table.splitlines()
            if line.startswith("| cartpole-swingup")}
    assert sorted(rows) == ["curl", "no_aug"]
    assert "finger-spin" not in table  # only the tasks that were run
    from rliable import library as rly
    from rliable import metrics

    np.random.seed(plot_results.BOOTSTRAP_SEED)  # rliable resamples with the global generator
    _, ci = rly.get_interval_estimates(
        {"x": np.array(finals)[:, None]}, lambda x: np.array([metrics.aggregate_iqm(x)]),
        reps=plot_results.BOOTSTRAP_REPS,
        random_state=np.random.RandomState(plot_results.BOOTSTRAP_SEED))
    low, high = ci["x"][:, 0]
    assert low < 460 < high and high <= 600 and low >= 400
    expected = f"| curl | 480 ± 75 (n=4)<br>IQM 460 [{low:.0f}, {high:.0f}] | 582 | -102 |"
    assert expected in rows["curl"]
    assert "| no_aug | 210 ± 10 (n=2) | 582 | -372 |" in rows["no_aug"]
    assert "IQM" not in rows["no_aug"]
    assert plot_results.iqm_interval(finals) == pytest.approx((460.0, low, high))
    png = out / "plots" / "cartpole-swingup.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_nothing_to_plot_is_an_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    (empty / "curl" / "cartpole-swingup" / "seed1").mkdir(parents=True)
    assert plot_results.cli([str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nothing to plot under") and err.count("\n") == 1
    assert [p for p in empty.rglob("*") if p.is_file()] == []
    monkeypatch.chdir(tmp_path)  # no RUNS: ./runs, which does not exist
    assert plot_results.cli([]) == 2
    assert "RUNS='runs' does not exist" in capsys.readouterr().err
    write_trainer_run(tmp_path / "runs", "curl", "cartpole-swingup", 1, [300.0])
    assert plot_results.cli([]) == 0  # the trainer's default folder, not site-packages
    assert (tmp_path / "runs" / "dmc_table.md").is_file()


def test_bom_and_repeated_steps_in_csv(tmp_path):
    """A UTF-8 byte-order mark is not part of the first column's name; a step repeated with
    the same return counts once; repeated with different returns it is refused."""
    folder = write_trainer_run(tmp_path, "curl", "cartpole-swingup", 1, [100.0, 200.0],
                               bom=True)
    steps, returns = plot_results.read_eval_csv(folder / "eval.csv")
    assert steps.tolist() == [50_000, 100_000] and returns.tolist() == [100.0, 200.0]
    path = folder / "eval.csv"
    path.write_text("env_steps,episode_reward\n10000,100\n20000,200\n20000,200.0\n")
    assert plot_results.read_eval_csv(path)[0].tolist() == [10_000, 20_000]
    path.write_text("env_steps,episode_reward\n10000,100\n20000,200\n20000,250\n")
    with pytest.raises(plot_results.UsageError, match=r"1 step\(s\) appear in several rows.*"
                       r"env_steps 20000"):
        plot_results.read_eval_csv(path)


def test_two_folders_claiming_the_same_run_are_refused(tmp_path):
    write_trainer_run(tmp_path / "a", "curl", "cartpole-swingup", 1, [100.0])
    write_trainer_run(tmp_path / "b", "curl", "cartpole-swingup", 1, [150.0])
    with pytest.raises(plot_results.UsageError, match="both run 'curl', task "
                       "cartpole-swingup, seed 1"):
        plot_results.load_runs([tmp_path])


def test_repeated_rows_in_train_csv_count_once_or_are_refused(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("env_steps,episode_s\n1000,30\n2000,40\n2000,40\n")
    assert plot_results.read_train_seconds(path) == 70.0
    path.write_text("\ufeffstep,episode_s\n1000,30\n2000,40\n2000,45\n", encoding="utf-8")
    with pytest.raises(plot_results.UsageError, match="step 2000 appears in several rows"):
        plot_results.read_train_seconds(path)


def test_differences_between_variants_rank_only_what_the_interval_supports(tmp_path):
    """Pairs of variants with 3+ seeds at 100k: the IQM difference with rliable's independent
    bootstrap interval; a ranking only when it excludes 0; a variant with 2 seeds is left out."""
    finals = {"curl": [560.0, 590.0, 600.0], "no_curl": [300.0, 330.0, 350.0],
              "curl_shift": [420.0, 610.0, 480.0], "pixel_sac": [300.0, 310.0]}
    for variant, values in finals.items():
        for seed, final in enumerate(values, start=1):
            write_run(tmp_path, "cartpole-swingup", seed, [(50_000, final / 2),
                                                           (100_000, final)], variant=variant)
    written = plot_results.main(["--results", str(tmp_path)])
    table = (tmp_path / "dmc_table.md").read_text()
    assert str(tmp_path / "dmc_table.md") in written["tables"]
    pairs = {line.split(" | ")[2].split(" (")[0]: line for line in table.splitlines()
             if line.startswith("| cartpole-swingup | 100k |")}
    assert sorted(pairs) == ["curl - curl_shift", "curl - no_curl", "curl_shift - no_curl"]
    diff, low, high = plot_results.iqm_difference(finals["curl"], finals["no_curl"])
    assert diff == pytest.approx(np.mean(finals["curl"]) - np.mean(finals["no_curl"]))
    assert 0 < low < diff < high
    assert pairs["curl - no_curl"].endswith(
        f"| {diff:+.0f} [{low:+.0f}, {high:+.0f}] | curl > no_curl |")
    assert pairs["curl - curl_shift"].endswith("| no ranking: the interval holds 0 |")
    assert "(n=3, 3)" in pairs["curl - no_curl"] and "pixel_sac" not in "".join(pairs.values())
    # the same figures at every call, whatever numpy's global generator holds (left as it was)
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    assert plot_results.iqm_difference(finals["curl"], finals["curl_shift"]) == \
        plot_results.iqm_difference(finals["curl"], finals["curl_shift"])
    assert plot_results.iqm_difference(finals["curl"], finals["no_curl"]) == (diff, low, high)
    assert plot_results.iqm_interval(finals["curl_shift"]) == \
        plot_results.iqm_interval(finals["curl_shift"])
    assert np.array_equal(np.random.get_state()[1], state)
    assert plot_results.differences_table({"cartpole-swingup": {}}) == ""
