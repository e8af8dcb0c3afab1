"""H.264 MP4 export through PyAV (libx264 ships inside the wheel)."""

from __future__ import annotations

import os
import time
from fractions import Fraction

import av
import numpy as np

from pipelines.common.files import atomic_path

DEFAULT_CRF = 18
DEFAULT_PRESET = "veryfast"


def export_mp4(
    frames: np.ndarray,
    path: str | os.PathLike,
    *,
    fps: int = 16,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> float:
    """Write ``frames`` (uint8, frames x height x width x 3) as H.264 yuv420p with ``+faststart``.

    yuv420p needs even sides, so an odd width or height is padded by repeating the last column or
    row. The file is written beside ``path`` and renamed, so readers never see a partial video.
    Returns the seconds spent encoding.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames shaped (n, h, w, 3), got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("cannot export a video with no frames")
    started = time.perf_counter()
    frames = _pad_to_even(frames)
    with (
        atomic_path(path) as partial,
        av.open(str(partial), mode="w", format="mp4", options={"movflags": "+faststart"}) as container,
    ):
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return time.perf_counter() - started


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not pad_h and not pad_w:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def probe_video(path: str | os.PathLike) -> dict:
    """Decode a video fully and describe it: codec, pixel format, fps, size, frame count."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "fps": float(stream.average_rate) if stream.average_rate else None,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "frames": len(frames),
            "pixels": np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8),
        }
