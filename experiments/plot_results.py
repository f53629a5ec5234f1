"""Learning curves and a results table from CURL-SAC run folders (and MoCo pretraining runs).

    curl-moco-plot runs/                          # every run the trainer wrote under runs/
    curl-moco-plot runs/curl runs/no_aug --out cmp
    curl-moco-plot --results experiments/results  # the committed benchmark results

RUNS are run folders or folders holding them, in any layout: every folder with an ``eval.csv``
is one run (``experiments.train_dmc`` writes ``runs/<name>/<task>/seed<N>/`` or any
``--run-dir``). Its ``config.json`` says the task, the run name and the seed; runs are grouped
by (task, name), one curve and one table row per group, one line per seed. The benchmark layout
of ``scripts/run_curl_benchmark.sh`` (``<results>/dmc/<task>[/<variant>]/seed_<s>/``) names a
group by its variant folder instead, because its ablations share their preset's run name; a
folder without ``config.json`` is read from that layout. ``eval.csv``: ``env_steps`` (``step``
in older runs) = environment steps, ``episode_reward`` = mean return of the evaluation episodes.

Writes to ``--out`` (default: ``--results``, else the first RUNS folder):

- ``plots/<task>.png``: per group, the interquartile mean (IQM) over seeds with its 95 %
  stratified-bootstrap confidence band (``rliable``) when there are 3+ seeds, else the mean with
  a +-std band (thin lines: each seed); CURL's published 100k and 500k scores (and, where the
  paper gives them, other methods' 100k scores) as reference marks;
- ``plots/dmc_curves.png``: all tasks on one figure;
- ``dmc_table.md``: per task and group, mean +- std over seeds at 100k and 500k environment
  steps and at the latest evaluation, with 3+ seeds also the IQM and its 95 % stratified-
  bootstrap confidence interval, beside CURL's numbers, and the wall clock per run (the sum of
  ``episode_s`` in each seed's ``train.csv``, where present: training episodes only, across
  resumes, evaluations excluded; listed per seed, as seeds may have run on different
  machines); below it, for every two variants of a task with 3+ seeds each at a milestone, the
  difference of their IQMs with its 95 % bootstrap interval and the ranking it supports (only
  when the interval excludes 0).

MoCo runs (folders with ``epoch.csv``, from ``experiments.pretrain_moco``; with ``--results``:
``<results>/moco/<run>/``): ``plots/moco.png`` (loss and kNN accuracy per epoch) and
``moco_table.md``.

Without RUNS and ``--results`` the runs under ``./runs`` are plotted. A missing folder, nothing
to plot, an unwritable ``--out``, a malformed CSV or two runs claiming the same (task, name,
seed) print ``error: ...`` (naming the path) and exit 2 before anything is written.
"""
from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import csv
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curl_moco.envs.tasks import CURL_TASKS
from curl_moco.io.checks import check_output_dir
from curl_moco.io.errors import ArgumentParser, UsageError, run_entry_point
from curl_moco.io.logger import read_csv

#: CURL paper scores ({env steps: return}) and other methods' 100k scores, from envs/tasks.py.
CURL_PAPER: dict[str, dict[int, float]] = {t: f.curl_scores for t, f in CURL_TASKS.items()}
OTHER_METHODS_100K: dict[str, dict[str, float]] = {
    t: f.other_methods_100k for t, f in CURL_TASKS.items() if f.other_methods_100k}
