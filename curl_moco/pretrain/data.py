"""Image-folder data for MoCo: CPU workers decode, the device augments.

Layout: ``root/<class>/<image>.{jpg,jpeg,png,bmp,ppm,webp,tif,tiff}`` (ImageNet style); class
index = position of the folder name in sorted order. Workers decode each image to a fixed-size
``(3, S, S)`` uint8 tensor (shorter side resized to ``S``, centre crop), so batches collate
without padding and stay uint8 until they reach the device, where the random augmentation of
both views runs batched (:mod:`curl_moco.contrastive.augment`).

DeepMind Control frame folders written by ``python -m experiments.collect_frames`` add, per class
(domain) folder, ``frames.npz`` with the episode and step index and the physics state of every
frame. With it, ``frame_stack=k`` returns the ``k`` consecutive frames ending at each frame,
stacked along channels ``(3k, S, S)`` (the first frame of an episode is repeated, as the agent's
``FrameStack`` does at reset), and :meth:`ImageFolderDataset.states` gives regression targets.

Unreadable images (truncated or corrupt files) are skipped: the item is replaced by the next
readable one, the path is logged, and the item reports how many files it skipped so the trainer
can count them in its logs. Every Pillow mode with a defined 8-bit RGB meaning is converted
(palette, grey, grey+alpha, RGBA, CMYK, YCbCr, 1-bit; 16-bit grey is scaled, not clipped); modes
without one (32-bit integer or float, LAB, HSV) are refused by name, at start-up when the first
image of a class has such a mode.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from curl_moco.io.checks import listing
from curl_moco.io.errors import MissingPathError, UsageError

log = logging.getLogger("curl_moco")

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif",
                                     ".tiff")
FRAMES_META = "frames.npz"
#: Marker ``experiments.collect_frames`` keeps in a frame folder until it has finished writing.
INCOMPLETE_MARKER = ".collect_frames_incomplete"
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
#: Pillow modes that ``Image.convert("RGB")`` maps correctly (alpha is dropped).
RGB_CONVERTIBLE_MODES = frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "LA", "La", "PA",
                                   "CMYK", "YCbCr"})
#: 16-bit grey modes: scaled to 8 bits (``convert("RGB")`` would clip them to white).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class UnsupportedImageError(UsageError):
    """An image whose Pillow mode has no defined 8-bit RGB meaning."""


class Sample(NamedTuple):
    """One decoded item: ``image (C, S, S)`` uint8, class ``label``, dataset ``index`` of the
    item actually returned, ``skipped`` = 1 if the requested item was unreadable (and replaced
    by the next readable one), else 0. Summed over an epoch: the unreadable files it met."""

    image: torch.Tensor
    label: int
    index: int
    skipped: int


def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode an image file to RGB ``(size, size, 3)`` uint8: shorter side resized to ``size``
    (bilinear, antialiased), then centre-cropped. Raises ``OSError``/``ValueError`` if the
    file is unreadable."""
    with Image.open(path) as img:
        img.load()
        img = to_rgb(img, path)
        w, h = img.size
        if (w, h) != (size, size):
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8).copy()


