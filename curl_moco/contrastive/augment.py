"""Batched image augmentations on tensors (on whatever device the batch lives on).

- :func:`random_crop` / :func:`crop_at` / :func:`center_crop`: CURL's crops of frame stacks
  ``(B, 3k, H, W)``; one offset per sample shared by all channels; uint8 or float.
- :func:`random_shift`: DrQ's random shift (replicate pad, crop back to the input size).
- :func:`sample_resized_crops` / :func:`resized_crop` / :func:`gaussian_blur` /
  :func:`solarize`: batched RandomResizedCrop (+ flip), per-image-sigma Gaussian blur,
  per-image solarization.
- :class:`MocoAugment`: MoCo v1/v2 augmentation and each of MoCo v3's two views (resized crop,
  colour jitter, greyscale, blur, solarize, flip) -> normalised float ``(B, 3k, size, size)``;
  fused batched ops or kornia.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.augmentation.container.params import ParamItem
from torch import nn

from curl_moco.contrastive.color import apply_color_twist, color_twist, sample_color_jitter

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_crop(x: torch.Tensor, size: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    if size < 1:
        raise ValueError(f"crop size={size} must be >= 1")
    height, width = x.shape[-2:]
    if size > height or size > width:
        raise ValueError(f"crop size={size} is larger than the image ({height}x{width})")


def _numpy_view(x: torch.Tensor):
    """``x`` as a NumPy array sharing its memory, or None (gradients, dtypes NumPy lacks)."""
    if x.requires_grad:
        return None
    try:
        return x.numpy()
    except (TypeError, RuntimeError):
        return None


def crop_at(x: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``x (B, C, H, W)`` to ``(B, C, size, size)`` at ``offsets (B, 2)`` = (top, left).

    Sample ``b`` gives ``x[b, :, top:top + size, left:left + size]``. On accelerators: one gather
    over a strided window view (no Python loop, no host sync). On the CPU: one slice copy per
    sample into a preallocated output (by NumPy, single-threaded, when the tensor allows), which
    measured 2-4x faster there than the gather (experiments/bench/README.md). Works for any
    dtype. Offsets must lie in ``[0, H - size] x [0, W - size]`` (not checked, to avoid a device
    sync).
    """
    _check_crop(x, size)
    if offsets.shape != (x.shape[0], 2):
        raise ValueError(f"offsets must be (B={x.shape[0]}, 2), got {tuple(offsets.shape)}")
    offsets = offsets.to(device=x.device, dtype=torch.long)
    if x.device.type == "cpu":
        out = x.new_empty((x.shape[0], x.shape[1], size, size))
        # NumPy's copies run on the calling thread; torch's slice copies each open a parallel
        # region, and with all cores busy (another run, a test suite) every one of those waits
        # for a descheduled worker: 128 crops measured 0.7 s instead of 5 ms on 2 busy cores.
        src, dst = _numpy_view(x), _numpy_view(out)
        for b, (top, left) in enumerate(offsets.tolist()):
            if src is not None:
                dst[b] = src[b, :, top : top + size, left : left + size]
            else:
                out[b] = x[b, :, top : top + size, left : left + size]
        return out
    # windows[b, c, i, j] is the (size, size) window with top-left corner (i, j): a view, no copy.
    windows = x.unfold(2, size, 1).unfold(3, size, 1)
    batch = torch.arange(x.shape[0], device=x.device)
    # Advanced indices on dims 0, 2, 3 around a slice: the result is (B, C, size, size).
    return windows[batch, :, offsets[:, 0], offsets[:, 1]]


#: Augmentations of RL frame stacks: "crop" (CURL: random crops) or "shift" (DrQ: pad, crop back).
STACK_AUGMENTS: tuple[str, ...] = ("crop", "shift")


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


