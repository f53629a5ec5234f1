"""Learning curves and a results table from committed run logs (CURL on DMControl, MoCo).

Reads ``<results>/dmc/<task>/seed_<s>/eval.csv`` (CURL runs of
``scripts/run_curl_benchmark.sh``) and ``<results>/dmc/<task>/<variant>/seed_<s>/eval.csv``
(ablations: ``curl``, ``no_curl``, ``curl_shift``, ...; written by ``experiments.train_dmc``:
column ``step`` = environment steps, ``episode_reward`` = mean return of the evaluation
episodes) and writes

- ``<out>/plots/<task>.png``: per variant, the mean over seeds with a +-std band (thin lines:
  each seed); CURL's published 100k and 500k scores (and, where the paper gives them, other
  methods' 100k scores) as reference marks;
- ``<out>/plots/dmc_curves.png``: all tasks on one figure;
- ``<out>/dmc_table.md``: per task and variant, mean +- std over seeds at 100k and 500k
  environment steps and at the latest evaluation, beside CURL's numbers, and the wall clock
  per run (the sum of ``episode_s`` in each seed's ``train.csv``, where present: training
  episodes only, across resumes, evaluations excluded).

Optionally (when present) ``<results>/moco/<run>/epoch.csv`` (``experiments.pretrain_moco``):
``<out>/plots/moco.png`` (loss and kNN accuracy per epoch) and ``<out>/moco_table.md``.

    python -m experiments.plot_results [--results experiments/results] [--out experiments/results]

A missing ``--results`` folder, an unwritable ``--out`` or a malformed ``eval.csv`` prints
``error: ...`` (naming the file) and exits 2.
"""

from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import csv
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curl_moco.envs.tasks import CURL_TASKS
from curl_moco.io.checks import check_output_dir
from curl_moco.io.errors import ArgumentParser, UsageError, run_entry_point

#: CURL paper scores ({env steps: return}) and other methods' 100k scores, from envs/tasks.py.
CURL_PAPER: dict[str, dict[int, float]] = {t: f.curl_scores for t, f in CURL_TASKS.items()}
OTHER_METHODS_100K: dict[str, dict[str, float]] = {
    t: f.other_methods_100k for t, f in CURL_TASKS.items() if f.other_methods_100k}
#: Variant name of runs stored directly as ``<task>/seed_<s>`` (the benchmark script's CURL).
DEFAULT_VARIANT = "curl"
MILESTONES: tuple[int, ...] = (100_000, 500_000)
STEP_COLUMN = "step"
RETURN_COLUMNS: tuple[str, ...] = ("episode_reward", "mean_return", "return")
#: ``train.csv`` column with each training episode's wall clock in seconds.
TIME_COLUMN = "episode_s"
#: An evaluation counts for a milestone when it lies within this fraction of it.
TOLERANCE = 0.02


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


def read_eval_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, returns)`` sorted by step from an ``eval.csv``; the return column is the first
    of :data:`RETURN_COLUMNS` present. Duplicate steps keep the last row."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return np.zeros(0), np.zeros(0)
    column = next((c for c in RETURN_COLUMNS if c in rows[0]), None)
    if STEP_COLUMN not in rows[0] or column is None:
        raise UsageError(f"{path}: needs columns {STEP_COLUMN!r} and one of {RETURN_COLUMNS}, "
                         f"has {sorted(rows[0])}")
    try:
        by_step = {int(float(r[STEP_COLUMN])): float(r[column]) for r in rows
                   if r[STEP_COLUMN] and r[column]}
    except (TypeError, ValueError) as error:
        raise UsageError(f"{path}: a {STEP_COLUMN!r} or {column!r} value is not a number "
                         f"({error})") from error
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def read_train_seconds(path: Path) -> float | None:
    """Sum of the ``episode_s`` column (seconds per training episode) of a ``train.csv``; None
    when the file or the column is absent. Resumed runs keep their earlier rows, so the sum
    covers every session of a run."""
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or TIME_COLUMN not in rows[0]:
        return None
    try:
        return sum(float(r[TIME_COLUMN]) for r in rows if r[TIME_COLUMN])
    except ValueError as error:
        raise UsageError(f"{path}: a {TIME_COLUMN!r} value is not a number ({error})") from error


