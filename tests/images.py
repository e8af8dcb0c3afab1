"""Test pictures made in code: smooth gradients (so a video encoder has real content) of any size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def gradient_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 255, size=3)
    channels = [
        (base[0] + 255 * x / max(width - 1, 1)) % 256,
        (base[1] + 255 * y / max(height - 1, 1)) % 256,
        (base[2] + 128 * (x + y) / max(width + height - 2, 1)) % 256,
    ]
    rgb = Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8))
    return rgb if mode == "RGB" else rgb.convert(mode)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()