def random_shift(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """DrQ's random shift of square images ``x (B, C, S, S)`` -> ``(B, C, S, S)``, any dtype:
    pad each side by ``pad`` pixels repeating the border (replicate padding), then take a random
    ``S x S`` crop (:func:`random_crop`, so a shift of -pad..+pad pixels per axis, one per
    sample, shared by all channels)."""
    _check_crop(x, 1)
    side = x.shape[-1]
    if x.shape[-2] != side:
        raise ValueError(f"random_shift needs square images, got {tuple(x.shape[-2:])}")
    if pad < 0:
        raise ValueError(f"shift pad={pad} must be >= 0")
    index = torch.arange(-pad, side + pad, device=x.device).clamp_(0, side - 1)
    padded = x.index_select(2, index).index_select(3, index)  # replicate padding
    return random_crop(padded, side, generator=generator)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` window of ``x (..., H, W)`` (a view; top = (H - size) // 2)."""
    if x.dim() < 2:
        raise ValueError(f"expected images (..., H, W), got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if size < 1 or size > height or size > width:
        raise ValueError(f"crop size={size} must be in [1, min(H, W)] for a {height}x{width} image")
    top, left = (height - size) // 2, (width - size) // 2
    return x[..., top : top + size, left : left + size]


def sample_resized_crops(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    attempts: int = 10,
) -> torch.Tensor:
    """torchvision's RandomResizedCrop box draw for ``n`` images, vectorised -> ``(n, 4)`` float
    ``(left, top, box_width, box_height)`` in pixels (sub-pixel boxes, no rounding).

    Area fraction ``U[scale]``, log aspect ratio uniform in ``log(ratio)``, position uniform;
    the first of ``attempts`` draws that fits the image is used; if none fits, the largest
    centred box with aspect ratio clamped to ``ratio`` (torchvision's fallback)."""
    device = torch.device(device)
    area = height * width * (scale[0] + (scale[1] - scale[0])
                             * torch.rand(n, attempts, generator=generator, device=device))
    log_ratio = (math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0]))
                 * torch.rand(n, attempts, generator=generator, device=device))
    aspect = torch.exp(log_ratio)
    box_w, box_h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (box_w <= width) & (box_h <= height)
    first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)  # first fitting attempt
    box_w, box_h = box_w.gather(1, first).squeeze(1), box_h.gather(1, first).squeeze(1)
    any_fit = fits.any(dim=1)
    image_ratio = width / height
    if image_ratio < ratio[0]:
        fallback_w, fallback_h = float(width), width / ratio[0]
    elif image_ratio > ratio[1]:
        fallback_w, fallback_h = height * ratio[1], float(height)
    else:
        fallback_w, fallback_h = float(width), float(height)
    box_w = torch.where(any_fit, box_w, torch.full_like(box_w, fallback_w))
    box_h = torch.where(any_fit, box_h, torch.full_like(box_h, fallback_h))
    left = (width - box_w) * torch.rand(n, generator=generator, device=device)
    top = (height - box_h) * torch.rand(n, generator=generator, device=device)
    left = torch.where(any_fit, left, (width - box_w) / 2)
    top = torch.where(any_fit, top, (height - box_h) / 2)
    return torch.stack([left, top, box_w, box_h], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop ``boxes (N, 4)`` = (left, top, width, height) pixels out of ``x (N, C, H, W)`` and
    resize each to ``(size, size)`` by bilinear sampling, mirrored left-right where
    ``flip (N,)`` is True: one batched ``grid_sample`` for all images -> float ``(N, C, size,
    size)`` (uint8 input is converted to float with its values kept)."""
    n, _, height, width = x.shape
    left, top, box_w, box_h = boxes.to(device=x.device, dtype=torch.float32).unbind(1)
    scale_x, scale_y = box_w / width, box_h / height
    if flip is not None:
        scale_x = torch.where(flip.to(x.device), -scale_x, scale_x)
    # Output pixel centres in [-1, 1] (align_corners=False) mapped to input coordinates; the map
    # is axis-aligned, so the grid is an outer sum (cheaper than affine_grid's matrix product).
    centres = (2 * torch.arange(size, device=x.device, dtype=torch.float32) + 1) / size - 1
    grid_x = scale_x[:, None] * centres + ((2 * left + box_w) / width - 1)[:, None]  # (N, size)
    grid_y = scale_y[:, None] * centres + ((2 * top + box_h) / height - 1)[:, None]
    grid = torch.stack([grid_x[:, None, :].expand(n, size, size),
                        grid_y[:, :, None].expand(n, size, size)], dim=3)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image of ``x (N, C, H, W)`` float with its own ``sigma (N,)`` (pixels): a
    separable ``kernel_size`` Gaussian with reflect padding (torchvision's GaussianBlur), as two
    grouped convolutions over all N * C planes at once."""
    n, channels, height, width = x.shape
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size={kernel_size} must be a positive odd number")
    radius = kernel_size // 2
    if radius >= min(height, width):
        raise ValueError(f"kernel_size={kernel_size} is too large for {height}x{width} images")
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma.to(x.dtype).view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    planes = F.pad(x.reshape(1, n * channels, height, width), (radius,) * 4, mode="reflect")
    planes = F.conv2d(planes, kernel.view(-1, 1, kernel_size, 1), groups=n * channels)
    planes = F.conv2d(planes, kernel.view(-1, 1, 1, kernel_size), groups=n * channels)
    return planes.view(n, channels, height, width)


#: Solarization inverts values at or above this level (PIL's 128 of 255 for uint8 images, which
#: is the same cut for every value that came from uint8; torchvision's and kornia's 0.5).
SOLARIZE_THRESHOLD = 0.5


def solarize(x: torch.Tensor, selected: torch.Tensor,
             threshold: float = SOLARIZE_THRESHOLD) -> torch.Tensor:
    """Solarize the images of ``x (N, C, H, W)`` float in [0, 1] where ``selected (N,)`` is
    True: values ``>= threshold`` become ``1 - value`` (BYOL's / MoCo v3's Solarize)."""
    invert = selected.to(x.device).view(-1, *([1] * (x.dim() - 1))) & (x >= threshold)
    return torch.where(invert, 1.0 - x, x)


def default_blur_kernel_size(size: int) -> int:
    """Odd Gaussian kernel side of about 10 % of the output image (SimCLR/MoCo v2), at least 3."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


# Parameter entries of kornia 0.9 augmentations that are not per-sample.
_UNBATCHED_PARAMS = frozenset({"order", "forward_input_shape"})
AUGMENT_BACKENDS: tuple[str, ...] = ("fused", "kornia")


@dataclass(frozen=True)
class MocoRecipe:
    """Strengths and probabilities of one MoCo augmentation recipe."""

    jitter: tuple[float, float, float, float]  # brightness, contrast, saturation, hue
    jitter_p: float
    grayscale_p: float
    grayscale_first: bool  # v1 greys before the jitter, v2 after
    blur_p: float
    scale: tuple[float, float] = (0.2, 1.0)
    solarize_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    flip_p: float = 0.5
    geometry: str = "resized_crop"  # or "crop": CURL's random crop (translation only)


MOCO_RECIPES: dict[str, MocoRecipe] = {
    "v1": MocoRecipe(jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0, grayscale_p=0.2,
                     grayscale_first=True, blur_p=0.0),
    "v2": MocoRecipe(jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, grayscale_p=0.2,
                     grayscale_first=False, blur_p=0.5),
    # v2's colour ops on CURL's random crop: no rescale or flip, which would blur exactly what
    # state regression and control need (position, scale, left/right)
    "crop_color": MocoRecipe(jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, grayscale_p=0.2,
                             grayscale_first=False, blur_p=0.5, flip_p=0.0, geometry="crop"),
    # MoCo v3 = BYOL's asymmetric pair: saturation 0.2, crops down to 8 %, the first view always
    # blurred, the second rarely blurred and sometimes solarized
    "v3_view1": MocoRecipe(jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2,
                           grayscale_first=False, blur_p=1.0, scale=(0.08, 1.0)),
    "v3_view2": MocoRecipe(jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2,
                           grayscale_first=False, blur_p=0.1, scale=(0.08, 1.0), solarize_p=0.2),
    # training views of the linear-classification protocol: RandomResizedCrop + flip only
    "crop_flip": MocoRecipe(jitter=(0.0, 0.0, 0.0, 0.0), jitter_p=0.0, grayscale_p=0.0,
                            grayscale_first=False, blur_p=0.0, scale=(0.08, 1.0)),
}
RECIPES: tuple[str, ...] = tuple(MOCO_RECIPES)


class MocoAugment(nn.Module):
    """MoCo augmentation on a batch: ``(B, 3k, H, W)`` uint8 or float [0, 1] -> float
    ``(B, 3k, size, size)``, normalised with ``mean``/``std`` when ``normalize``.

    ``recipe="v1"``: RandomResizedCrop(scale 0.2-1), RandomGrayscale(0.2),
    ColorJitter(0.4, 0.4, 0.4, 0.4), horizontal flip.
    ``recipe="v2"``: RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8,
    RandomGrayscale(0.2), GaussianBlur(sigma 0.1-2, p=0.5, kernel ``blur_kernel_size``, default
    about 10 % of ``size``), horizontal flip.
    ``recipe="crop_color"``: v2's colour jitter, greyscale and blur after CURL's random crop
    (translation only: no rescale, no flip), for frames whose positions matter.
    ``recipe="v3_view1"`` / ``"v3_view2"``: MoCo v3's two views (BYOL's recipe):
    RandomResizedCrop(scale 0.08-1), ColorJitter(0.4, 0.4, 0.2, 0.1) with p=0.8,
    RandomGrayscale(0.2), GaussianBlur with p=1.0 / 0.1, Solarize (:func:`solarize`) with
    p=0 / 0.2, horizontal flip. ``recipe="crop_flip"``: RandomResizedCrop(0.08-1) + flip (the
    linear-classification training view). ``crop_min`` > 0 replaces the lower end of the crop's
    area range (MoCo v3 ResNets: 0.2).

    ``backend="fused"`` (default): a handful of batched ops for the whole batch: one
    ``grid_sample`` does crop, resize and flip (:func:`resized_crop`), one batched matrix product
    the whole colour chain (:mod:`curl_moco.contrastive.color`: no clamping between the colour
    ops, hue as a rotation about the grey axis), and two grouped convolutions the blur of the
    blurred images. ``backend="kornia"``: kornia's ops, one per step, with torchvision's exact
    colour semantics (HSV hue shift, clamping after every op); several times slower, most of all
    on a CPU (``experiments/bench/bench_pretrain.py``).

    Frame stacks (C = 3k): every frame of a sample gets the same crop, flip, jitter, greyscale
    and blur (the colour ops act per RGB frame). Randomness comes from torch's global RNG on the
    input's device, so results are reproducible under ``torch.manual_seed``.
    ``cropping_mode`` is kornia's (``"resample"``: one batched warp; ``"slice"``: a loop).
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
        backend: str = "fused",
        cropping_mode: str = "resample",
        crop_min: float = 0.0,
    ) -> None:
        super().__init__()
        if recipe not in MOCO_RECIPES:
            raise ValueError(f"recipe={recipe!r} is not one of {RECIPES}")
        if backend not in AUGMENT_BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {AUGMENT_BACKENDS}")
        if size < 1:
            raise ValueError(f"size={size} must be >= 1")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean={mean} and std={std} must have 3 entries, std > 0")
        kernel = default_blur_kernel_size(size) if blur_kernel_size is None else blur_kernel_size
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"blur_kernel_size={kernel} must be a positive odd number")
        self.size = size
        self.recipe = recipe
        if not 0.0 <= crop_min < 1.0:
            raise ValueError(f"crop_min={crop_min} must be in [0, 1) (0 = the recipe's)")
        self.params = MOCO_RECIPES[recipe]
        if crop_min > 0:
            self.params = replace(self.params, scale=(crop_min, self.params.scale[1]))
        self.normalize = normalize
        self.backend = backend
        self.blur_kernel_size = kernel
        self.pipeline = (self._kornia_pipeline(self.params, size, kernel, cropping_mode)
                         if backend == "kornia" else None)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @staticmethod
    def _kornia_pipeline(recipe: MocoRecipe, size: int, kernel: int, cropping_mode: str
                         ) -> K.AugmentationSequential:
        crop = (K.RandomCrop((size, size), cropping_mode=cropping_mode)
                if recipe.geometry == "crop" else
                K.RandomResizedCrop((size, size), scale=recipe.scale, cropping_mode=cropping_mode))
        jitter = K.ColorJitter(*recipe.jitter, p=recipe.jitter_p)
        grey = K.RandomGrayscale(p=recipe.grayscale_p)
        colour = [op for op, p in ((jitter, recipe.jitter_p), (grey, recipe.grayscale_p)) if p > 0]
        ops: list[nn.Module] = [crop, *(colour[::-1] if recipe.grayscale_first else colour)]
        if recipe.blur_p > 0:
            ops.append(K.RandomGaussianBlur((kernel, kernel), recipe.blur_sigma, p=recipe.blur_p))
        if recipe.solarize_p > 0:  # thresholds=0, additions=0: a fixed cut at 0.5, nothing added
            ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=recipe.solarize_p))
        if recipe.flip_p > 0:
            ops.append(K.RandomHorizontalFlip(p=recipe.flip_p))
        return K.AugmentationSequential(*ops)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3k, H, W)`` uint8 or float [0, 1] -> float32 ``(B, 3k, size, size)``."""
        if x.dim() != 4 or x.shape[1] % 3 != 0:
            raise ValueError(f"expected images (B, 3k, H, W), got shape {tuple(x.shape)}")
        if self.mean.device != x.device:
            self.to(x.device)  # kornia draws its parameters on the module's device
        batch, channels = x.shape[:2]
        out = self._fused(x) if self.pipeline is None else self._kornia(x)
        out = out.view(batch * (channels // 3), 3, self.size, self.size)
        if self.normalize:
            out = (out - self.mean) / self.std
        return out.reshape(batch, channels, self.size, self.size)

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """Float ``(B, 3k, size, size)`` in [0, 1], not normalised."""
        recipe, size = self.params, self.size
        batch, channels, height, width = x.shape
        frames, device = channels // 3, x.device
        if recipe.geometry == "crop":
            views = random_crop(x, size).float()
        else:
            boxes = sample_resized_crops(batch, height, width, recipe.scale, device=device)
            flip = torch.rand(batch, device=device) < recipe.flip_p
            views = resized_crop(x, boxes, size, flip)
        if x.dtype == torch.uint8:
            views = views.mul_(1 / 255)
        if recipe.jitter_p > 0 or recipe.grayscale_p > 0:
            flat = views.view(batch * frames, 3, size, size)
            jitter = sample_color_jitter(batch, *recipe.jitter, recipe.jitter_p,
                                         recipe.grayscale_p, device=device
                                         ).repeat_interleave(frames)
            matrix, offset = color_twist(jitter, flat.mean(dim=(2, 3)), recipe.grayscale_first)
            views = apply_color_twist(flat, matrix, offset).view(batch, channels, size, size)
        if recipe.blur_p > 0:
            blurred = torch.rand(batch, device=device) < recipe.blur_p
            low, high = recipe.blur_sigma
            sigma = low + (high - low) * torch.rand(batch, device=device)
            index = blurred.nonzero().squeeze(1)
            if index.numel() > 0:
                views[index] = gaussian_blur(views[index], sigma[index], self.blur_kernel_size)
        if recipe.solarize_p > 0:
            views = solarize(views, torch.rand(batch, device=device) < recipe.solarize_p)
        return views

    def _kornia(self, x: torch.Tensor) -> torch.Tensor:
        """Float ``(B * k, 3, size, size)`` in [0, 1], not normalised."""
        batch, channels, height, width = x.shape
        frames = channels // 3
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        flat = x.reshape(batch * frames, 3, height, width)
        params = self.pipeline.forward_parameters(torch.Size((batch, 3, height, width)))
        if frames > 1:
            params = self._repeat_params(params, frames, flat.shape)
        return self.pipeline(flat, params=params)

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

    def extra_repr(self) -> str:
        return (f"size={self.size}, recipe={self.recipe!r}, backend={self.backend!r}, "
                f"normalize={self.normalize}")
