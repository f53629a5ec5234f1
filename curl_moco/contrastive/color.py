"""Colour augmentation as one affine colour transform per image ("colour twist").

Brightness, contrast, saturation, hue rotation and greyscale are all affine maps of the RGB
vector of every pixel, so any chain of them is ``rgb -> M @ rgb + o`` with one ``M (3, 3)`` and
``o (3,)`` per image. :func:`sample_color_jitter` draws MoCo's jitter chain per image,
:func:`color_twist` composes it into ``(M, o)`` and :func:`apply_color_twist` applies it to a
whole batch in one batched matrix product, then clamps to ``[0, 1]`` once.

Definitions (torchvision's, on float RGB in [0, 1]; ``gray = 0.2989 R + 0.587 G + 0.114 B``):

- brightness ``b``: ``x -> b x``
- contrast ``c``: ``x -> c x + (1 - c) mean(gray(x))`` (the image's mean grey level)
- saturation ``s``: ``x -> s x + (1 - s) gray(x)``
- hue ``h`` (fraction of a turn): rotation by ``2 pi h`` about the grey axis ``(1, 1, 1)`` of
  RGB space (the linear "hue rotate" of SVG/CSS filters). The hue angle moves by about ``360 h``
  degrees as with torchvision's HSV shift, but the rotation keeps chroma and ``(R + G + B) / 3``
  where the HSV shift keeps ``max`` and ``min`` of the channels, so the two agree only in part:
  on random mid-range colours their mean difference is 70-90 % of the HSV shift's own mean size
  (``tests/test_contrastive_color.py``). For torchvision's exact semantics use the kornia
  backend of :class:`~curl_moco.contrastive.augment.MocoAugment`.
- greyscale: ``x -> gray(x)`` in all three channels.

Differences from applying torchvision's ops one at a time: no clamping between the ops (one
clamp at the end), and the hue rotation above. Shapes: ``M (N, 3, 3)``, ``o (N, 3)``,
images ``(N, 3, H, W)`` float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

GRAY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.587, 0.114)  # torchvision's
JITTER_OPS: tuple[str, ...] = ("brightness", "contrast", "saturation", "hue")


def _gray_row(device: torch.device) -> torch.Tensor:
    return torch.tensor(GRAY_WEIGHTS, device=device)


def grayscale_matrix(device: torch.device) -> torch.Tensor:
    """``(3, 3)``: every output channel is the grey level."""
    return _gray_row(device).expand(3, 3).clone()


def saturation_matrices(factor: torch.Tensor) -> torch.Tensor:
    """``factor (N,)`` -> ``(N, 3, 3)`` = ``s I + (1 - s) gray``."""
    eye = torch.eye(3, device=factor.device)
    s = factor.view(-1, 1, 1)
    return s * eye + (1 - s) * grayscale_matrix(factor.device)


def hue_matrices(shift: torch.Tensor) -> torch.Tensor:
    """``shift (N,)`` in turns -> ``(N, 3, 3)``: rotation by ``2 pi shift`` about the grey axis.

    Rodrigues' formula about ``k = (1, 1, 1) / sqrt(3)``; a positive shift turns red towards
    yellow and green, as in HSV."""
    angle = (2 * math.pi * shift).view(-1, 1, 1)
    k = torch.full((3,), 1 / math.sqrt(3), device=shift.device)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]],
                         device=shift.device) / math.sqrt(3)
    eye = torch.eye(3, device=shift.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return cos * eye + sin * cross + (1 - cos) * torch.outer(k, k)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


@dataclass
class ColorJitterParams:
    """Per-image draws of a colour chain (all ``(N,)`` except ``order (N, 4)``).

    ``order[i]`` lists indices into :data:`JITTER_OPS` in the order image ``i`` applies them;
    ``jittered`` / ``greyed`` say whether image ``i`` gets the jitter / the greyscale."""

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    order: torch.Tensor
    jittered: torch.Tensor
    greyed: torch.Tensor

    def repeat_interleave(self, repeats: int) -> ColorJitterParams:
        """Each image's draws ``repeats`` times (one per frame of a frame stack)."""
        return ColorJitterParams(*(getattr(self, f.name).repeat_interleave(repeats, dim=0)
                                   for f in fields(self)))


