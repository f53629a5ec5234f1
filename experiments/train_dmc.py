"""Train CURL-SAC from pixels on a DeepMind Control task.

    python -m experiments.train_dmc --preset quickstart            # a few minutes on a CPU
    python -m experiments.train_dmc --task walker-walk --steps 500000 --device cuda

Every field of :class:`curl_moco.rl.config.CurlSacConfig` is a flag (``--help``); presets are in
``experiments/configs/curl_dmc.py``. Running the same command again resumes from the run
directory's checkpoint. A setting the user can fix prints ``error: ...`` and exits 2; Ctrl-C
(SIGTERM, SIGHUP) finishes the current step, writes a checkpoint, prints the resume command and
exits 130 (143, 129).
"""

from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import shlex
import sys

from curl_moco.experiments.configs.curl_dmc import CURL_PRESETS
from curl_moco.io.checks import quote
from curl_moco.io.config import parse_config
from curl_moco.io.console import setup_logging
from curl_moco.io.errors import launch_head, run_entry_point
from curl_moco.rl.config import CurlSacConfig, check_task_override
from curl_moco.rl.trainer import Trainer, TrainResult

PROG = "experiments.train_dmc"
DESCRIPTION = ("CURL-SAC from pixels on DeepMind Control. Step counts are environment steps "
               "(agent steps x action repeat). Presets: 'curl' (paper, default), one per CURL "
               "task, 'quickstart' (CPU, minutes), 'smoke'.")


def summary(result: TrainResult) -> str:
    """The final message: where the logs, checkpoint and evaluation video are."""
    minutes, seconds = divmod(int(result.wall_s), 60)
    lines = []
    if result.stopped_early:
        lines.append(f"stopped at {result.env_steps} environment steps (stop_after); run the "
                     "same command without --stop-after to continue")
    else:
        lines.append(f"done: {result.env_steps} environment steps in {minutes}m{seconds:02d}s"
                     + (f" (resumed at {result.resumed_from})" if result.resumed_from else ""))
    ev = result.last_eval
    if ev is not None:
        lines.append(f"  final evaluation:  return {ev.mean:.1f} +- {ev.std:.1f} over "
                     f"{len(ev.returns)} episodes at {ev.env_steps} steps")
    lines.append(f"  logs (CSV):        {' '.join(quote(p) for p in result.csv_paths)}")
    if result.tensorboard_dir is not None:
        lines.append(f"  tensorboard:       tensorboard --logdir {quote(result.tensorboard_dir)}")
    lines.append(f"  config:            {quote(result.config_path)} (what ran: "
                 f"{quote(result.run_dir / 'run.json')})")
    checkpoint = quote(result.checkpoint) if result.checkpoint else "none"
    lines.append(f"  checkpoint:        {checkpoint}")
    if ev is not None and ev.video is not None:
        lines.append(f"  evaluation video:  {quote(ev.video)}")
    if result.checkpoint is not None and not result.stopped_early:
        lines.append(f"  watch the agent:   {watch_command(result.run_dir)}")
    return "\n".join(lines)


def watch_command(run_dir) -> str:
    """The evaluate command for ``run_dir``, started the way this run was (console command or
    this interpreter with ``-m``)."""
    head = launch_head(PROG)
    if head[0].startswith("curl-moco-"):
        head = ["curl-moco-eval"]
    else:
        head = [*head[:-1], head[-1].rsplit(".", 1)[0] + ".evaluate"]
    return shlex.join([*head, "--run", str(run_dir)])


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit status (see the module docstring)."""
    return run_entry_point(_train, argv, prog=PROG)


def parse(argv: list[str] | None) -> CurlSacConfig:
    """The configuration of command line ``argv`` (flags over presets over a config file)."""
    return parse_config(CurlSacConfig, argv, CURL_PRESETS, default_preset="curl",
                        description=DESCRIPTION, check_overrides=check_task_override)


def check_settings(argv: list[str] | None) -> CurlSacConfig:
    """Everything a run checks before its first step (settings, device, compiler, run folder),
    without training or writing: raises :class:`~curl_moco.io.errors.UsageError`. For launchers
    of many runs (scripts/run_curl_benchmark.sh) that want every mistake before the first."""
    cfg = parse(argv)
    Trainer(cfg).close()  # frees (and removes, still empty) the run folder it claimed
    return cfg


def _train(argv: list[str] | None) -> int:
    setup_logging()
    cfg = parse(argv)  # every setting is checked here and in Trainer, before any work
    trainer = Trainer(cfg)
    trainer.entry_point = PROG
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        trainer.setup()  # refuses a corrupt/truncated/mismatched checkpoint or pretrained encoder
        with logging_redirect_tqdm():
            result = trainer.run()
    finally:
        trainer.close()
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