def to_rgb(img: Image.Image, path: str | os.PathLike = "image") -> Image.Image:
    """``img`` as an 8-bit RGB image; raises :class:`UnsupportedImageError` naming the mode."""
    if img.mode in SIXTEEN_BIT_MODES:
        grey = np.rint(np.asarray(img, dtype=np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode in RGB_CONVERTIBLE_MODES:
        return img.convert("RGB")
    raise UnsupportedImageError(
        f"{path}: image mode {img.mode!r} has no defined 8-bit RGB meaning (supported: "
        f"{', '.join(sorted(RGB_CONVERTIBLE_MODES | SIXTEEN_BIT_MODES))}); convert the data set "
        "to 8-bit RGB or grey images")


def check_image_modes(samples: Sequence[tuple[Path, int]], setting: str = "data") -> None:
    """Read the header of the first image of every class and refuse an unsupported mode (cheap:
    no pixels are decoded). Unreadable files are left to the per-item skipping."""
    seen: set[int] = set()
    for path, label in samples:
        if label in seen:
            continue
        seen.add(label)
        try:
            with Image.open(path) as img:
                mode = img.mode
        except _DECODE_ERRORS:
            continue
        if mode not in RGB_CONVERTIBLE_MODES and mode not in SIXTEEN_BIT_MODES:
            raise UnsupportedImageError(
                f"{setting}: {path} has image mode {mode!r}, which has no defined 8-bit RGB "
                f"meaning (supported: {', '.join(sorted(RGB_CONVERTIBLE_MODES))}, 16-bit "
                "grey); convert the data set to 8-bit RGB or grey images")


def scan_image_folder(root: str | os.PathLike, setting: str = "data"
                      ) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes (sorted sub-folder names) and ``(path, class_index)`` of every image file.

    Raises :class:`MissingPathError` (a ``FileNotFoundError``) if ``root`` is missing and
    :class:`UsageError` (naming ``setting``) if it is not a folder, cannot be listed, has no
    class folders or no image files.
    """
    root = Path(root)
    if not root.exists():
        raise MissingPathError(f"{setting}={str(root)!r} does not exist")
    if not root.is_dir():
        raise UsageError(f"{setting}={str(root)!r} is not a folder")
    if (root / INCOMPLETE_MARKER).exists():
        raise UsageError(f"{setting}={str(root)!r} is an incomplete frame data set (collect_frames "
                         "was interrupted): run it again with --overwrite")
    try:
        classes = sorted(p.name for p in root.iterdir()
                         if p.is_dir() and not p.name.startswith("."))
    except OSError as error:
        raise UsageError(f"{setting}={str(root)!r} cannot be read: {error}") from error
    if not classes:
        raise UsageError(
            f"{setting}={str(root)!r} has no class folders: expected root/<class>/<image> "
            f"with extensions {', '.join(IMAGE_EXTENSIONS)}")
    per_class: dict[str, list[Path]] = {}
    for name in classes:
        try:
            per_class[name] = sorted(p for p in (root / name).iterdir()
                                     if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        except OSError as error:
            raise UsageError(f"{setting}: class folder {root / name} cannot be read: {error}"
                             ) from error
    empty = [name for name in classes if not per_class[name]]
    if len(empty) == len(classes):
        raise UsageError(
            f"{setting}={str(root)!r} has class folders ({listing(classes)}) but no "
            f"image files with extensions {', '.join(IMAGE_EXTENSIONS)}")
    if empty:  # a class without images would still count in kNN/probe scores and label sizes
        log.warning("%s=%r: skipping %d class folder(s) without images (%s); they are not "
                    "counted as classes", setting, str(root), len(empty), listing(empty))
    classes = [name for name in classes if per_class[name]]
    samples = [(p, label) for label, name in enumerate(classes) for p in per_class[name]]
    return classes, samples


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` decoded to uint8 ``(3 * frame_stack, size, size)`` items.

    ``frame_stack > 1`` needs ``frames.npz`` in every class folder (DMC frame data sets).
    Items are :class:`Sample` tuples; use :func:`collate_samples` in the ``DataLoader``.
    """

    def __init__(self, root: str | os.PathLike, size: int, *, frame_stack: int = 1,
                 setting: str = "data") -> None:
        if size < 1:
            raise UsageError(f"load_size={size} must be >= 1")
        if frame_stack < 1:
            raise UsageError(f"frame_stack={frame_stack} must be >= 1")
        self.root = Path(root)
        self.size = size
        self.frame_stack = frame_stack
        self.classes, self.samples = scan_image_folder(root, setting)
        check_image_modes(self.samples, setting)
        self.labels = np.array([label for _, label in self.samples], dtype=np.int64)
        self.meta = _load_frame_meta(self.root, self.classes, self.samples)
        if frame_stack > 1 and self.meta is None:
            raise UsageError(
                f"frame_stack={frame_stack} needs {FRAMES_META} (episode/step indices) in every "
                f"class folder of {self.root}; write the data set with experiments.collect_frames "
                "or use frame_stack=1")
        self._warned: set[Path] = set()
        # prev[i]: the frame before i in its episode (i itself at the episode's first step).
        self.prev = np.arange(len(self.samples))
        if self.meta is not None:
            self.prev = _previous_frame(self.meta["episode"], self.meta["step"], self.labels)

    @property
    def channels(self) -> int:
        return 3 * self.frame_stack

    def __len__(self) -> int:
        return len(self.samples)

    def stack_indices(self, index: int) -> list[int]:
        """Dataset indices of the ``frame_stack`` frames ending at ``index``, oldest first."""
        chain = [index]
        for _ in range(self.frame_stack - 1):
            chain.append(int(self.prev[chain[-1]]))
        return chain[::-1]

    def load(self, index: int) -> torch.Tensor:
        """Decode item ``index``: ``(3 * frame_stack, size, size)`` uint8. Raises if unreadable."""
        frames = [decode_image(self.samples[i][0], self.size) for i in self.stack_indices(index)]
        return torch.from_numpy(np.concatenate(frames, axis=2)).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> Sample:
        n = len(self.samples)
        for offset in range(n):
            i = (index + offset) % n
            try:
                return Sample(self.load(i), int(self.labels[i]), i, int(offset > 0))
            except _DECODE_ERRORS as error:
                path = self.samples[i][0]
                if path not in self._warned:  # once per file and process
                    self._warned.add(path)
                    log.warning("skipping unreadable image %s: %s", path, error)
        raise UsageError(f"data={str(self.root)!r}: none of the {n} images could be decoded")

    def states(self, key: str = "state") -> np.ndarray:
        """Per-item regression targets from ``frames.npz`` (``"state"``: physics state,
        ``"internal_state"``: the task's proprioceptive observation), as an object array of
        float64 vectors (state sizes differ between domains)."""
        if self.meta is None or key not in self.meta:
            raise UsageError(f"target={key!r} is not available: {self.root} has no {FRAMES_META} "
                             f"with {key!r} (only DMC frame folders have states)")
        return self.meta[key]


def _load_frame_meta(root: Path, classes: Sequence[str], samples: Sequence[tuple[Path, int]]
                     ) -> dict[str, np.ndarray] | None:
    """Per-sample episode, step and state arrays from every class's ``frames.npz``, aligned with
    ``samples``; None if no class folder has one. A partial or inconsistent set is an error."""
    present = [(root / name / FRAMES_META).is_file() for name in classes]
    if not any(present):
        return None
    if not all(present):
        missing = [name for name, ok in zip(classes, present) if not ok]
        raise UsageError(f"data={str(root)!r}: {FRAMES_META} is missing in {missing}")
    episode = np.zeros(len(samples), dtype=np.int64)
    step = np.zeros(len(samples), dtype=np.int64)
    columns: dict[str, list] = {"state": [None] * len(samples),
                                "internal_state": [None] * len(samples)}
    position = {(label, path.name): i for i, (path, label) in enumerate(samples)}
    for label, name in enumerate(classes):
        path = root / name / FRAMES_META
        try:
            with np.load(path, allow_pickle=False) as meta:
                files = [str(f) for f in meta["files"]]
                data = {key: meta[key] for key in meta.files}
            data["episode"], data["step"]  # noqa: B018 - required columns
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise UsageError(f"{path} cannot be read as a frame index ({error}); write the data "
                             "set again with experiments.collect_frames") from error
        for row, fname in enumerate(files):
            i = position.get((label, fname))
            if i is None:
                raise UsageError(f"{root / name / FRAMES_META} lists {fname}, which is not in "
                                 "the folder")
            episode[i], step[i] = data["episode"][row], data["step"][row]
            for key in columns:
                if key in data:
                    columns[key][i] = np.asarray(data[key][row], dtype=np.float64)
        listed = sum(1 for _, lab in samples if lab == label)
        if listed != len(files):
            raise UsageError(f"{root / name}: {listed} images but {FRAMES_META} lists {len(files)}")
    meta_out: dict[str, np.ndarray] = {"episode": episode, "step": step}
    for key, values in columns.items():
        if all(v is not None for v in values):
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            meta_out[key] = arr
    return meta_out


def _previous_frame(episode: np.ndarray, step: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of the previous frame of the same (class, episode), or the frame itself at the
    start of an episode (or when the previous step is absent)."""
    where = {(int(c), int(e), int(s)): i for i, (c, e, s) in enumerate(zip(labels, episode, step))}
    prev = np.arange(len(episode))
    for i, (c, e, s) in enumerate(zip(labels, episode, step)):
        prev[i] = where.get((int(c), int(e), int(s) - 1), i)
    return prev


def collate_samples(batch: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Stack :class:`Sample` items: ``image (B, C, S, S)`` uint8, ``label (B,)``, ``index (B,)``,
    ``skipped`` (scalar: items of this batch whose own file was unreadable)."""
    return {
        "image": torch.stack([s.image for s in batch]),
        "label": torch.tensor([s.label for s in batch], dtype=torch.long),
        "index": torch.tensor([s.index for s in batch], dtype=torch.long),
        "skipped": torch.tensor(sum(s.skipped for s in batch), dtype=torch.long),
    }


def classes_not_held_out(dataset: ImageFolderDataset, val_idx: np.ndarray) -> list[str]:
    """Classes with no item in the held-out split ``val_idx`` (a class of one image, or of one
    episode of DMC frames, cannot be split): kNN scores on the split say nothing about them."""
    held = set(np.unique(dataset.labels[val_idx]).tolist())
    return [name for label, name in enumerate(dataset.classes) if label not in held]


def split_indices(dataset: ImageFolderDataset, val_fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic held-out split, stratified by class.

    With episode metadata (DMC frames) whole episodes are held out, so that no held-out frame has
    a near-duplicate neighbour in the training split. Returns sorted ``(train, val)`` indices.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction={val_fraction} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    n = len(dataset)
    groups = (dataset.labels * (1 << 32) + dataset.meta["episode"] if dataset.meta is not None
              else np.arange(n))
    val: list[np.ndarray] = []
    for label in np.unique(dataset.labels):
        ids = np.unique(groups[dataset.labels == label])
        take = round(len(ids) * val_fraction)
        if val_fraction > 0 and len(ids) > 1:
            take = min(max(take, 1), len(ids) - 1)
        chosen = rng.permutation(ids)[:take]
        val.append(np.flatnonzero(np.isin(groups, chosen) & (dataset.labels == label)))
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx
