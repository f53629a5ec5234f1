"""MoCo vision pretraining on the shared contrastive core (never imports :mod:`curl_moco.rl`).

- :mod:`.moco`: the method (:class:`MoCo`), built only from :mod:`curl_moco.contrastive` parts.
- :mod:`.data`: image folders and DMC frame folders (decode on CPU workers, uint8).
- :mod:`.transforms`: views and evaluation transforms on the device.
- :mod:`.trainer`: single-process or torchrun/DDP training with kNN monitor and checkpoints.
- :mod:`.evaluate`: kNN, linear probe and state-regression on frozen features.
- :mod:`.export`: torchvision state dict or exchange-format encoder for the agent.

``from curl_moco.pretrain import MocoConfig, train`` runs a pretraining from Python and returns a
:class:`PretrainResult` (``train`` and ``PretrainResult`` are imported on first use).
"""

import importlib
from typing import Any

from curl_moco.pretrain.config import LinearEvalConfig, MocoConfig
from curl_moco.pretrain.moco import MoCo, MocoOutput

_LAZY = {"train": "curl_moco.pretrain.trainer", "PretrainResult": "curl_moco.pretrain.trainer",
         "Trainer": "curl_moco.pretrain.trainer"}

__all__ = ["LinearEvalConfig", "MoCo", "MocoConfig", "MocoOutput", "PretrainResult", "Trainer",
           "train"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'curl_moco.pretrain' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
