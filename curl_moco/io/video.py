"""MP4 videos of evaluation episodes (imageio + the ffmpeg binary shipped by imageio-ffmpeg),
animated GIFs (Pillow) and PNG stills. Frame rates are exact (``fps`` may be fractional:
cartpole's real time is 1 / (0.01 s x 8) = 12.5 frames per second)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 30) -> Path:
    """Write ``frames`` (each ``(H, W, 3)`` uint8; an odd H or W loses its last row/column) as
    an H.264 mp4 at ``fps`` frames per second."""
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


def gif_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """``frames`` (each ``(H, W, 3)`` uint8) as an endlessly looping animated GIF at ``fps``
    (GIF stores delays in 1/100 s: 12.5 fps is exact, 30 fps becomes 1/30 s rounded)."""
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("gif: no frames to write")
    images = [Image.fromarray(np.asarray(frame)) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=1000.0 / fps, loop=0, optimize=False)
    return buffer.getvalue()


def write_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write ``frames`` as an animated GIF (see :func:`gif_bytes`) atomically."""
    return _write_atomic(Path(path), gif_bytes(frames, fps))


def write_png(path: str | os.PathLike, frame: np.ndarray) -> Path:
    """Write one ``(H, W, 3)`` uint8 frame as a PNG atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame)).save(buffer, format="PNG", optimize=True)
    return _write_atomic(Path(path), buffer.getvalue())


def video_fps(path: str | os.PathLike) -> float:
    """The frame rate stored in a video file (frames per second)."""
    with imageio.get_reader(path) as reader:
        return float(reader.get_meta_data()["fps"])


def _write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    tmp.write_bytes(data)
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
