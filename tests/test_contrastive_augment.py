"""Tests for curl_moco.contrastive.augment: exact crop windows, offset coverage, MoCo pipeline."""

from __future__ import annotations

import pytest
import torch

from curl_moco.contrastive.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MocoAugment,
    center_crop,
    crop_at,
    random_crop,
)

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


@pytest.mark.parametrize("recipe", ["v1", "v2"])
def test_moco_augment_shape_dtype_and_normalisation(recipe: str) -> None:
    x = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    aug = MocoAugment(32, recipe=recipe)
    raw = MocoAugment(32, recipe=recipe, normalize=False)
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


def test_moco_augment_is_deterministic_under_manual_seed() -> None:
    aug = MocoAugment(24)
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


@pytest.mark.parametrize("recipe", ["v1", "v2"])
def test_moco_augment_same_transform_for_stacked_frames(recipe: str) -> None:
    aug = MocoAugment(24, recipe=recipe)
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
