"""Batched image augmentations on tensors (on whatever device the batch lives on).

- :func:`random_crop` / :func:`crop_at` / :func:`center_crop`: CURL's crops of frame stacks
  ``(B, 3k, H, W)``; one offset per sample shared by all channels; uint8 or float.
- :class:`MocoAugment`: MoCo v1/v2 augmentation with kornia (resized crop, colour jitter,
  greyscale, blur, flip) -> normalised float ``(B, 3k, size, size)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch
from kornia.augmentation.container.params import ParamItem
from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
RECIPES: tuple[str, ...] = ("v1", "v2")


def _check_crop(x: torch.Tensor, size: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    if size < 1:
        raise ValueError(f"crop size={size} must be >= 1")
    height, width = x.shape[-2:]
    if size > height or size > width:
        raise ValueError(f"crop size={size} is larger than the image ({height}x{width})")


def crop_at(x: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``x (B, C, H, W)`` to ``(B, C, size, size)`` at ``offsets (B, 2)`` = (top, left).

    Sample ``b`` gives ``x[b, :, top:top + size, left:left + size]``. On accelerators: one gather
    over a strided window view (no Python loop, no host sync). On the CPU: one slice copy per
    sample into a preallocated output, which measured 2-4x faster there than the gather
    (experiments/bench/README.md). Works for any dtype. Offsets must lie in
    ``[0, H - size] x [0, W - size]`` (not checked, to avoid a device sync).
    """
    _check_crop(x, size)
    if offsets.shape != (x.shape[0], 2):
        raise ValueError(f"offsets must be (B={x.shape[0]}, 2), got {tuple(offsets.shape)}")
    offsets = offsets.to(device=x.device, dtype=torch.long)
    if x.device.type == "cpu":
        out = x.new_empty((x.shape[0], x.shape[1], size, size))
        for b, (top, left) in enumerate(offsets.tolist()):
            out[b] = x[b, :, top : top + size, left : left + size]
        return out
    # windows[b, c, i, j] is the (size, size) window with top-left corner (i, j): a view, no copy.
    windows = x.unfold(2, size, 1).unfold(3, size, 1)
    batch = torch.arange(x.shape[0], device=x.device)
    # Advanced indices on dims 0, 2, 3 around a slice: the result is (B, C, size, size).
    return windows[batch, :, offsets[:, 0], offsets[:, 1]]