def _seed_curves(folder: Path) -> list[Curve]:
    curves = []
    for seed_dir in sorted(folder.glob("seed_*"), key=_seed_key):
        path = seed_dir / "eval.csv"
        if path.is_file():
            steps, returns = read_eval_csv(path)
            if steps.size:
                curves.append(Curve(seed_dir.name.removeprefix("seed_"), steps, returns,
                                    read_train_seconds(seed_dir / "train.csv")))
    return curves


def load_dmc(results: Path) -> dict[str, dict[str, list[Curve]]]:
    """``{task: {variant: [Curve per seed]}}`` from ``results/dmc/<task>/seed_<s>/eval.csv``
    (variant :data:`DEFAULT_VARIANT`) and ``results/dmc/<task>/<variant>/seed_<s>/eval.csv``."""
    out: dict[str, dict[str, list[Curve]]] = {}
    root = results / "dmc"
    if not root.is_dir():
        return out
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        variants = {DEFAULT_VARIANT: _seed_curves(task_dir)}
        for sub in sorted(p for p in task_dir.iterdir()
                          if p.is_dir() and not p.name.startswith("seed_")):
            variants[sub.name] = variants.get(sub.name, []) + _seed_curves(sub)
        variants = {name: curves for name, curves in variants.items() if curves}
        if variants:
            out[task_dir.name] = variants
    return out


def _seed_key(path: Path) -> tuple[int, str]:
    match = re.search(r"(\d+)$", path.name)
    return (int(match.group(1)) if match else math.inf, path.name)  # type: ignore[return-value]


