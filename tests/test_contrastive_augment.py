"""Tests for curl_moco.contrastive.augment: exact crop windows, offset coverage, MoCo pipeline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from curl_moco.contrastive.augment import (
    AUGMENT_BACKENDS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MOCO_RECIPES,
    MocoAugment,
    center_crop,
    crop_at,
    gaussian_blur,
    random_crop,
    resized_crop,
    sample_resized_crops,
    solarize,
)
from curl_moco.contrastive.color import apply_color_twist, color_twist, sample_color_jitter

# Tiny tensors: one thread is faster and avoids contention on a busy 2-core CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def _arange_images(b: int, c: int, h: int, w: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
    x = torch.arange(b * c * h * w).reshape(b, c, h, w)
    return (x % 251).to(dtype) if dtype == torch.uint8 else x.to(dtype)


def test_crop_at_returns_exact_windows() -> None:
    x = _arange_images(3, 9, 10, 12)
    offsets = torch.tensor([[0, 0], [3, 5], [2, 1]])
    crops = crop_at(x, offsets, 7)
    assert crops.shape == (3, 9, 7, 7) and crops.is_contiguous()
    assert torch.equal(crops[0], x[0, :, 0:7, 0:7])
    assert torch.equal(crops[1], x[1, :, 3:10, 5:12])  # bottom-right-most reachable row offset
    assert torch.equal(crops[2], x[2, :, 2:9, 1:8])
    # concrete pixel: sample 1, channel 4, window (0, 0) -> image (3, 5)
    assert crops[1, 4, 0, 0].item() == ((1 * 9 + 4) * 10 + 3) * 12 + 5


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_crop_windows_match_offsets(dtype: torch.dtype) -> None:
    x = _arange_images(16, 9, 20, 20, dtype)
    crops, offsets = random_crop(
        x, 16, generator=torch.Generator().manual_seed(0), return_offsets=True
    )
    assert crops.dtype == dtype and crops.shape == (16, 9, 16, 16)
    assert offsets.shape == (16, 2) and offsets.dtype == torch.long
    for b, (top, left) in enumerate(offsets.tolist()):
        assert 0 <= top <= 4 and 0 <= left <= 4
        # one offset for all 9 channels, i.e. for all 3 stacked frames
        assert torch.equal(crops[b], x[b, :, top : top + 16, left : left + 16])


def test_same_offset_for_all_stacked_frames() -> None:
    frame = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8)
    stack = frame.repeat(1, 3, 1, 1)  # three identical frames
    crops = random_crop(stack, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(crops[:, 0:3], crops[:, 3:6]) and torch.equal(crops[:, 0:3], crops[:, 6:9])


def test_every_offset_occurs_on_both_axes() -> None:
    x = torch.zeros(2000, 1, 10, 13, dtype=torch.uint8)
    _, offsets = random_crop(x, 7, generator=torch.Generator().manual_seed(0), return_offsets=True)
    tops, lefts = offsets[:, 0], offsets[:, 1]
    assert sorted(set(tops.tolist())) == list(range(4))  # [0, H - size] inclusive
    assert sorted(set(lefts.tolist())) == list(range(7))  # [0, W - size] inclusive
    # roughly uniform: each value within 30 % of its expected count
    assert torch.bincount(tops).min() > 0.7 * 2000 / 4
    assert torch.bincount(lefts).min() > 0.7 * 2000 / 7
    # full-size crop: the only offset is 0 and the image comes back unchanged
    y = _arange_images(2, 3, 6, 6)
    crops, offsets = random_crop(y, 6, return_offsets=True)
    assert torch.equal(crops, y) and offsets.abs().sum() == 0


def test_seeded_generator_is_reproducible() -> None:
    x = torch.randint(0, 256, (32, 9, 100, 100), dtype=torch.uint8)
    a = random_crop(x, 84, generator=torch.Generator().manual_seed(7))
    b = random_crop(x, 84, generator=torch.Generator().manual_seed(7))
    c = random_crop(x, 84, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crop_bad_sizes() -> None:
    x = torch.zeros(2, 3, 100, 90)
    with pytest.raises(ValueError, match="size=95"):
        random_crop(x, 95)
    with pytest.raises(ValueError, match="size=0"):
        random_crop(x, 0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        random_crop(x[0], 10)
    with pytest.raises(ValueError, match="offsets"):
        crop_at(x, torch.zeros(3, 2, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="size=101"):
        center_crop(x, 101)


def test_center_crop_exact() -> None:
    x = _arange_images(2, 9, 100, 100)
    assert torch.equal(center_crop(x, 84), x[:, :, 8:92, 8:92])
    y = _arange_images(1, 3, 10, 11)
    assert torch.equal(center_crop(y, 7), y[:, :, 1:8, 2:9])
    assert torch.equal(center_crop(y[0], 7), y[0, :, 1:8, 2:9])  # (C, H, W) works too
    assert center_crop(y, 7)[0, 0, 0, 0].item() == 1 * 11 + 2


BACKENDS = pytest.mark.parametrize("backend", AUGMENT_BACKENDS)


@BACKENDS
@pytest.mark.parametrize("recipe", ["v1", "v2", "crop_color", "v3_view1", "v3_view2",
                                    "crop_flip"])
def test_moco_augment_shape_dtype_and_normalisation(recipe: str, backend: str) -> None:
    x = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    aug = MocoAugment(32, recipe=recipe, backend=backend)
    raw = MocoAugment(32, recipe=recipe, normalize=False, backend=backend)
    torch.manual_seed(0)
    y = aug(x)
    torch.manual_seed(0)
    r = raw(x)
    assert y.shape == (6, 3, 32, 32) and y.dtype == torch.float32
    assert r.min() >= 0.0 and r.max() <= 1.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(y, (r - mean) / std)
    # plausible stats for uniform-noise images: mean near (0.5 - m) / s, spread of order 1
    assert (y.mean(dim=(0, 2, 3)) - (0.5 - mean.flatten()) / std.flatten()).abs().max() < 0.5
    assert 0.1 < y.std().item() < 2.0
    # samples are augmented independently (not the same transform for the whole batch)
    same = x[:1].repeat(6, 1, 1, 1)
    torch.manual_seed(1)
    ys = aug(same)
    assert not torch.allclose(ys[0], ys[1])


@BACKENDS
def test_moco_augment_is_deterministic_under_manual_seed(backend: str) -> None:
    aug = MocoAugment(24, backend=backend)
    x = torch.rand(4, 3, 32, 32)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    b = aug(x)
    torch.manual_seed(6)
    c = aug(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    u = aug((x * 255).round().to(torch.uint8))
    torch.manual_seed(5)
    f = aug((x * 255).round() / 255)
    torch.testing.assert_close(u, f)  # uint8 input == float input in [0, 1]


@BACKENDS
@pytest.mark.parametrize("recipe", ["v1", "v2", "crop_color", "v3_view1", "v3_view2"])
def test_moco_augment_same_transform_for_stacked_frames(recipe: str, backend: str) -> None:
    aug = MocoAugment(24, recipe=recipe, backend=backend)
    frames = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    y = aug(frames.repeat(1, 3, 1, 1))
    assert y.shape == (5, 9, 24, 24)
    assert torch.equal(y[:, 0:3], y[:, 3:6]) and torch.equal(y[:, 0:3], y[:, 6:9])
    assert not torch.allclose(y[0, 0:3], y[1, 0:3])


def test_moco_augment_bad_settings() -> None:
    with pytest.raises(ValueError, match="recipe='v3'"):
        MocoAugment(32, recipe="v3")
    with pytest.raises(ValueError, match="blur_kernel_size=4"):
        MocoAugment(32, blur_kernel_size=4)
    with pytest.raises(ValueError, match="3k"):
        MocoAugment(32)(torch.rand(2, 4, 40, 40))
    with pytest.raises(ValueError, match="backend='pil'"):
        MocoAugment(32, backend="pil")
    with pytest.raises(ValueError, match="kernel_size=4 must be a positive odd number"):
        gaussian_blur(torch.rand(1, 3, 16, 16), torch.ones(1), 4)
    with pytest.raises(ValueError, match="kernel_size=41 is too large"):
        gaussian_blur(torch.rand(1, 3, 16, 16), torch.ones(1), 41)


def test_resized_crop_boxes_follow_torchvision_ranges() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = sample_resized_crops(4000, 60, 80, scale=(0.2, 1.0), generator=g)
    left, top, w, h = boxes.unbind(1)
    assert (left >= 0).all() and (top >= 0).all()
    assert (left + w <= 80 + 1e-4).all() and (top + h <= 60 + 1e-4).all()
    area = w * h / (60 * 80)
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 1.0 + 1e-5
    ratio = w / h
    fitted = area < 0.999  # boxes from a successful draw (not the whole-image fallback)
    assert ratio[fitted].min() >= 3 / 4 - 1e-4 and ratio[fitted].max() <= 4 / 3 + 1e-4
    # the same area distribution as torchvision's sampler (first fitting draw of 10)
    torch.manual_seed(0)
    draws = [T.RandomResizedCrop.get_params(torch.empty(1, 60, 80), [0.2, 1.0], [3 / 4, 4 / 3])
             for _ in range(4000)]
    reference = torch.tensor([box_h * box_w / (60 * 80) for _, _, box_h, box_w in draws])
    assert area.mean() == pytest.approx(reference.mean().item(), abs=0.02)
    # impossible scale: every draw falls back to the centred whole-image box
    fallback = sample_resized_crops(3, 60, 80, scale=(2.0, 3.0), generator=g)
    torch.testing.assert_close(fallback, torch.tensor([[0.0, 0.0, 80.0, 60.0]] * 3))


def test_resized_crop_is_exact_on_the_pixel_grid_and_flips() -> None:
    x = _arange_images(2, 6, 20, 24, dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 3.0, 8.0, 8.0], [10.0, 0.0, 8.0, 8.0]])
    out = resized_crop(x, boxes, 8)
    assert out.dtype == torch.float32 and out.shape == (2, 6, 8, 8)
    torch.testing.assert_close(out[0], x[0, :, 3:11, 2:10].float(), rtol=0, atol=1e-3)
    torch.testing.assert_close(out[1], x[1, :, 0:8, 10:18].float(), rtol=0, atol=1e-3)
    flipped = resized_crop(x, boxes, 8, flip=torch.tensor([True, False]))
    assert torch.equal(flipped[0], out[0].flip(-1)) and torch.equal(flipped[1], out[1])
    # the whole image resized = bilinear interpolation (align_corners=False)
    whole = resized_crop(x.float(), torch.tensor([[0.0, 0.0, 24.0, 20.0]] * 2), 12)
    torch.testing.assert_close(whole, F.interpolate(x.float(), size=(12, 12), mode="bilinear",
                                                    align_corners=False), rtol=1e-5, atol=1e-3)


def test_gaussian_blur_matches_torchvision_per_image() -> None:
    x = torch.rand(3, 6, 20, 20)
    sigma = torch.tensor([0.3, 1.0, 2.0])
    out = gaussian_blur(x, sigma, 7)
    for i in range(3):
        expected = TF.gaussian_blur(x[i], [7, 7], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], expected, rtol=1e-5, atol=1e-5)


def test_random_shift_is_replicate_pad_then_crop() -> None:
    """DrQ's shift: replicate-pad by ``pad`` then a random crop back to the input size; equal to
    doing that explicitly with the same generator, for uint8 and float."""
    from curl_moco.contrastive.augment import random_shift

    x = torch.randint(0, 256, (6, 9, 20, 20), dtype=torch.uint8)
    shifted = random_shift(x, 4, generator=torch.Generator().manual_seed(3))
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="replicate")
    expected = random_crop(padded, 20, generator=torch.Generator().manual_seed(3))
    assert shifted.dtype == torch.uint8 and shifted.shape == x.shape
    assert torch.equal(shifted.float(), expected)
    # every output is the input moved by at most 4 pixels (borders repeated)
    _, offsets = random_crop(padded, 20, generator=torch.Generator().manual_seed(3),
                             return_offsets=True)
    assert int(offsets.min()) >= 0 and int(offsets.max()) <= 8
    assert torch.equal(random_shift(x, 0), x)
    with pytest.raises(ValueError, match="square"):
        random_shift(torch.zeros(1, 3, 20, 24))
    with pytest.raises(ValueError, match="pad"):
        random_shift(x, -1)


def test_solarize_equals_torchvision_on_selected_images() -> None:
    x = torch.rand(4, 3, 10, 10)
    x[0, 0, 0, :3] = torch.tensor([0.5, 0.49, 1.0])  # the cut: >= 0.5 is inverted
    selected = torch.tensor([True, False, True, False])
    out = solarize(x, selected)
    for i in range(4):
        expected = TF.solarize(x[i], 0.5) if selected[i] else x[i]
        assert torch.equal(out[i], expected)
    assert out[0, 0, 0, :3].tolist() == pytest.approx([0.5, 0.49, 0.0])


def test_v3_recipes_are_byol_s_asymmetric_pair() -> None:
    one, two = MOCO_RECIPES["v3_view1"], MOCO_RECIPES["v3_view2"]
    for r in (one, two):  # moco-v3 main_moco.py augmentation1 / augmentation2
        assert (r.scale, r.jitter, r.jitter_p, r.grayscale_p, r.grayscale_first, r.blur_sigma,
                r.flip_p) == ((0.08, 1.0), (0.4, 0.4, 0.2, 0.1), 0.8, 0.2, False, (0.1, 2.0), 0.5)
    assert (one.blur_p, one.solarize_p, two.blur_p, two.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert MocoAugment(32, "v3_view1", crop_min=0.2).params.scale == (0.2, 1.0)
    with pytest.raises(ValueError, match="crop_min=1.0"):
        MocoAugment(32, "v3_view1", crop_min=1.0)
    kornia_ops = [type(op).__name__ for op in MocoAugment(32, "v3_view2", backend="kornia")
                  .pipeline.children()]
    assert kornia_ops == ["RandomResizedCrop", "ColorJitter", "RandomGrayscale",
                          "RandomGaussianBlur", "RandomSolarize", "RandomHorizontalFlip"]
    kornia_one = [type(op).__name__ for op in MocoAugment(32, "v3_view1", backend="kornia")
                  .pipeline.children()]
    assert "RandomSolarize" not in kornia_one and "RandomGaussianBlur" in kornia_one


@pytest.mark.parametrize("recipe", ["v3_view1", "v3_view2", "crop_flip"])
def test_fused_v3_views_equal_their_ops_applied_one_by_one(recipe: str) -> None:
    """Redraw the fused pipeline's random numbers in its order and apply torchvision's blur and
    solarize image by image: crop + flip, colour, blur, solarize, exactly in that order."""
    n, size = 48, 24
    x = torch.randint(0, 256, (n, 3, 40, 36), dtype=torch.uint8)
    aug = MocoAugment(size, recipe, normalize=False)
    params = MOCO_RECIPES[recipe]
    torch.manual_seed(11)
    out = aug(x)
    torch.manual_seed(11)
    boxes = sample_resized_crops(n, 40, 36, params.scale)
    flip = torch.rand(n) < 0.5
    views = resized_crop(x, boxes, size, flip) / 255
    if recipe != "crop_flip":
        jitter = sample_color_jitter(n, *params.jitter, params.jitter_p, params.grayscale_p)
        views = apply_color_twist(views, *color_twist(jitter, views.mean(dim=(2, 3))))
        blurred = torch.rand(n) < params.blur_p
        sigma = 0.1 + 1.9 * torch.rand(n)
        solarized = (torch.rand(n) < params.solarize_p if params.solarize_p > 0
                     else torch.zeros(n, dtype=torch.bool))
        assert bool(blurred.all()) == (recipe == "v3_view1")
        assert bool(solarized.any()) == (recipe == "v3_view2")
        for i in range(n):
            if blurred[i]:
                views[i] = TF.gaussian_blur(views[i], [aug.blur_kernel_size] * 2,
                                            [float(sigma[i])] * 2)
            if solarized[i]:
                views[i] = TF.solarize(views[i], 0.5)
    torch.testing.assert_close(out, views, rtol=0, atol=2e-6)


def test_view_augment_v3_draws_each_view_with_its_own_recipe() -> None:
    from curl_moco.pretrain.transforms import ViewAugment

    pair = ViewAugment("v3", 24, 3, normalize=True, crop_min=0.2)
    assert (pair.moco.recipe, pair.moco_second.recipe) == ("v3_view1", "v3_view2")
    assert pair.moco.params.scale == pair.moco_second.params.scale == (0.2, 1.0)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(3)
    second = pair(x, second=True)
    torch.manual_seed(3)
    assert torch.equal(second, pair.moco_second(x))
    same = ViewAugment("v2", 24, 3, normalize=True)
    assert same.moco_second is None  # symmetric recipes draw both views alike
    torch.manual_seed(3)
    a = same(x, second=True)
    torch.manual_seed(3)
    assert torch.equal(a, same(x))