#: Variant name of runs stored directly as ``<task>/seed_<s>`` (the benchmark script's CURL).
DEFAULT_VARIANT = "curl"
#: Where the trainer writes its runs by default (runs/<name>/<task>/seed<N>): plotted when no
#: folder is given.
DEFAULT_RUNS = "runs"
MILESTONES: tuple[int, ...] = (100_000, 500_000)
#: Environment steps: ``env_steps``; runs logged before the columns named their units: ``step``.
STEP_COLUMNS: tuple[str, ...] = ("env_steps", "step")
RETURN_COLUMNS: tuple[str, ...] = ("episode_reward", "mean_return", "return")
#: ``train.csv`` column with each training episode's wall clock in seconds.
TIME_COLUMN = "episode_s"
#: An evaluation counts for a milestone when it lies within this fraction of it.
TOLERANCE = 0.02
#: Seeds needed for the interquartile mean and its bootstrap interval (Agarwal et al. 2021).
MIN_SEEDS_FOR_IQM = 3
#: Bootstrap replications and generator seed of the confidence intervals (reproducible).
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
#: Up to this many seeds the table lists each seed's wall clock, beyond it mean (min-max).
MAX_LISTED_SEEDS = 5


@dataclass
class Curve:
    """One seed's evaluation curve: ``steps (N,)`` environment steps, ``returns (N,)``."""

    seed: str
    steps: np.ndarray
    returns: np.ndarray
    #: Wall clock of the training episodes (s, from ``train.csv``), None without that file.
    train_seconds: float | None = None

    def at(self, step: int) -> float | None:
        """Return of the evaluation nearest to ``step`` (within ``TOLERANCE``), else None."""
        if self.steps.size == 0:
            return None
        i = int(np.argmin(np.abs(self.steps - step)))
        return float(self.returns[i]) if abs(self.steps[i] - step) <= TOLERANCE * step else None


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file (:func:`curl_moco.io.logger.read_csv`); a file that cannot be
    read is a :class:`UsageError` naming it."""
    try:
        return read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UsageError(f"{path}: cannot be read as CSV ({error})") from error


def read_eval_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, returns)`` sorted by step from an ``eval.csv``; the step column is the first of
    :data:`STEP_COLUMNS` present, the return column the first of :data:`RETURN_COLUMNS`. A step
    that appears in several rows with different returns is refused (which one is right cannot
    be told); identical repeats count once."""
    rows = _read_rows(path)
    if not rows:
        return np.zeros(0), np.zeros(0)
    step_column = next((c for c in STEP_COLUMNS if c in rows[0]), None)
    column = next((c for c in RETURN_COLUMNS if c in rows[0]), None)
    if step_column is None or column is None:
        raise UsageError(f"{path}: needs one of the columns {STEP_COLUMNS} and one of "
                         f"{RETURN_COLUMNS}, has {sorted(rows[0])}")
    by_step: dict[int, float] = {}
    conflicts: set[int] = set()
    for row in rows:
        if not row[step_column] or not row[column]:
            continue
        try:
            step, value = int(float(row[step_column])), float(row[column])
        except (TypeError, ValueError) as error:
            raise UsageError(f"{path}: a {step_column!r} or {column!r} value is not a number "
                             f"({error})") from error
        if step in by_step and by_step[step] != value:
            conflicts.add(step)
        by_step[step] = value
    if conflicts:
        shown = ", ".join(str(s) for s in sorted(conflicts)[:5])
        raise UsageError(f"{path}: {len(conflicts)} step(s) appear in several rows with "
                         f"different {column!r} ({step_column} {shown}); keep one row per step "
                         "(the rows of the run that continued) and plot again")
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def read_train_seconds(path: Path) -> float | None:
    """Sum of the ``episode_s`` column (seconds per training episode) of a ``train.csv``; None
    when the file or the column is absent. Resumed runs keep their earlier rows, so the sum
    covers every session of a run. A row repeated whole counts once; a step with two different
    rows is refused (as in :func:`read_eval_csv`)."""
    if not path.is_file():
        return None
    rows = _read_rows(path)
    if not rows or TIME_COLUMN not in rows[0]:
        return None
    step_column = next((c for c in STEP_COLUMNS if c in rows[0]), None)
    if step_column is not None:
        by_step: dict[str, dict[str, str]] = {}
        for row in rows:
            seen = by_step.setdefault(row[step_column], row)
            if seen != row:
                raise UsageError(f"{path}: {step_column} {row[step_column]} appears in several "
                                 "rows with different values; keep one row per step (the rows "
                                 "of the run that continued) and plot again")
        rows = list(by_step.values())
    try:
        return sum(float(r[TIME_COLUMN]) for r in rows if r[TIME_COLUMN])
    except ValueError as error:
        raise UsageError(f"{path}: a {TIME_COLUMN!r} value is not a number ({error})") from error


