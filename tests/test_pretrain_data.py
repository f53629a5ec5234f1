"""MoCo data: image folders (sklearn digits written by the test), corrupt files, splits, frame
stacks from episode metadata, rendered dm_control frames, device-side views."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from digits import write_digits_folder
from PIL import Image

from curl_moco.pretrain.data import (
    FRAMES_META,
    ImageFolderDataset,
    collate_samples,
    decode_image,
    split_indices,
)
from curl_moco.pretrain.transforms import EvalTransform, ViewAugment


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), size=32, per_class=12)


def test_digits_folder_decodes_real_images(digits):
    from sklearn.datasets import load_digits

    ds = ImageFolderDataset(digits, 32)
    assert ds.classes == [str(d) for d in range(10)]
    assert len(ds) == 120 and np.bincount(ds.labels).tolist() == [12] * 10
    sample = ds[0]
    assert sample.image.dtype == torch.uint8 and sample.image.shape == (3, 32, 32)
    assert sample.label == 0 and sample.skipped == 0
    # The first "0" digit of sklearn, nearest-upsampled 4x: pixel (4i, 4j) is the 8x8 value.
    first_zero = load_digits().images[load_digits().target == 0][0]
    expected = (first_zero / 16.0 * 255.0).astype(np.uint8)
    assert np.array_equal(sample.image[0, ::4, ::4].numpy(), expected)
    assert torch.equal(sample.image[0], sample.image[1])  # grey -> RGB


def test_decode_resizes_shorter_side_and_centre_crops(tmp_path):
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    img[:, 10:30] = 200  # the central half of a wide image
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", 10)
    assert out.shape == (10, 10, 3)
    assert out[:, 1:9].min() > 150  # the centre crop kept the bright middle


def test_folder_errors_name_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="data=.*does not exist"):
        ImageFolderDataset(tmp_path / "missing", 32)
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolderDataset(tmp_path, 32)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderDataset(tmp_path, 32)
    with pytest.raises(ValueError, match="frame_stack=3 needs frames.npz"):
        write_digits_folder(tmp_path / "d", size=8, per_class=1)
        ImageFolderDataset(tmp_path / "d", 8, frame_stack=3)


def test_corrupt_image_is_skipped_and_counted(tmp_path, caplog):
    root = write_digits_folder(tmp_path, size=16, per_class=3, corrupt=2)
    ds = ImageFolderDataset(root, 16)
    bad = [i for i, (p, _) in enumerate(ds.samples) if p.name.startswith("corrupt")]
    assert len(bad) == 2 and bad[1] == bad[0] + 1
    with caplog.at_level("WARNING", logger="curl_moco"):
        sample = ds[bad[0]]
    assert sample.skipped == 1 and sample.index == bad[0] + 2  # next readable file
    assert torch.equal(sample.image, ds[bad[0] + 2].image)
    assert "corrupt_000.png" in caplog.text and "corrupt_001.png" in caplog.text
    batch = collate_samples([ds[i] for i in range(len(ds))])
    assert int(batch["skipped"]) == 2 and batch["image"].shape == (len(ds), 3, 16, 16)


def _fake_frames(root, domains=("a", "b"), episodes=4, steps=5, size=12):
    """A DMC-like frame folder: frame value encodes (domain, episode, step)."""
    for d, domain in enumerate(domains):
        folder = root / domain
        folder.mkdir(parents=True)
        files, eps, sts, states = [], [], [], []
        for e in range(episodes):
            for s in range(steps):
                name = f"{len(files):05d}.png"
                value = 100 * d + 10 * e + s
                Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(folder / name)
                files.append(name)
                eps.append(e)
                sts.append(s)
                states.append([value, -value, 1.0])
        np.savez(folder / FRAMES_META, files=np.array(files), episode=np.array(eps),
                 step=np.array(sts), state=np.array(states, dtype=np.float64))
    return root


def test_frame_stacks_follow_episodes(tmp_path):
    ds = ImageFolderDataset(_fake_frames(tmp_path), 12, frame_stack=3)
    assert ds.channels == 9
    values = lambda i: ds[i].image[::3, 0, 0].tolist()  # noqa: E731 - first pixel per frame
    assert values(0) == [0, 0, 0]  # episode start: first frame repeated
    assert values(1) == [0, 0, 1]
    assert values(4) == [2, 3, 4]
    assert values(5) == [10, 10, 10]  # next episode starts afresh
    assert values(20 + 7) == [110, 111, 112]  # domain "b", episode 1, step 2
    states = ds.states("state")
    assert states[27].tolist() == [112.0, -112.0, 1.0]
    with pytest.raises(ValueError, match="internal_state"):
        ds.states("internal_state")


def test_split_is_deterministic_stratified_and_keeps_episodes_whole(tmp_path, digits):
    ds = ImageFolderDataset(_fake_frames(tmp_path), 12)
    train, val = split_indices(ds, 0.25, seed=3)
    assert np.array_equal(train, split_indices(ds, 0.25, seed=3)[0])
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(ds)
    episodes = {(int(ds.labels[i]), int(ds.meta["episode"][i])) for i in val}
    assert len(episodes) == 2 and {c for c, _ in episodes} == {0, 1}  # one episode per class
    for c, e in episodes:  # whole episodes held out
        members = np.flatnonzero((ds.labels == c) & (ds.meta["episode"] == e))
        assert set(members) <= set(val.tolist())
    dig = ImageFolderDataset(digits, 32)
    _, dval = split_indices(dig, 0.25, seed=0)
    assert np.bincount(dig.labels[dval]).tolist() == [3] * 10
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(dig, 1.0, seed=0)


def test_rendered_dmc_frames(tmp_path):
    from curl_moco.experiments.collect_frames import main as collect

    manifest = collect(["--out", str(tmp_path), "--domains", "cartpole,reacher-easy",
                        "--frames-per-domain", "6", "--episode-frames", "3",
                        "--image-size", "32", "--seed", "1"])
    assert [d["domain"] for d in manifest["domains"]] == ["cartpole", "reacher"]
    assert json.loads((tmp_path / "manifest.json").read_text())["image_size"] == 32
    meta = np.load(tmp_path / "cartpole" / FRAMES_META)
    assert meta["episode"].tolist() == [0, 0, 0, 1, 1, 1] and meta["step"].tolist()[:3] == [0, 1, 2]
    assert meta["state"].shape == (6, 4)  # cartpole: qpos (2) + qvel (2)
    ds = ImageFolderDataset(tmp_path, 32, frame_stack=3)
    assert ds.classes == ["cartpole", "reacher"] and len(ds) == 12
    item = ds[2].image  # third frame of an episode: three distinct rendered frames
    assert item.shape == (9, 32, 32) and item.float().std() > 5
    assert not torch.equal(item[0:3], item[6:9])
    assert torch.equal(item[6:9], ImageFolderDataset(tmp_path, 32)[2].image)


def test_views_share_one_transform_across_stacked_frames():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    stack = frame.repeat(1, 3, 1, 1)  # three identical frames per sample
    for recipe in ("v1", "v2", "crop"):
        out = ViewAugment(recipe, 16, channels=9, normalize=False)(stack)
        assert out.shape == (4, 9, 16, 16) and out.dtype == torch.float32
        assert torch.allclose(out[:, 0:3], out[:, 6:9]) and torch.allclose(out[:, 0:3], out[:, 3:6])
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    crop_a = ViewAugment("crop", 16, 3, normalize=False)(frame)
    assert not torch.equal(crop_a, ViewAugment("crop", 16, 3, normalize=False)(frame))
    norm = EvalTransform(16, 3, normalize=True)(torch.full((1, 3, 20, 20), 255, dtype=torch.uint8))
    assert torch.allclose(norm[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406]))
                          / torch.tensor([0.229, 0.224, 0.225]))


def test_every_pillow_mode_is_converted_or_refused_by_name(digits, tmp_path):
    """16-bit grey is scaled (not clipped to white), palette / grey+alpha / CMYK / 1-bit are
    converted; modes without a defined 8-bit meaning are refused naming the file and mode."""
    from curl_moco.pretrain.data import UnsupportedImageError

    source = np.asarray(Image.open(digits / "3" / "00000.png").convert("RGB"))
    grey = np.asarray(Image.fromarray(source).convert("L"))
    deep = (grey.astype(np.uint16) * 257).astype(">u2")  # the same picture at 16 bits
    Image.frombytes("I;16B", (32, 32), deep.tobytes()).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    decoded = decode_image(tmp_path / "deep.png", 32)
    assert np.abs(decoded[..., 0].astype(int) - grey).max() <= 1  # not 92 % white
    base = Image.fromarray(source)
    variants = {"palette.png": base.convert("P", palette=Image.Palette.ADAPTIVE),
                "grey_alpha.png": base.convert("LA"),
                "rgba.png": base.convert("RGBA"), "cmyk.tiff": base.convert("CMYK"),
                "onebit.png": base.convert("1"), "ycbcr.tiff": base.convert("YCbCr")}
    for name, image in variants.items():
        image.save(tmp_path / name)
        out = decode_image(tmp_path / name, 32)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8, name
        expected = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert np.array_equal(out, expected), name
    assert np.array_equal(decode_image(tmp_path / "palette.png", 32), source)  # colours, not
    assert np.array_equal(decode_image(tmp_path / "grey_alpha.png", 32), source)  # indices
    Image.fromarray(grey.astype(np.float32) / 255.0, "F").save(tmp_path / "float.tif")
    with pytest.raises(UnsupportedImageError, match="float.tif: image mode 'F'"):
        decode_image(tmp_path / "float.tif", 32)


def test_collect_frames_refuses_a_used_folder_unless_overwriting(tmp_path):
    from curl_moco.experiments.collect_frames import cli, main

    args = ["--out", str(tmp_path / "frames"), "--domains", "cartpole", "--frames-per-domain",
            "2", "--episode-frames", "2", "--image-size", "16"]
    main([*args[:5], "3", *args[6:]])  # an earlier, larger data set: 3 frames
    stray = tmp_path / "frames" / "cartpole" / "99999.png"
    stray.write_bytes(b"a frame of yours")
    assert cli(args) == 2  # would mix old and new frames
    # --overwrite deletes only what collect_frames wrote: a file of yours in a class folder
    # (which the data set would read) is refused, before anything is deleted.
    assert cli(args + ["--overwrite"]) == 2
    assert stray.exists() and (tmp_path / "frames" / "cartpole" / "00002.png").exists()
    stray.unlink()
    notes = tmp_path / "frames" / "notes.txt"
    notes.write_text("mine\n")
    main(args + ["--overwrite"])
    assert notes.read_text() == "mine\n"  # kept
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["cartpole",
                                                                        "manifest.json",
                                                                        "notes.txt"]
    assert sorted(p.name for p in (tmp_path / "frames" / "cartpole").iterdir()) == [
        "00000.png", "00001.png", "frames.npz"]  # the earlier run's third frame is gone
    (tmp_path / "frames" / ".collect_frames_incomplete").write_text("killed\n")
    with pytest.raises(ValueError, match="incomplete frame data set"):
        ImageFolderDataset(tmp_path / "frames", 16)
