"""Drawing synthetic pictures with exact, supersampled coverage: ground truth is drawn, not estimated."""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.background.compositor import linear_to_srgb, srgb_to_linear

SS = 4  # supersampling factor for drawing: gives true fractional coverage on edges and strands


# ---------------------------------------------------------------- synthetic pictures
def noise_field(size: int, rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid upsampled with bicubic interpolation."""
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(size, size, channels), 0.0, 1.0)


def textured(size: int, rng: np.random.Generator, top, bottom, detail: float = 40.0) -> np.ndarray:
    """A backdrop: vertical gradient between two sRGB colours plus two scales of blotches."""
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    base = (1 - t) * np.float32(top) + t * np.float32(bottom)
    blotches = noise_field(size, rng, 6, 3) - 0.5 + 0.5 * (noise_field(size, rng, 40, 3) - 0.5)
    return np.clip(base + detail * blotches, 0, 255).astype(np.uint8)


def tinted(size: int, rng: np.random.Generator, colour, spread: float = 0.25) -> np.ndarray:
    # Broad shading plus fine texture (about 6 px features): real fabric, skin and fur are not flat,
    # and a flat foreground would flatter any colour estimator.
    shade = 1.0 + spread * (noise_field(size, rng, 8) - 0.5) + 0.2 * (noise_field(size, rng, max(8, size // 6)) - 0.5)
    return np.clip(np.float32(colour) * shade, 0, 255)


def rasterise(size: int, draw) -> np.ndarray:
    """Coverage in [0, 1] of whatever ``draw(canvas, ss)`` paints (255 = full) at SS x resolution."""
    canvas = np.zeros((size * SS, size * SS), np.uint8)
    draw(canvas, SS)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def ellipse(cx: float, cy: float, rx: float, ry: float, start: int = 0, end: int = 360):
    """Drawing step for ``rasterise``: a filled ellipse (or sector), positions as fractions of the side."""

    def draw(canvas: np.ndarray, n: int) -> None:
        centre, axes = (int(cx * n), int(cy * n)), (int(rx * n), int(ry * n))
        cv2.ellipse(canvas, centre, axes, 0, start, end, 255, -1)

    return draw


def box(x0: float, y0: float, x1: float, y1: float):
    def draw(canvas: np.ndarray, n: int) -> None:
        cv2.rectangle(canvas, (int(x0 * n), int(y0 * n)), (int(x1 * n), int(y1 * n)), 255, -1)

    return draw


def shape(size: int, *steps) -> np.ndarray:
    def draw(canvas: np.ndarray, ss: int) -> None:
        for step in steps:
            step(canvas, size * ss)

    return rasterise(size, draw)


def person_shape(size: int) -> np.ndarray:
    """Head, neck and shoulders cut by the bottom edge, as in most portraits."""
    return shape(size, ellipse(0.5, 0.36, 0.15, 0.19), box(0.45, 0.5, 0.55, 0.7), ellipse(0.5, 1.02, 0.38, 0.36, 180))


def strands(size: int, rng: np.random.Generator, centre, radius, count, length, arc=(180, 360)) -> np.ndarray:
    """Thin soft strands (hair or fur): random walks leaving an ellipse outline, sub-pixel wide."""

    def draw(c, s):
        for _ in range(count):
            ang = np.deg2rad(rng.uniform(*arc))
            normal = np.array([np.cos(ang), np.sin(ang)])
            p = (np.array(centre) + normal * np.array(radius) * rng.uniform(0.85, 1.0)) * size * s
            heading = ang + rng.normal(0, 0.4)
            pts = [p.copy()]
            for _ in range(12):
                heading += rng.normal(0, 0.15)
                p = p + np.array([np.cos(heading), np.sin(heading)]) * length * size * s * rng.uniform(0.5, 1.5) / 12
                pts.append(p.copy())
            level = int(rng.uniform(0.35, 1.0) * 255)
            cv2.polylines(c, [np.int32(pts)], False, level, int(rng.integers(1, 4)), cv2.LINE_8)

    return rasterise(size, draw)


def over(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Physically mixed photo: coverage-weighted average of light, i.e. in linear RGB."""
    f_lin = srgb_to_linear(np.clip(np.rint(fg), 0, 255).astype(np.uint8))
    return linear_to_srgb(alpha[..., None] * f_lin + (1 - alpha[..., None]) * srgb_to_linear(bg))
