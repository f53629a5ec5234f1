"""Test data: scikit-learn's bundled handwritten digits (real images) as an image folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits_folder(root: str | os.PathLike, size: int = 32, per_class: int | None = None,
                        corrupt: int = 0) -> Path:
    """Write scikit-learn's digits (8x8 grey) as an image folder ``root/<digit>/<n>.png`` of
    ``size x size`` RGB images (nearest upsampling). ``corrupt`` extra files with a ``.png``
    name and garbage bytes are added to class ``0``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = Path(root)
    counts: dict[int, int] = {}
    for image, target in zip(digits.images, digits.target):
        label = int(target)
        if per_class is not None and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        grey = (image / 16.0 * 255.0).astype(np.uint8)
        img = Image.fromarray(grey).resize((size, size), Image.NEAREST).convert("RGB")
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{counts[label] - 1:05d}.png")
    for k in range(corrupt):
        (root / "0" / f"corrupt_{k:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return root
