"""MoCo pretraining: ``python -m experiments.pretrain_moco --data DIR --preset mocov2 --arch
resnet18 ...`` in one process (CPU or one GPU), or unchanged under
``torchrun --nproc_per_node N -m experiments.pretrain_moco ...`` (DDP; ``--batch-size`` is global).

Every field of :class:`curl_moco.pretrain.config.MocoConfig` is a flag (``--help`` lists them);
presets (``--preset mocov1|mocov2|mocov3|mocov3_vit``) come from ``experiments/configs/moco.py``
and explicit flags override them. Outputs in ``--run-dir``: config.json, run.json, train.csv,
epoch.csv, tb/, checkpoint.pt (resumed automatically), encoder.pt (+ backbone_torchvision.pt for
ResNets and ViTs; backbone_torchvision_small_input.pt etc. when it does not fit the stock
torchvision model). ``--wandb PROJECT`` also logs to Weights & Biases.
A setting the user can fix prints ``error: ...`` and exits 2. Ctrl-C (SIGTERM, SIGHUP) stops every
rank after the same step, writes a checkpoint, prints the resume command and exits 130 (143, 129).
"""

from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import logging
import os
import sys

from curl_moco.experiments.configs.moco import MOCO_PRESETS
from curl_moco.io.config import parse_config
from curl_moco.io.console import setup_logging
from curl_moco.io.errors import run_entry_point
from curl_moco.pretrain.config import MocoConfig
from curl_moco.pretrain.trainer import PretrainResult, train

PROG = "experiments.pretrain_moco"


def main(argv: list[str] | None = None) -> PretrainResult:
    """Parse ``argv``, pretrain, print the last epoch's metrics and return the result (raises
    :class:`~curl_moco.io.errors.UsageError` for a bad setting; :func:`cli` reports it)."""
    cfg = parse_config(MocoConfig, argv, MOCO_PRESETS, default_preset="mocov2",
                       description=__doc__)
    is_main = int(os.environ.get("RANK", "0")) == 0
    setup_logging(logging.INFO if is_main else logging.WARNING)
    result = train(cfg, entry_point=PROG)
    if is_main:
        print(" ".join([f"step={result.step}",
                        *(f"{k}={v:.4g}" for k, v in result.metrics.items())]))
    return result


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, 2 (usage error) or 130/143/129 (stopped by a signal)."""
    return run_entry_point(main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(cli())
