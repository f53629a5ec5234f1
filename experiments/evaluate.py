"""Watch and measure a trained CURL-SAC agent: play episodes, write returns and videos.

    python -m experiments.evaluate --run runs/curl/cartpole-swingup/seed1
    python -m experiments.evaluate --run RUN --episodes 4 --video grid --agent-view --overlay --gif
    python -m experiments.evaluate --run RUN --camera 0 1 --video-size 320 --stochastic --seed 7
    python -m experiments.evaluate --run RUN --task cartpole-balance     # same action space

Writes ``episodes.csv``, ``summary.json`` and the videos into ``--out`` (default
``<run>/evaluate/step_<N>``). By default the episodes are those of the training run's evaluation
at the checkpoint, so the mean return equals that row of ``eval.csv``. Every field of
:class:`curl_moco.rl.evaluation.EvaluateConfig` is a flag (``--help``). A setting the user can
fix prints ``error: ...`` and exits 2 before anything is written.
"""

from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import sys

from curl_moco.io.config import parse_config
from curl_moco.io.console import setup_logging
from curl_moco.io.errors import run_entry_point
from curl_moco.rl.evaluation import EvaluateConfig, EvaluationReport, describe, evaluate_run

PROG = "experiments.evaluate"
DESCRIPTION = ("Evaluate and record a trained CURL-SAC agent (a train_dmc run folder): returns, "
               "summary, videos with several cameras, the agent's view and an overlay.")


def main(argv: list[str] | None = None) -> EvaluationReport:
    """Parse ``argv``, evaluate and print the summary (raises
    :class:`~curl_moco.io.errors.UsageError` for a bad setting; :func:`cli` reports it)."""
    setup_logging()
    cfg = parse_config(EvaluateConfig, argv, description=DESCRIPTION)
    report = evaluate_run(cfg)
    print(describe(report))
    return report


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 for a setting the user can fix."""
    return run_entry_point(main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(cli())
