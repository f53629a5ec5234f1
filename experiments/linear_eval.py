"""Frozen-feature evaluation of a pretrained (or randomly initialised) backbone.

    python -m experiments.linear_eval --checkpoint runs/mocov2/pixel/seed0/checkpoint.pt
    python -m experiments.linear_eval --checkpoint runs/mocov2/pixel/seed0/checkpoint.pt \
        --random-init
    python -m experiments.linear_eval --random-init --arch resnet18 --data DIR --load-size 84 ...

Reports kNN accuracy and linear-probe accuracy of the class (domain) on the held-out split (by
default the pretraining run's own held-out split), and for DMC frame folders the ridge-regression
R^2 of each domain's physics state. ``--random-init`` with a checkpoint evaluates the same
architecture at random initialisation (the baseline). Prints JSON; ``--json-out`` saves it.

``--protocol linear`` runs MoCo's linear-classification protocol instead (frozen backbone in
eval mode, a linear classifier trained with SGD on augmented images, centre-crop top-1/top-5;
``linear_top1`` is the number to compare with the MoCo papers), ``--protocol all`` both:

    python -m experiments.linear_eval --checkpoint runs/X/checkpoint.pt --protocol linear \
        --lincls-lr 30 --lincls-epochs 100 --lincls-schedule step        # MoCo v1/v2
    python -m experiments.linear_eval --checkpoint runs/X/checkpoint.pt --protocol linear \
        --lincls-batch-size 1024                                          # MoCo v3 ResNet-50

A setting the user can fix prints ``error: ...`` and exits 2.
"""

from __future__ import annotations

# first: a Ctrl-C while torch imports exits 130 without a traceback
import curl_moco.io.quiet_start  # noqa: F401

# isort: split

import json
import sys
from typing import Any

from curl_moco.io.atomic import atomic_write
from curl_moco.io.config import parse_config
from curl_moco.io.console import setup_logging
from curl_moco.io.errors import run_entry_point
from curl_moco.pretrain.config import LinearEvalConfig
from curl_moco.pretrain.evaluate import run_linear_eval


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, evaluate, print and return the results (raises
    :class:`~curl_moco.io.errors.UsageError` for a bad setting; :func:`cli` reports it)."""
    cfg = parse_config(LinearEvalConfig, argv, description=__doc__)
    setup_logging()
    result = run_linear_eval(cfg)
    text = json.dumps(result, indent=2)
    print(text)
    if cfg.json_out:
        atomic_write(cfg.json_out, text + "\n")
    return result


def cli(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 for a usage error."""
    return run_entry_point(main, argv, prog="experiments.linear_eval")


if __name__ == "__main__":
    sys.exit(cli())