def random_crop(
    x: torch.Tensor,
    size: int,
    generator: torch.Generator | None = None,
    return_offsets: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random ``size x size`` crop of each image of ``x (B, C, H, W)`` -> ``(B, C, size, size)``.

    One offset per sample, shared by all C channels (so by all stacked frames), uniform over
    ``[0, H - size] x [0, W - size]`` inclusive. Offsets are drawn on ``generator``'s device (or
    on x's device with the global RNG) and the crop runs on x's device. With
    ``return_offsets=True`` also returns ``offsets (B, 2)`` long = (top, left).
    """
    _check_crop(x, size)
    batch, _, height, width = x.shape
    device = generator.device if generator is not None else x.device
    top = torch.randint(0, height - size + 1, (batch,), generator=generator, device=device)
    left = torch.randint(0, width - size + 1, (batch,), generator=generator, device=device)
    offsets = torch.stack([top, left], dim=1).to(x.device, non_blocking=True)
    crops = crop_at(x, offsets, size)
    return (crops, offsets) if return_offsets else crops


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` window of ``x (..., H, W)`` (a view; top = (H - size) // 2)."""
    if x.dim() < 2:
        raise ValueError(f"expected images (..., H, W), got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if size < 1 or size > height or size > width:
        raise ValueError(f"crop size={size} must be in [1, min(H, W)] for a {height}x{width} image")
    top, left = (height - size) // 2, (width - size) // 2
    return x[..., top : top + size, left : left + size]


def default_blur_kernel_size(size: int) -> int:
    """Odd Gaussian kernel side of about 10 % of the output image (SimCLR/MoCo v2), at least 3."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


# Parameter entries of kornia 0.9 augmentations that are not per-sample.
_UNBATCHED_PARAMS = frozenset({"order", "forward_input_shape"})


class MocoAugment(nn.Module):
    """MoCo augmentation on a batch: ``(B, 3k, H, W)`` uint8 or float [0, 1] -> float
    ``(B, 3k, size, size)``, normalised with ``mean``/``std`` when ``normalize``.

    ``recipe="v1"``: RandomResizedCrop(scale 0.2-1), RandomGrayscale(0.2),
    ColorJitter(0.4, 0.4, 0.4, 0.4), horizontal flip.
    ``recipe="v2"``: RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8,
    RandomGrayscale(0.2), GaussianBlur(sigma 0.1-2, p=0.5, kernel ``blur_kernel_size``, default
    about 10 % of ``size``), horizontal flip.

    Frame stacks (C = 3k): the batch is viewed as ``(B * k, 3, H, W)`` and kornia's parameters,
    drawn once per sample, are repeated for the k frames, so all frames of a sample get the same
    crop, flip, jitter, greyscale and blur. Randomness comes from torch's global RNG (kornia's),
    so results are reproducible under ``torch.manual_seed`` (on the device the module lives on;
    it moves itself to the input's device). ``cropping_mode="resample"`` crops
    all images with one batched warp (kornia's ``"slice"`` loops over the batch).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        size: int,
        recipe: str = "v2",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
        blur_kernel_size: int | None = None,
        cropping_mode: str = "resample",
    ) -> None:
        super().__init__()
        if recipe not in RECIPES:
            raise ValueError(f"recipe={recipe!r} is not one of {RECIPES}")
        if size < 1:
            raise ValueError(f"size={size} must be >= 1")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean={mean} and std={std} must have 3 entries, std > 0")
        kernel = default_blur_kernel_size(size) if blur_kernel_size is None else blur_kernel_size
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"blur_kernel_size={kernel} must be a positive odd number")
        self.size = size
        self.recipe = recipe
        self.normalize = normalize
        crop = K.RandomResizedCrop((size, size), scale=(0.2, 1.0), cropping_mode=cropping_mode)
        flip = K.RandomHorizontalFlip(p=0.5)
        if recipe == "v1":
            ops: list[nn.Module] = [
                crop,
                K.RandomGrayscale(p=0.2),
                K.ColorJitter(0.4, 0.4, 0.4, 0.4, p=1.0),
                flip,
            ]
        else:
            ops = [
                crop,
                K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
                K.RandomGrayscale(p=0.2),
                K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=0.5),
                flip,
            ]
        self.pipeline = K.AugmentationSequential(*ops)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @staticmethod
    def _repeat_params(params: list[ParamItem], frames: int, shape: torch.Size) -> list[ParamItem]:
        """Repeat each per-sample parameter ``frames`` times (sample-major, like the reshape)."""
        out = []
        for item in params:
            data = {}
            for key, value in item.data.items():
                if key == "forward_input_shape":
                    data[key] = torch.tensor(tuple(shape), device=value.device, dtype=value.dtype)
                elif key in _UNBATCHED_PARAMS or not isinstance(value, torch.Tensor):
                    data[key] = value
                elif value.dim() == 0 or value.shape[0] * frames != shape[0]:
                    raise RuntimeError(
                        f"cannot repeat kornia parameter {item.name}.{key} of shape "
                        f"{tuple(value.shape)} per frame (unsupported kornia version?)"
                    )
                else:
                    data[key] = value.repeat_interleave(frames, dim=0)
            out.append(ParamItem(item.name, data))
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3k, H, W)`` uint8 or float [0, 1] -> float32 ``(B, 3k, size, size)``."""
        if x.dim() != 4 or x.shape[1] % 3 != 0:
            raise ValueError(f"expected images (B, 3k, H, W), got shape {tuple(x.shape)}")
        if self.mean.device != x.device:
            self.to(x.device)  # kornia draws its parameters on the module's device
        batch, channels, height, width = x.shape
        frames = channels // 3
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        flat = x.reshape(batch * frames, 3, height, width)
        params = self.pipeline.forward_parameters(torch.Size((batch, 3, height, width)))
        if frames > 1:
            params = self._repeat_params(params, frames, flat.shape)
        out = self.pipeline(flat, params=params)
        if self.normalize:
            out = (out - self.mean) / self.std
        return out.reshape(batch, channels, self.size, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, recipe={self.recipe!r}, normalize={self.normalize}"
