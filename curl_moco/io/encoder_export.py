"""Exchange format for pretrained encoders: the pretraining path writes it, the agent reads it.

An exported encoder is a checkpoint of kind ``"encoder"`` whose config describes the
architecture (``arch``, ``in_channels``, ``image_size``, ``feature_dim``, ...) and whose payload is
``{"state_dict": ...}``. Neither side imports the other; this file is the contract.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curl_moco.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ENCODER_KIND = "encoder"
#: The pretraining flag that sets each architecture key (named in mismatch errors).
PRETRAIN_FLAGS: dict[str, str] = {
    "image_size": "--crop-size", "in_channels": "--frame-stack (3 channels per frame)",
    "feature_dim": "--feature-dim", "num_layers": "--pixel-layers",
    "num_filters": "--pixel-filters", "arch": "--arch",
}


def save_encoder_state(path: str | os.PathLike, encoder: nn.Module,
                       arch_config: dict[str, Any]) -> Path:
    """Write ``encoder``'s parameters and buffers (on the CPU) with its architecture config."""
    if "arch" not in arch_config:
        raise ValueError("arch_config must name the architecture under 'arch'")
    state = {key: value.detach().cpu() for key, value in encoder.state_dict().items()}
    return save_checkpoint(path, {"state_dict": state}, kind=ENCODER_KIND, config=arch_config)


def load_encoder_state(path: str | os.PathLike,
                       expected: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The exported state dict, after checking every key of ``expected`` against the file's config.

    Raises :class:`CheckpointError` listing every mismatch at once, e.g. ``encoder was
    pretrained with in_channels=3, num_layers=2; this model needs in_channels=9 (pretraining
    flag --frame-stack ...), num_layers=4 (pretraining flag --pixel-layers)``.
    """
    loaded = load_checkpoint(path, kind=ENCODER_KIND)
    saved = loaded["config"]
    mismatched = [key for key, want in expected.items() if saved.get(key) != want]
    if mismatched:
        have = ", ".join(f"{key}={saved.get(key)!r}" for key in mismatched)
        need = ", ".join(
            f"{key}={expected[key]!r}"
            + (f" (pretraining flag {PRETRAIN_FLAGS[key]})" if key in PRETRAIN_FLAGS else "")
            for key in mismatched)
        raise CheckpointError(f"{path}: encoder was pretrained with {have}; this model needs "
                              f"{need}")
    return loaded["payload"]["state_dict"]


def load_encoder_into(module: nn.Module, path: str | os.PathLike,
                      expected: dict[str, Any]) -> None:
    """Load an exported encoder into ``module`` with ``strict=True``; mismatched tensors are refused
    with the key names."""
    state = load_encoder_state(path, expected)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: encoder weights do not fit this model: {error}") from error
