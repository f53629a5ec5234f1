"""Weights & Biases as a metric sink of both trainers (``--wandb PROJECT``; extra
``pip install 'curl_moco[wandb]'``).

What goes there: every logged row as ``<group>/<metric>`` (numbers only) plotted against the
trainer's step counter (``env_steps`` or ``optimizer_steps``, declared as the x-axis), the
resolved config (the run's ``config.json``) as the W&B config, and each evaluation video as
``<group>/video``. The W&B files live in ``<run_dir>/wandb/``; the W&B run id is kept in
``<run_dir>/wandb_run_id`` so that a resumed run continues the same W&B run. Rows that a killed
run had logged after its last checkpoint are logged again on resume (as in the CSV files, which
drop the old copies; W&B keeps both points at that step).

Without a network set ``WANDB_MODE=offline`` (``wandb sync <run_dir>/wandb/offline-run-*`` later).
"""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any

from curl_moco.io.errors import UsageError

INSTALL_COMMAND = "pip install 'curl_moco[wandb]'"
#: File in the run folder holding the W&B run id (resume continues that W&B run).
RUN_ID_FILE = "wandb_run_id"
#: Characters W&B does not accept in project names; its longest project name.
_FORBIDDEN = set("/\\#?%:")
_MAX_PROJECT = 128


def check_wandb(project: str | None) -> None:
    """:class:`UsageError` for a project name W&B would refuse, or when the ``wandb`` package
    is missing (naming the install command); nothing for ``None`` (W&B off)."""
    if project is None:
        return
    if not project or len(project) > _MAX_PROJECT or _FORBIDDEN & set(project):
        raise UsageError(f"wandb={project!r} is not a W&B project name: use 1-{_MAX_PROJECT} "
                         "characters without / \\ # ? % :")
    try:
        import wandb  # noqa: F401
    except ImportError as error:
        raise UsageError(f"wandb={project!r}: the wandb package is not installed; install it "
                         f"with {INSTALL_COMMAND} (or pip install wandb), or drop --wandb"
                         ) from error


class WandbSink:
    """A :class:`~curl_moco.io.logger.MetricSink` that logs to a W&B run in ``run_dir``.

    ``config``: the resolved config (dict); ``name``: the W&B run name; ``step_column``: the
    step counter of the rows, used as every metric's x-axis."""

    def __init__(self, project: str, run_dir: str | os.PathLike, config: dict[str, Any], *,
                 name: str, step_column: str, group: str | None = None) -> None:
        check_wandb(project)
        import wandb

        run_dir = Path(run_dir)
        id_file = run_dir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        self.step_column = step_column
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow",
                              dir=str(run_dir), config=config, group=group)
        id_file.write_text(run_id + "\n")
        self.run.define_metric(step_column)
        self.run.define_metric("*", step_metric=step_column)

    def write(self, group: str, step: int, row: dict[str, Any]) -> None:
        data: dict[str, Any] = {
            f"{group}/{key}": value for key, value in row.items()
            if key != self.step_column and isinstance(value, (int, float))
            and not isinstance(value, bool) and math.isfinite(value)}
        data[self.step_column] = int(step)
        self.run.log(data)

    def write_config(self, config: dict[str, Any], step: int = 0) -> None:
        """The resolved config (given at start as well): W&B's run config."""
        self.run.config.update(config, allow_val_change=True)

    def write_video_file(self, group: str, step: int, path: str | os.PathLike) -> None:
        """Log the mp4 at ``path`` as ``<group>/video`` at ``step``."""
        import wandb

        self.run.log({f"{group}/video": wandb.Video(str(path), format="mp4"),
                      self.step_column: int(step)})

    def flush(self) -> None:  # W&B writes in its own process
        pass

    def close(self) -> None:
        self.run.finish()
