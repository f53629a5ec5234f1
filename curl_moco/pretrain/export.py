"""Build backbones from a pretraining config, and export the pretrained query backbone.

Two export formats:

- ResNets: a plain torchvision ``state_dict`` file (``torch.save`` of a dict of tensors) that loads
  with ``strict=True`` into ``torchvision.models.resnet18()`` / ``resnet50()`` whose ``fc`` is
  ``nn.Identity()`` (or deleted keys: the file has no ``fc.*``). ``small_input`` / frame-stack
  variants do not load into the stock model: they load after replacing ``conv1`` (and
  ``maxpool``) the same way, and their file name says so (:func:`torchvision_file_name`,
  e.g. ``backbone_torchvision_small_input.pt``); ``export_encoder --format torchvision``
  refuses them (:func:`torchvision_differences`).
- ViTs: the same kind of file for ``torchvision.models.VisionTransformer(image_size, patch_size,
  12, 12, 384, 1536)`` (ViT-S/16; ViT-B/16: ``torchvision.models.vit_b_16()``) whose ``heads``
  is ``nn.Identity()`` (the file has no ``heads.*``).
- Any backbone, in particular CURL's pixel encoder for the agent's ``--init-encoder``:
  :func:`curl_moco.io.encoder_export.save_encoder_state` with the architecture config
  (``arch``, ``in_channels``, ``image_size``, ``feature_dim``, ``num_layers``, ``num_filters``,
  ``output_activation``) that the agent checks before loading.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curl_moco.contrastive.encoders import is_vit, make_backbone
from curl_moco.io.atomic import atomic_write
from curl_moco.io.encoder_export import save_encoder_state


def arch_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The architecture fields of a pretraining config dict (``MocoConfig`` as a dict)."""
    arch = cfg["arch"]
    out: dict[str, Any] = {"arch": arch, "in_channels": 3 * int(cfg.get("frame_stack", 1)),
                           "image_size": int(cfg["crop_size"]),
                           "normalize": arch != "pixel"}
    if arch == "pixel":
        out.update(feature_dim=int(cfg["feature_dim"]), num_layers=int(cfg["pixel_layers"]),
                   num_filters=int(cfg["pixel_filters"]), output_activation="none")
    elif is_vit(arch):
        out.update(patch_size=int(cfg.get("patch_size", 16)))
    else:
        out.update(small_input=bool(cfg.get("small_input", False)))
    return out


def export_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """:func:`arch_config` plus a ``pretrain`` entry recording the data and split of the run
    (used by ``linear_eval`` to evaluate an exported encoder on the same held-out split)."""
    out = arch_config(cfg)
    out["pretrain"] = {k: cfg.get(k) for k in ("name", "data", "val_data", "load_size",
                                               "val_fraction", "seed", "epochs", "augment")}
    return out


def build_backbone(arch: dict[str, Any]) -> nn.Module:
    """A randomly initialised backbone for an :func:`arch_config` dict."""
    if arch["arch"] == "pixel":
        return make_backbone("pixel", in_channels=arch["in_channels"],
                             image_size=arch["image_size"], feature_dim=arch["feature_dim"],
                             num_layers=arch["num_layers"], num_filters=arch["num_filters"])
    if is_vit(arch["arch"]):
        return make_backbone(arch["arch"], in_channels=arch["in_channels"],
                             image_size=arch["image_size"], patch_size=arch["patch_size"],
                             stop_grad_patch=arch.get("stop_grad_patch", True))
    kw = {"small_input": arch.get("small_input", False)}
    if arch.get("zero_init_residual"):
        kw["zero_init_residual"] = True
    return make_backbone(arch["arch"], in_channels=arch["in_channels"], **kw)


def export_backbone(backbone: nn.Module, arch: dict[str, Any], path: str | os.PathLike) -> Path:
    """Exchange-format export (:func:`save_encoder_state`) of ``backbone`` with its ``arch``."""
    return save_encoder_state(path, backbone, arch)


def torchvision_differences(arch: dict[str, Any]) -> list[str]:
    """How a ResNet/ViT :func:`arch_config` differs from the stock torchvision model its
    torchvision export is meant for (empty: it loads into ``resnet18()`` etc. as it is)."""
    out = []
    if arch.get("small_input"):
        out.append("small_input (3x3 stride-1 conv1, no max-pool)")
    if arch.get("in_channels", 3) != 3:
        out.append(f"in_channels={arch['in_channels']} (frame stack; torchvision expects 3)")
    return out


def torchvision_file_name(arch: dict[str, Any], stem: str = "backbone_torchvision") -> str:
    """``backbone_torchvision.pt`` for a stock model, else a name that says what differs:
    ``backbone_torchvision_small_input_9ch.pt`` (small input, 9 input channels)."""
    parts = [stem]
    if arch.get("small_input"):
        parts.append("small_input")
    if arch.get("in_channels", 3) != 3:
        parts.append(f"{arch['in_channels']}ch")
    return "_".join(parts) + ".pt"


def export_torchvision(backbone: nn.Module, path: str | os.PathLike) -> Path:
    """Plain torchvision state dict of a ResNet (no ``fc.*`` keys) or ViT backbone (no
    ``heads.*``), via ``torch.save``."""
    if not hasattr(backbone, "torchvision_state_dict"):
        raise ValueError(f"arch={type(backbone).__name__} is not a torchvision ResNet or ViT; "
                         "export it with export_backbone (format 'encoder') instead")
    state = {k: v.detach().cpu().clone() for k, v in backbone.torchvision_state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write(path, buffer.getbuffer())  # disk full: no partial file left