@dataclass(frozen=True)
class RunInfo:
    """Where one run's logs are and what it is: ``task``, group ``label`` and ``seed``."""

    folder: Path
    task: str
    label: str
    seed: str


def find_run_folders(path: Path, log_name: str = "eval.csv") -> list[Path]:
    """``path`` itself when it holds ``log_name``, else every folder below it that does."""
    if (path / log_name).is_file():
        return [path]
    return sorted({p.parent for p in path.rglob(log_name) if p.is_file()})


def describe_run(folder: Path) -> RunInfo:
    """Task, group label and seed of the run in ``folder``: from its ``config.json``
    (``task``, ``name``, ``seed``); the benchmark layout ``<task>/<variant>/seed_<s>`` labels
    the group by its variant folder; without ``config.json`` the layout
    ``<task>[/<variant>]/seed_<s>`` is required."""
    config_path = folder / "config.json"
    config: dict = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UsageError(f"{config_path}: not a readable JSON config ({error})") from error
        if not isinstance(config, dict):
            raise UsageError(f"{config_path}: must hold a JSON object of settings")
    benchmark_seed = re.fullmatch(r"seed_(\d+)", folder.name)
    if config.get("task") and config.get("seed") is not None:
        task, seed = str(config["task"]), str(config["seed"])
        label = str(config.get("name") or DEFAULT_VARIANT)
        if benchmark_seed and folder.parent.parent.name == task:
            label = folder.parent.name
        return RunInfo(folder, task, label, seed)
    if benchmark_seed:
        seed = benchmark_seed.group(1)
        if _is_task(folder.parent.name):
            return RunInfo(folder, folder.parent.name, DEFAULT_VARIANT, seed)
        if _is_task(folder.parent.parent.name):
            return RunInfo(folder, folder.parent.parent.name, folder.parent.name, seed)
    raise UsageError(f"{folder}: has eval.csv but no config.json with 'task' and 'seed' and is "
                     "not in the layout <task>[/<variant>]/seed_<s>; plot the trainer's run "
                     "folders (they hold config.json)")


def _is_task(name: str) -> bool:
    if name in CURL_TASKS:
        return True
    from curl_moco.envs.tasks import list_tasks

    return name in list_tasks()


def load_runs(paths: Sequence[Path]) -> dict[str, dict[str, list[Curve]]]:
    """``{task: {label: [Curve per seed]}}`` of every run folder in or under ``paths``.
    Two folders claiming the same (task, label, seed) are refused: averaging them as separate
    seeds would overstate the evidence."""
    infos: dict[tuple[str, str, str], RunInfo] = {}
    folders = {f.resolve(): f for path in paths for f in find_run_folders(path)}
    for folder in sorted(folders.values()):
        info = describe_run(folder)
        key = (info.task, info.label, info.seed)
        if key in infos:
            raise UsageError(f"{folder} and {infos[key].folder} are both run {info.label!r}, "
                             f"task {info.task}, seed {info.seed}: give the runs distinct "
                             "names (--name) or plot them separately")
        infos[key] = info
    out: dict[str, dict[str, list[Curve]]] = {}
    for info in sorted(infos.values(), key=lambda i: (i.task, i.label, _seed_key(i.seed))):
        steps, returns = read_eval_csv(info.folder / "eval.csv")
        if steps.size:
            out.setdefault(info.task, {}).setdefault(info.label, []).append(
                Curve(info.seed, steps, returns,
                      read_train_seconds(info.folder / "train.csv")))
    return out


