"""Device-side image transforms for pretraining and evaluation (batched, on the batch's device).

Training views: ``uint8 (B, 3k, H, W)`` from the loader -> float ``(B, 3k, size, size)``.
Recipes: ``"v1"`` / ``"v2"`` / ``"crop_color"`` (:class:`~curl_moco.contrastive.augment.
MocoAugment`; ``crop_color`` = v2's colour ops on CURL's random crop), ``"v3"`` (MoCo v3's
asymmetric pair: the first view of every pair is drawn with ``v3_view1``, the second with
``v3_view2``) and ``"crop"`` (CURL's random crop only, what the agent's encoder sees during RL).
Evaluation: centre crop to ``size`` (identity when the decoded image already has that size).

``normalize=True`` (ResNets) subtracts the ImageNet mean and divides by the std per channel (per
frame for stacks); ``normalize=False`` (CURL pixel encoder) keeps float values in [0, 1], which is
what the agent feeds its encoder, so a pretrained pixel encoder sees the same input range.
"""

from __future__ import annotations

import torch
from torch import nn

from curl_moco.contrastive.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MocoAugment,
    center_crop,
    random_crop,
)

AUGMENT_RECIPES: tuple[str, ...] = ("v1", "v2", "v3", "crop_color", "crop")
#: Recipes whose two views differ: (first view's MocoAugment recipe, second view's).
ASYMMETRIC_RECIPES: dict[str, tuple[str, str]] = {"v3": ("v3_view1", "v3_view2")}


class _Normalize(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, channels: int, normalize: bool) -> None:
        super().__init__()
        frames = channels // 3
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN * frames).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD * frames).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float [0, 1] ``(B, C, H, W)`` -> float32, normalised when enabled."""
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std if self.normalize else x


class ViewAugment(nn.Module):
    """One random view per image: ``uint8 (B, C, H, W)`` -> float32 ``(B, C, size, size)``.

    ``forward(x)`` draws a pair's first view, ``forward(x, second=True)`` its second (the same
    recipe, except for the asymmetric ``"v3"``). ``crop_min`` > 0 overrides the smallest crop
    area of the resized-crop recipes."""

    def __init__(self, recipe: str, size: int, channels: int, normalize: bool,
                 backend: str = "fused", crop_min: float = 0.0) -> None:
        super().__init__()
        if recipe not in AUGMENT_RECIPES:
            raise ValueError(f"augment={recipe!r} is not one of {AUGMENT_RECIPES}")
        if channels % 3 != 0:
            raise ValueError(f"channels={channels} must be a multiple of 3 (RGB frames)")
        self.recipe = recipe
        self.size = size
        first, second = ASYMMETRIC_RECIPES.get(recipe, (recipe, recipe))
        self.moco = (MocoAugment(size, first, normalize=normalize, backend=backend,
                                 crop_min=crop_min) if recipe != "crop" else None)
        self.moco_second = (MocoAugment(size, second, normalize=normalize, backend=backend,
                                        crop_min=crop_min) if second != first else None)
        self.norm = _Normalize(channels, normalize)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, second: bool = False) -> torch.Tensor:
        moco = self.moco_second if second and self.moco_second is not None else self.moco
        if moco is not None:
            return moco(x)
        return self.norm(random_crop(x, self.size))


class EvalTransform(nn.Module):
    """Deterministic view for features: centre crop to ``size``, float, normalised when enabled."""

    def __init__(self, size: int, channels: int, normalize: bool) -> None:
        super().__init__()
        self.size = size
        self.norm = _Normalize(channels, normalize)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(center_crop(x, self.size))
