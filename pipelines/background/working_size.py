"""Working size for large photos: mattes are computed on a bounded copy and brought back to full size.

Segmentation and the composition controls only need the silhouette, and their costs grow with the
pixel count (``focus=scene``'s grey-level dilation grows with the kernel's area too: 43 s on a 24-MP
photo); so they run on a copy of at most ``working_megapixels`` and the matte is upsampled. The upsampling
is bilinear, then refined with a guided filter steered by the full-resolution photo, only in the band
where the matte is fractional, so edges snap back to the photo's own edges. The composite itself stays
at full resolution (see ``compositor``), so the subject keeps every pixel of detail.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipelines.background.segmentation.classic import guided_filter

# Below one 8-bit step from 0 or 1: the pixels the refinement leaves as they are.
ALPHA_EPS = 1.0 / 512.0
GUIDED_EPS = 1e-3  # as the classic stage's own upsampling
STRIP_ROWS = 512  # the refinement runs in strips of this many rows: its temporaries stay small


def working_scale(width: int, height: int, working_megapixels: float | None) -> float:
    """The factor (<= 1) that brings ``width`` x ``height`` within ``working_megapixels``; 1 when None."""
    if working_megapixels is None or width * height <= working_megapixels * 1e6:
        return 1.0
    return math.sqrt(working_megapixels * 1e6 / (width * height))


def shrink(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The photo at ``scale`` (area filter: no aliasing), at least 8 px a side."""
    if scale >= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def upscale_matte(alpha: np.ndarray, photo_rgb: np.ndarray) -> np.ndarray:
    """``alpha`` (float32, working size) at the size of ``photo_rgb``, edges refined against the photo."""
    h, w = photo_rgb.shape[:2]
    if alpha.shape == (h, w):
        return alpha
    factor = max(h / alpha.shape[0], w / alpha.shape[1])
    up = cv2.resize(alpha.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    soft = (up > ALPHA_EPS) & (up < 1.0 - ALPHA_EPS)
    rows = np.flatnonzero(soft.any(axis=1))
    if rows.size == 0:
        return up
    radius = max(2, round(1.5 * factor))
    cols = np.flatnonzero(soft.any(axis=0))
    x0, x1 = max(int(cols[0]) - radius, 0), min(int(cols[-1]) + radius + 1, w)
    margin = 2 * radius  # the filter's window reaches this far; beyond it the strip's edge effects vanish
    for top in range(max(int(rows[0]) - radius, 0), min(int(rows[-1]) + radius + 1, h), STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, h)
        if not soft[max(top - radius, 0) : bottom + radius, x0:x1].any():
            continue
        y0, y1 = max(top - margin, 0), min(bottom + margin, h)
        grey = cv2.cvtColor(photo_rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        refined = guided_filter(grey, up[y0:y1, x0:x1], radius, GUIDED_EPS)[top - y0 : bottom - y0]
        # Only the fractional band and its filter reach change: the opaque core and the clear
        # background stay exactly 1 and 0.
        near = cv2.dilate(soft[top:bottom, x0:x1].astype(np.uint8), np.ones((3, 2 * radius + 1), np.uint8))
        near = cv2.dilate(near, np.ones((2 * radius + 1, 1), np.uint8)).astype(bool)
        strip = up[top:bottom, x0:x1]
        strip[near] = np.clip(refined[near], 0.0, 1.0)
    return up