def sample_color_jitter(n: int, brightness: float, contrast: float, saturation: float,
                        hue: float, jitter_p: float, grayscale_p: float,
                        generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> ColorJitterParams:
    """Draw torchvision's ColorJitter + RandomGrayscale parameters for ``n`` images: factors
    ``U[1 - x, 1 + x]`` (clamped at 0) for brightness, contrast and saturation, hue shift
    ``U[-hue, hue]`` turns, a random order of the four per image, the jitter applied with
    probability ``jitter_p`` and greyscale with ``grayscale_p``."""
    device = torch.device(device)
    return ColorJitterParams(
        brightness=_uniform(n, 1 - brightness, 1 + brightness, generator, device).clamp_min(0),
        contrast=_uniform(n, 1 - contrast, 1 + contrast, generator, device).clamp_min(0),
        saturation=_uniform(n, 1 - saturation, 1 + saturation, generator, device).clamp_min(0),
        hue=_uniform(n, -hue, hue, generator, device),
        order=torch.argsort(torch.rand(n, len(JITTER_OPS), generator=generator, device=device),
                            dim=1),
        jittered=torch.rand(n, generator=generator, device=device) < jitter_p,
        greyed=torch.rand(n, generator=generator, device=device) < grayscale_p,
    )


def color_twist(params: ColorJitterParams, mean_rgb: torch.Tensor, grayscale_first: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose each image's chain into ``(M (N, 3, 3), o (N, 3))``.

    ``mean_rgb (N, 3)``: each image's mean colour; contrast blends towards the mean grey level of
    the image *as transformed so far*, which for an affine chain is ``gray . (M mean_rgb + o)``.
    Greyscale comes after the jitter (MoCo v2) or before it (``grayscale_first``, MoCo v1)."""
    n, device = mean_rgb.shape[0], mean_rgb.device
    matrix = torch.eye(3, device=device).repeat(n, 1, 1)
    offset = torch.zeros(n, 3, device=device)
    linear = {
        "brightness": params.brightness.view(-1, 1, 1) * torch.eye(3, device=device),
        "saturation": saturation_matrices(params.saturation),
        "hue": hue_matrices(params.hue),
    }
    gray = _gray_row(device)
    greyscale = grayscale_matrix(device).expand(n, 3, 3)

    def then(step: torch.Tensor, offset_step: torch.Tensor | None, where: torch.Tensor) -> None:
        nonlocal matrix, offset
        new_offset = (step @ offset.unsqueeze(2)).squeeze(2)
        if offset_step is not None:
            new_offset = new_offset + offset_step
        matrix = torch.where(where.view(-1, 1, 1), step @ matrix, matrix)
        offset = torch.where(where.view(-1, 1), new_offset, offset)

    if grayscale_first:
        then(greyscale, None, params.greyed)
    for position in range(len(JITTER_OPS)):
        for index, name in enumerate(JITTER_OPS):
            where = params.jittered & (params.order[:, position] == index)
            if name == "contrast":
                c = params.contrast.view(-1, 1)
                mean_gray = ((matrix @ mean_rgb.unsqueeze(2)).squeeze(2) + offset) @ gray
                then(c.view(-1, 1, 1) * torch.eye(3, device=device),
                     (1 - c) * mean_gray.view(-1, 1), where)
            else:
                then(linear[name], None, where)
    if not grayscale_first:
        then(greyscale, None, params.greyed)
    return matrix, offset


def apply_color_twist(images: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor
                      ) -> torch.Tensor:
    """``images (N, 3, H, W)`` float in [0, 1] -> ``clamp(M @ rgb + o, 0, 1)``, same shape."""
    n, channels, height, width = images.shape
    if channels != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
    flat = images.reshape(n, 3, height * width)
    out = torch.baddbmm(offset.unsqueeze(2), matrix, flat)
    return out.clamp_(0, 1).view(n, 3, height, width)