def mean_band(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """On the union of evaluation steps up to the shortest run's end: ``steps``, ``mean``,
    ``low`` and ``high`` (mean -+ std over seeds) of the seeds' returns, linearly
    interpolated."""
    end = min(int(c.steps[-1]) for c in curves)
    steps = np.unique(np.concatenate([c.steps[c.steps <= end] for c in curves]))
    values = np.stack([np.interp(steps, c.steps, c.returns) for c in curves])
    mean, std = values.mean(0), values.std(0)
    return steps, mean, mean - std, mean + std


def mean_spread(values: Sequence[float], at: str = "") -> str:
    """``"550 ± 50 (n=2)"`` (``at`` goes before the count); one seed has no spread:
    ``"450 (n=1)"``."""
    spread = "" if len(values) == 1 else f" ± {np.std(values):.0f}"
    return f"{np.mean(values):.0f}{spread}{at} (n={len(values)})"


def milestone_values(curves: Sequence[Curve], step: int) -> list[float]:
    """The returns of the seeds that have an evaluation at ``step`` (empty if none)."""
    return [v for v in (c.at(step) for c in curves) if v is not None]


def dmc_table(data: dict[str, dict[str, list[Curve]]]) -> str:
    """Markdown: per task and variant, mean +- std over seeds at 100k/500k and at the latest
    evaluation, beside CURL's published scores (and other methods' where known)."""
    lines = [
        "| task | variant | ours 100k | CURL 100k | ours - CURL (100k) | ours 500k | CURL 500k "
        "| ours, latest evaluation | wall clock per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tasks = list(CURL_PAPER) + sorted(set(data) - set(CURL_PAPER))
    for task in tasks:
        paper = CURL_PAPER.get(task, {})
        for variant, curves in (data.get(task) or {DEFAULT_VARIANT: []}).items():
            cells = [task, variant]
            for step in MILESTONES:
                values = milestone_values(curves, step)
                ours = (mean_spread(values) if values
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
                cells.append(mean_spread(last, at=f" at {at}"))
            else:
                cells.append("–")
            cells.append(_wall_clock(curves))
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Environment steps (agent steps x action repeat); ours: mean ± std (ddof 0) "
                 "over seeds of the mean return of the evaluation episodes (deterministic "
                 "policy), at the "
                 f"evaluation within {TOLERANCE:.0%} of the step count; CURL: Laskin et al. "
                 "2020, Table 1 (mean of 10 seeds). Wall clock per run: mean (min-max) over "
                 "seeds of the training episodes' time in train.csv (evaluations excluded; "
                 "the machine and load are in each run's notes).")
    others = [f"{task}: " + ", ".join(f"{m} {v:.0f}" for m, v in methods.items())
              for task, methods in OTHER_METHODS_100K.items() if task in data]
    if others:
        lines.append("Other methods at 100k in the same table: " + "; ".join(others) + ".")
    return "\n".join(lines) + "\n"


def _wall_clock(curves: Sequence[Curve]) -> str:
    """``"86 min (n=1)"`` or ``"70 min (61-82, n=3)"`` over the seeds with a train.csv."""
    minutes = [c.train_seconds / 60 for c in curves if c.train_seconds is not None]
    if not minutes:
        return "–"
    spread = f"{min(minutes):.0f}-{max(minutes):.0f}, " if len(minutes) > 1 else ""
    return f"{np.mean(minutes):.0f} min ({spread}n={len(minutes)})"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_task(ax, task: str, variants: dict[str, list[Curve]]) -> None:
    """Per variant: mean curve, +-std band, thin per-seed lines; the paper's marks on ``ax``."""
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"]
    for index, (variant, curves) in enumerate(variants.items()):
        color = colors[index % len(colors)]
        steps, mean, low, high = mean_band(curves)
        for c in curves:
            ax.plot(c.steps / 1e3, c.returns, color=color, alpha=0.25, linewidth=0.8)
        ax.fill_between(steps / 1e3, low, high, color=color, alpha=0.15)
        label = (f"{variant}: 1 seed" if len(curves) == 1
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
    out: dict[str, list[dict[str, float]]] = {}
    for path in sorted((results / "moco").glob("*/epoch.csv")):
        with path.open(newline="") as handle:
            try:
                rows = [{k: float(v) for k, v in r.items() if v not in ("", None)}
                        for r in csv.DictReader(handle)]
            except (TypeError, ValueError) as error:
                raise UsageError(f"{path}: a value is not a number ({error})") from error
        if rows:
            out[path.parent.name] = rows
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
    root = Path(__file__).resolve().parent / "results"
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(root), help="folder holding dmc/ and moco/")
    parser.add_argument("--out", default=None, help="where PNGs and tables go (default: "
                        "--results)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"results={str(results)!r} "
                         f"{'is not a folder' if results.exists() else 'does not exist'}: give "
                         "the folder holding dmc/<task>/seed_<s>/eval.csv")
    out = Path(args.out) if args.out else results
    check_output_dir("out", out)
    dmc, moco = load_dmc(results), load_moco(results)  # every file is read before writing
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {"plots": [], "tables": []}

    table = out / "dmc_table.md"
    table.write_text(dmc_table(dmc))
    written["tables"].append(str(table))
    written["plots"] += [str(p) for p in plot_dmc(dmc, out)]
    print(table.read_text())
    if not dmc:
        print(f"no runs under {results / 'dmc'} (expected <task>[/<variant>]/seed_<s>/eval.csv); "
              "run scripts/run_curl_benchmark.sh on a GPU")

    if moco:
        table = out / "moco_table.md"
        table.write_text(moco_table(moco))
        written["tables"].append(str(table))
        written["plots"] += [str(p) for p in plot_moco(moco, out)]
        print(table.read_text())
    for path in written["plots"]:
        print(f"wrote {path}")
    return written


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 for a usage error."""
    return run_entry_point(main, argv, prog="experiments.plot_results")


if __name__ == "__main__":
    sys.exit(cli())
