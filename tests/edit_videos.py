"""Small videos synthesised with PyAV for the edit tests (no binary fixtures): a bright square moving over a
textured backdrop, in the containers, codecs, rotations and frame rates users upload."""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def moving_square_frame(index: int, width: int, height: int, side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, true subject mask) of frame ``index``: an orange square gliding left to right over a blue-grey
    backdrop with gentle stripes (so segmentation has a subject and the VAE has texture)."""
    side = side or max(8, min(width, height) // 3)
    y, x = np.mgrid[0:height, 0:width]
    backdrop = np.stack(
        [60 + 10 * np.sin(x / 7.0), 90 + 10 * np.sin(y / 9.0), np.full_like(x, 140, dtype=float)], axis=-1
    )
    rgb = backdrop.astype(np.uint8)
    left = int((width - side) * (0.15 + 0.7 * ((index % 40) / 39)))
    top = (height - side) // 2
    mask = np.zeros((height, width), bool)
    mask[top : top + side, left : left + side] = True
    rgb[mask] = (235, 150, 40)
    return rgb, mask


def encode_video(
    path: Path,
    *,
    width: int = 96,
    height: int = 64,
    frames: int = 24,
    fps: int = 24,
    fmt: str = "mp4",
    codec: str = "libx264",
    rotation: int | None = None,
    times_s: list[float] | None = None,
    audio_s: float | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write a test video. ``times_s``: explicit presentation times (variable frame rate); ``audio_s``: add a
    440 Hz AAC/Opus tone of that length; ``rotation``: display-matrix rotation a phone would write."""
    options = {"movflags": "+faststart"} if fmt == "mp4" else {}
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt  # yuv444p for odd sizes: 4:2:0 needs even sides
        if times_s is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio = None
        if audio_s is not None:
            audio = container.add_stream("aac" if fmt == "mp4" else "libopus", rate=48000)
            audio.layout = "mono"
        count = len(times_s) if times_s is not None else frames
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(moving_square_frame(index, width, height)[0], format="rgb24")
            if times_s is not None:
                frame.pts, frame.time_base = round(times_s[index] * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            rate, chunk = 48000, 960
            samples = np.sin(2 * np.pi * 440 * np.arange(int(audio_s * rate)) / rate).astype(np.float32) * 0.3
            for start in range(0, len(samples), chunk):
                piece = samples[start : start + chunk]
                if len(piece) < chunk:
                    piece = np.pad(piece, (0, chunk - len(piece)))
                audio_frame = av.AudioFrame.from_ndarray(piece[None], format="flt", layout="mono")
                audio_frame.sample_rate, audio_frame.pts = rate, start
                container.mux(audio.encode(audio_frame))
            container.mux(audio.encode(None))
    return path


def encode_gif(path: Path, *, width: int = 80, height: int = 60, frames: int = 20, frame_ms: int = 100) -> Path:
    images = [Image.fromarray(moving_square_frame(i, width, height)[0]) for i in range(frames)]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path


def encode_webp(path: Path, *, width: int = 80, height: int = 60, frames: int = 12, frame_ms: int = 80) -> Path:
    images = [Image.fromarray(moving_square_frame(i, width, height)[0]) for i in range(frames)]
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=frame_ms, lossless=True)
    return path


def video_bytes(**kwargs) -> bytes:
    suffix = kwargs.get("fmt", "mp4")
    with tempfile.TemporaryDirectory() as folder:
        return encode_video(Path(folder) / f"clip.{suffix}", **kwargs).read_bytes()


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(moving_square_frame(0, width, height)[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def audio_only_bytes(seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        samples = (np.sin(np.arange(int(16000 * seconds)) / 5.0) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def corrupted_half_way(data: bytes) -> bytes:
    """Overwrite a fifth of the file, starting in its middle, with random bytes."""
    broken = bytearray(data)
    start, length = len(broken) // 2, len(broken) // 5
    broken[start : start + length] = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    return bytes(broken)


def unknown_codec_mkv(data: bytes) -> bytes:
    """An MKV whose video track names a codec no decoder knows (its H.264 CodecID rewritten)."""
    marker = b"V_MPEG4/ISO/AVC"
    at = data.find(marker)
    if at < 0:
        raise ValueError("not an H.264 Matroska file")
    return data[:at] + b"V_VIVIDFLOW/XYZ" + data[at + len(marker) :]
