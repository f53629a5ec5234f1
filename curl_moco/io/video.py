"""MP4 videos of evaluation episodes (imageio + the ffmpeg binary shipped by imageio-ffmpeg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: int = 30) -> Path:
    """Write ``frames`` (each ``(H, W, 3)`` uint8, H and W even) as an H.264 mp4 at ``fps``."""
    if len(frames) == 0:
        raise ValueError("write_video: no frames to write")
    first = np.asarray(frames[0])
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"write_video: frames must be (H, W, 3) uint8, got {first.shape} "
                         f"{first.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=2, quality=7, ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(_even(np.asarray(frame)))
    os.replace(tmp, path)
    return path


def count_video_frames(path: str | os.PathLike) -> int:
    """Number of frames decoded from a video file (used by tests and tools)."""
    with imageio.get_reader(path) as reader:
        return sum(1 for _ in reader)


def _even(frame: np.ndarray) -> np.ndarray:
    """Crop one row/column if needed: yuv420p needs even height and width."""
    height, width = frame.shape[:2]
    return frame[: height - height % 2, : width - width % 2]