def load_dmc(results: Path) -> dict[str, dict[str, list[Curve]]]:
    """The benchmark layout: :func:`load_runs` of ``results/dmc`` (variant
    :data:`DEFAULT_VARIANT` for ``<task>/seed_<s>``); empty without that folder."""
    root = results / "dmc"
    return load_runs([root]) if root.is_dir() else {}


def _seed_key(seed: str) -> tuple[float, str]:
    return (int(seed) if seed.isdigit() else math.inf, seed)


def iqm_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Interquartile mean of ``values`` (one per seed) and its 95 % stratified-bootstrap
    confidence interval ``(iqm, low, high)``."""
    iqm, low, high = iqm_curve(np.asarray(values, dtype=np.float64)[:, None])
    return float(iqm[0]), float(low[0]), float(high[0])


def _bootstrap(scores: np.ndarray | tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    """rliable's point estimate and 95 % stratified-bootstrap interval ``(2, ...)`` of
    ``statistic`` over ``scores`` (one array; or a tuple, each resampled independently), with
    :data:`BOOTSTRAP_REPS` replications, the same at every call. rliable 1.2 draws its
    resampling indices from numpy's global generator (``np.random.choice``; its
    ``random_state`` reaches only arch's own draws): that generator is seeded for the call and
    its state restored after."""
    import warnings

    from rliable import library as rly

    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch: RandomState will be replaced
            estimates, intervals = rly.get_interval_estimates(
                {"scores": scores}, statistic, reps=BOOTSTRAP_REPS,
                random_state=np.random.RandomState(BOOTSTRAP_SEED))
    finally:
        np.random.set_state(state)
    return estimates["scores"], intervals["scores"]


def iqm_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """``IQM(a) - IQM(b)`` over seeds (one value per seed each) and its 95 % bootstrap
    confidence interval ``(difference, low, high)``: the seeds of ``a`` and of ``b`` are
    resampled independently (rliable's stratified independent bootstrap)."""
    from scipy.stats import trim_mean

    def difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # (seeds, 1) each
        return np.array([trim_mean(x[:, 0], 0.25) - trim_mean(y[:, 0], 0.25)])

    pair = (np.asarray(a, dtype=np.float64)[:, None], np.asarray(b, dtype=np.float64)[:, None])
    estimate, interval = _bootstrap(pair, difference)
    return float(estimate[0]), float(interval[0, 0]), float(interval[1, 0])


def iqm_curve(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``scores (seeds, points)``: the IQM over seeds and its 95 % stratified-
    bootstrap confidence interval, three arrays ``(points,)``, computed by ``rliable``
    (Agarwal et al. 2021)."""
    from scipy.stats import trim_mean

    def aggregate(x: np.ndarray) -> np.ndarray:  # x: (seeds, 1, points)
        # rliable's metrics.aggregate_iqm (trim_mean 0.25) per point, vectorised over points
        return trim_mean(x[:, 0, :], proportiontocut=0.25, axis=0)

    estimates, intervals = _bootstrap(scores[:, None, :], aggregate)
    return estimates, intervals[0], intervals[1]


def _common_steps(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """The union of evaluation steps up to the shortest run's end and the seeds' returns there
    ``(seeds, steps)``, linearly interpolated."""
    end = min(int(c.steps[-1]) for c in curves)
    steps = np.unique(np.concatenate([c.steps[c.steps <= end] for c in curves]))
    return steps, np.stack([np.interp(steps, c.steps, c.returns) for c in curves])


def mean_band(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """On the union of evaluation steps up to the shortest run's end: ``steps``, ``mean``,
    ``low`` and ``high`` (mean -+ std over seeds) of the seeds' returns, linearly
    interpolated."""
    steps, values = _common_steps(curves)
    mean, std = values.mean(0), values.std(0)
    return steps, mean, mean - std, mean + std


def iqm_band(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`mean_band`, with the IQM over seeds and its 95 % bootstrap interval."""
    steps, values = _common_steps(curves)
    return (steps, *iqm_curve(values))


def iqm_text(values: Sequence[float]) -> str:
    """``"IQM 560 [505, 598]"`` (95 % CI) for 3+ values, else an empty string."""
    if len(values) < MIN_SEEDS_FOR_IQM:
        return ""
    iqm, low, high = iqm_interval(values)
    return f"IQM {iqm:.0f} [{low:.0f}, {high:.0f}]"


def mean_spread(values: Sequence[float], at: str = "") -> str:
    """``"550 ± 50 (n=2)"`` (``at`` goes before the count); one seed has no spread:
    ``"450 (n=1)"``."""
    spread = "" if len(values) == 1 else f" ± {np.std(values):.0f}"
    return f"{np.mean(values):.0f}{spread}{at} (n={len(values)})"


def milestone_values(curves: Sequence[Curve], step: int) -> list[float]:
    """The returns of the seeds that have an evaluation at ``step`` (empty if none)."""
    return [v for v in (c.at(step) for c in curves) if v is not None]


def dmc_table(data: dict[str, dict[str, list[Curve]]], all_curl_tasks: bool = True) -> str:
    """Markdown: per task and variant, mean +- std over seeds (with 3+ seeds also the IQM and
    its 95 % bootstrap interval) at 100k/500k and at the latest evaluation, beside CURL's
    published scores (and other methods' where known). ``all_curl_tasks``: a row for each of
    CURL's tasks, "not run" where there is no data (the benchmark's grid)."""
    lines = [
        "| task | variant | ours 100k | CURL 100k | ours - CURL (100k) | ours 500k | CURL 500k "
        "| ours, latest evaluation | wall clock per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tasks = ([t for t in CURL_PAPER if all_curl_tasks or t in data]
             + sorted(set(data) - set(CURL_PAPER)))
    for task in tasks:
        paper = CURL_PAPER.get(task, {})
        for variant, curves in (data.get(task) or {DEFAULT_VARIANT: []}).items():
            cells = [task, variant]
            for step in MILESTONES:
                values = milestone_values(curves, step)
                ours = (_with_iqm(mean_spread(values), values) if values
                        else "not reached" if curves else "not run")
                ref = f"{paper[step]:.0f}" if step in paper else "–"
                if step == MILESTONES[0]:
                    diff = (f"{np.mean(values) - paper[step]:+.0f}" if values and step in paper
                            else "–")
                    cells += [ours, ref, diff]
                else:
                    cells += [ours, ref]
            if curves:
                last = [float(c.returns[-1]) for c in curves]
                steps = sorted({int(c.steps[-1]) for c in curves})
                at = (f"{steps[0] / 1e3:g}k" if len(steps) == 1
                      else f"{steps[0] / 1e3:g}k-{steps[-1] / 1e3:g}k")
                cells.append(_with_iqm(mean_spread(last, at=f" at {at}"), last))
            else:
                cells.append("–")
            cells.append(_wall_clock(curves))
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Environment steps (agent steps x action repeat); ours: mean ± std (ddof 0) "
                 "over seeds of the mean return of the evaluation episodes (deterministic "
                 "policy), at the "
                 f"evaluation within {TOLERANCE:.0%} of the step count; with "
                 f"{MIN_SEEDS_FOR_IQM}+ seeds also the interquartile mean over seeds with its "
                 "95 % stratified-bootstrap confidence interval (rliable, Agarwal et al. 2021; "
                 f"{BOOTSTRAP_REPS} replications; with 3 seeds the IQM trims nothing and "
                 "equals the mean, and the interval is close to the seeds' range); CURL: "
                 "Laskin et al. 2020, Table 1 (mean of 10 seeds). Wall clock per run: each "
                 "seed's training episodes' time in train.csv, in seed order (beyond "
                 f"{MAX_LISTED_SEEDS} seeds: mean (min-max)); evaluations excluded; the "
                 "machine and load, which may differ between seeds, are in each run's notes.")
    others = [f"{task}: " + ", ".join(f"{m} {v:.0f}" for m, v in methods.items())
              for task, methods in OTHER_METHODS_100K.items() if task in data]
    if others:
        lines.append("Other methods at 100k in the same table: " + "; ".join(others) + ".")
    return "\n".join(lines) + "\n"


def differences_table(data: dict[str, dict[str, list[Curve]]]) -> str:
    """Markdown: for every two variants of a task with :data:`MIN_SEEDS_FOR_IQM`+ seeds at a
    milestone, the difference of their IQMs there with its 95 % bootstrap interval, and what
    the interval supports: a ranking only when it excludes 0. Empty when no pair qualifies."""
    lines = []
    for task in sorted(data):
        for step in MILESTONES:
            scores = {variant: milestone_values(curves, step)
                      for variant, curves in data[task].items()}
            ranked = sorted((v for v, values in scores.items()
                             if len(values) >= MIN_SEEDS_FOR_IQM),
                            key=lambda v: -float(np.mean(scores[v])))
            for i, first in enumerate(ranked):
                for second in ranked[i + 1:]:
                    diff, low, high = iqm_difference(scores[first], scores[second])
                    verdict = (f"{first} > {second}" if low > 0 else
                               f"{second} > {first}" if high < 0 else
                               "no ranking: the interval holds 0")
                    lines.append(f"| {task} | {step / 1e3:g}k | {first} - {second} "
                                 f"(n={len(scores[first])}, {len(scores[second])}) | "
                                 f"{diff:+.0f} [{low:+.0f}, {high:+.0f}] | {verdict} |")
    if not lines:
        return ""
    return "\n".join([
        "| task | environment steps | variants (seeds) | IQM difference [95 % CI] | the "
        "interval supports |",
        "|---|---|---|---|---|", *lines, "",
        "Between every two variants with 3+ seeds at a milestone: the difference of their "
        "interquartile means over seeds, with its 95 % bootstrap interval (each variant's "
        f"seeds resampled independently; rliable, {BOOTSTRAP_REPS} replications). A ranking "
        "is supported only when the interval excludes 0. With 3 seeds per variant the "
        "bootstrap interval is too narrow (its variance is (n-1)/n of the seeds' and 3 seeds "
        "give 10 distinct resamples): read an excluded 0 as suggestive, not settled."]) \
        + "\n"


def _with_iqm(cell: str, values: Sequence[float]) -> str:
    iqm = iqm_text(values)
    return f"{cell}<br>{iqm}" if iqm else cell


def _wall_clock(curves: Sequence[Curve]) -> str:
    """Each seed's minutes, ``"50, 100 min (n=2)"`` (seeds may have run on different machines:
    a mean of those would describe none), or ``"70 min (61-82, n=8)"`` for more than
    :data:`MAX_LISTED_SEEDS` seeds with a train.csv."""
    minutes = [c.train_seconds / 60 for c in curves if c.train_seconds is not None]
    if not minutes:
        return "–"
    if len(minutes) <= MAX_LISTED_SEEDS:
        return ", ".join(f"{m:.0f}" for m in minutes) + f" min (n={len(minutes)})"
    return f"{np.mean(minutes):.0f} min ({min(minutes):.0f}-{max(minutes):.0f}, n={len(minutes)})"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_task(ax, task: str, variants: dict[str, list[Curve]]) -> None:
    """Per variant: with 3+ seeds the IQM curve and its 95 % bootstrap band, else the mean and
    a +-std band; thin per-seed lines; the paper's marks on ``ax``."""
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"]
    for index, (variant, curves) in enumerate(variants.items()):
        color = colors[index % len(colors)]
        use_iqm = len(curves) >= MIN_SEEDS_FOR_IQM
        steps, mean, low, high = iqm_band(curves) if use_iqm else mean_band(curves)
        for c in curves:
            ax.plot(c.steps / 1e3, c.returns, color=color, alpha=0.25, linewidth=0.8)
        ax.fill_between(steps / 1e3, low, high, color=color, alpha=0.15)
        label = (f"{variant}: 1 seed" if len(curves) == 1
                 else f"{variant}: IQM, 95 % CI, {len(curves)} seeds" if use_iqm
                 else f"{variant}: mean ± std, {len(curves)} seeds")
        ax.plot(steps / 1e3, mean, color=color, linewidth=2, label=label)
    # the paper's marks only where the runs reach them (short runs keep their own x range)
    longest = max(int(c.steps[-1]) for curves in variants.values() for c in curves)
    reached = [step for step in CURL_PAPER.get(task, {}) if step <= 1.05 * longest]
    for step in reached:
        ax.scatter([step / 1e3], [CURL_PAPER[task][step]], marker="*", s=140, color="tab:red",
                   zorder=5, label="CURL, paper" if step == reached[0] else None)
    if 100_000 in reached:
        for (method, value), marker in zip(OTHER_METHODS_100K.get(task, {}).items(), "ovs^"):
            ax.scatter([100], [value], marker=marker, s=50, color="black", zorder=5,
                       label=f"{method}, paper")
    ax.set_title(task)
    ax.set_xlabel("environment steps (thousands)")
    ax.set_ylabel("evaluation return")
    ax.set_ylim(0, 1000)
    ax.grid(alpha=0.3)


def plot_dmc(data: dict[str, dict[str, list[Curve]]], out: Path) -> list[Path]:
    plt = _plt()
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written = []
    for task, curves in data.items():
        fig, ax = plt.subplots(figsize=(5, 3.6))
        draw_task(ax, task, curves)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = plots / f"{task}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if data:
        n = len(data)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, (task, curves) in zip(axes.flat, data.items()):
            draw_task(ax, task, curves)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = plots / "dmc_curves.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# ------------------------------------------------------------------ MoCo (optional)
def load_moco(results: Path) -> dict[str, list[dict[str, float]]]:
    """``{run: rows of epoch.csv}`` from ``results/moco/<run>/epoch.csv``."""
    root = results / "moco"
    return load_moco_runs([root]) if root.is_dir() else {}


def load_moco_runs(paths: Sequence[Path]) -> dict[str, list[dict[str, float]]]:
    """``{run: rows of epoch.csv}`` of every pretraining run folder in or under ``paths``
    (named by its folder; by its parent and folder when two folders share a name)."""
    folders = sorted({f.resolve(): f for path in paths
                      for f in find_run_folders(path, "epoch.csv")}.values())
    names = [f.name for f in folders]
    out: dict[str, list[dict[str, float]]] = {}
    for folder in folders:
        path = folder / "epoch.csv"
        try:
            rows = [{k: float(v) for k, v in r.items() if v not in ("", None)}
                    for r in _read_rows(path)]
        except (TypeError, ValueError) as error:
            raise UsageError(f"{path}: a value is not a number ({error})") from error
        if rows:
            name = folder.name if names.count(folder.name) == 1 else \
                f"{folder.parent.name}/{folder.name}"
            out[name] = rows
    return out


def plot_moco(data: dict[str, list[dict[str, float]]], out: Path) -> list[Path]:
    if not data:
        return []
    plt = _plt()
    fig, (loss_ax, knn_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run, rows in data.items():
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
        loss_ax.plot(epochs, [r.get("loss", math.nan) for r in rows], label=run)
        knn = [(e, r["knn_accuracy"]) for e, r in zip(epochs, rows) if "knn_accuracy" in r]
        if knn:
            knn_ax.plot(*zip(*knn), marker="o", label=run)
    loss_ax.set(xlabel="epoch", ylabel="InfoNCE loss", title="MoCo training loss")
    knn_ax.set(xlabel="epoch", ylabel="kNN accuracy", title="kNN monitor (held-out)")
    for ax in (loss_ax, knn_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    (out / "plots").mkdir(parents=True, exist_ok=True)
    path = out / "plots" / "moco.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def moco_table(data: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| run | epochs | final loss | final kNN accuracy |", "|---|---|---|---|"]
    for run, rows in data.items():
        last = rows[-1]
        knn = next((r["knn_accuracy"] for r in reversed(rows) if "knn_accuracy" in r), None)
        lines.append(f"| {run} | {last.get('epoch', len(rows)):.0f} | "
                     f"{last.get('loss', math.nan):.3f} | "
                     f"{'–' if knn is None else f'{knn:.3f}'} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    """Plot and tabulate as ``argv`` says; returns the written files (raises
    :class:`~curl_moco.io.errors.UsageError` for a bad setting; :func:`cli` reports it)."""
    parser = ArgumentParser(prog="curl-moco-plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="RUNS",
                        help=f"run folders or folders holding them (default: {DEFAULT_RUNS}/)")
    parser.add_argument("--results", default=None, help="a benchmark results folder holding "
                        "dmc/<task>[/<variant>]/seed_<s>/ and moco/<run>/ (e.g. "
                        "experiments/results in the repository)")
    parser.add_argument("--out", default=None, help="where plots/ and the tables go (default: "
                        "--results, else the first RUNS folder)")
    args = parser.parse_args(argv)
    runs = [Path(r) for r in args.runs]
    if args.results is None and not runs:
        runs = [Path(DEFAULT_RUNS)]
    for path in runs:
        if not path.is_dir():
            raise UsageError(f"RUNS={str(path)!r} "
                             f"{'is not a folder' if path.exists() else 'does not exist'}: give "
                             "run folders (holding eval.csv) or folders holding them")
    dmc_paths, moco_paths = list(runs), list(runs)
    results = None
    if args.results is not None:
        results = Path(args.results)
        if not results.is_dir():
            raise UsageError(
                f"results={str(results)!r} "
                f"{'is not a folder' if results.exists() else 'does not exist'}: give the "
                "folder holding dmc/<task>[/<variant>]/seed_<s>/eval.csv")
        dmc_paths += [p for p in (results / "dmc",) if p.is_dir()]
        moco_paths += [p for p in (results / "moco",) if p.is_dir()]
    out = Path(args.out) if args.out else (results if results is not None else runs[0])
    check_output_dir("out", out)
    dmc, moco = load_runs(dmc_paths), load_moco_runs(moco_paths)  # read all before writing
    if not dmc and not moco:
        searched = ", ".join(str(p) for p in [*runs, *([results] if results else [])])
        raise UsageError(f"nothing to plot under {searched}: no run folder with an eval.csv "
                         "(experiments.train_dmc) or epoch.csv (experiments.pretrain_moco) "
                         "that holds a row; train first, or give the folders the runs are in")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {"plots": [], "tables": []}
    if dmc:
        table = out / "dmc_table.md"
        differences = differences_table(dmc)
        table.write_text(dmc_table(dmc, all_curl_tasks=results is not None)
                         + (f"\n## Differences between variants\n\n{differences}"
                            if differences else ""))
        written["tables"].append(str(table))
        written["plots"] += [str(p) for p in plot_dmc(dmc, out)]
        print(table.read_text())
    if moco:
        table = out / "moco_table.md"
        table.write_text(moco_table(moco))
        written["tables"].append(str(table))
        written["plots"] += [str(p) for p in plot_moco(moco, out)]
        print(table.read_text())
    for path in written["tables"] + written["plots"]:
        print(f"wrote {path}")
    return written


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 for a usage error."""
    return run_entry_point(main, argv, prog="curl-moco-plot")


if __name__ == "__main__":
    sys.exit(cli())
