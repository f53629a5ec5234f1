"""Compose video frames: panels side by side, nearest-neighbour upscaling, a text overlay and a
grid of several episodes. Frames are ``(H, W, 3)`` uint8 throughout."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def upscale_nearest(image: np.ndarray, size: int) -> np.ndarray:
    """``image (h, w, 3)`` -> ``(size, size, 3)`` by nearest neighbour (pixels stay sharp, as
    the network saw them)."""
    rows = np.arange(size) * image.shape[0] // size
    cols = np.arange(size) * image.shape[1] // size
    return image[rows][:, cols]


def side_by_side(panels: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Panels of equal height, left to right, with ``gap`` white pixels between them."""
    height = panels[0].shape[0]
    if any(p.shape[0] != height for p in panels):
        raise ValueError(f"panels differ in height: {[p.shape for p in panels]}")
    spacer = np.full((height, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i, panel in enumerate(panels):
        if i and gap:
            parts.append(spacer)
        parts.append(panel)
    return np.concatenate(parts, axis=1)


def overlay_text(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A copy of ``frame`` with ``lines`` written top left, white on a dark box (Pillow's
    built-in font, scaled with the frame)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = max(8, frame.shape[0] // 18)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    text = "\n".join(lines)
    left, top, right, bottom = draw.multiline_textbbox((4, 4), text, font=font)
    draw.rectangle((left - 3, top - 3, right + 3, bottom + 3), fill=(0, 0, 0))
    draw.multiline_text((4, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def grid(episodes: Sequence[Sequence[np.ndarray]], columns: int | None = None,
         gap: int = 2) -> list[np.ndarray]:
    """One video of several episodes tiled row-major (``columns`` None: about square); a
    shorter episode holds its last frame, an empty cell is white."""
    count = len(episodes)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    height, width = episodes[0][0].shape[:2]
    blank = np.full((height, width, 3), 255, np.uint8)
    frames = []
    for t in range(max(len(e) for e in episodes)):
        cells = [e[min(t, len(e) - 1)] for e in episodes] + [blank] * (rows * columns - count)
        lines = [side_by_side(cells[r * columns:(r + 1) * columns], gap) for r in range(rows)]
        spacer = np.full((gap, lines[0].shape[1], 3), 255, np.uint8)
        stacked: list[np.ndarray] = []
        for i, line in enumerate(lines):
            if i and gap:
                stacked.append(spacer)
            stacked.append(line)
        frames.append(np.concatenate(stacked, axis=0))
    return frames
