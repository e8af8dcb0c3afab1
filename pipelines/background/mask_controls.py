"""Composition controls: which part of the photo stays in front of the new background.

``apply_composition`` turns the subject matte into the matte the compositor uses, and the mask
preview is rendered from that same array, so what the user previews is exactly what gets blended.

- ``center``: the subject matte as segmented.
- ``left`` / ``right``: the matte restricted to that half of the frame, fading out over a ramp of a
  tenth of the width centred on the midline (a hard cut would show as a seam).
- ``full``: the new background fills the frame except a small central ellipse.
- focus ``scene`` grows the matte so props and surroundings touching the subject stay; ``person``
  keeps it tight.
- ``feather_px`` (0-20) softens the matte's rim by about that many pixels.
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np

from pipelines.background.segmentation.classic import ellipse_mask
from pipelines.common.errors import InvalidInputError

MODES = ("center", "left", "right", "full")
FOCUSES = ("person", "scene")
MAX_FEATHER_PX = 20
HALF_RAMP_FRACTION = 0.1
SCENE_DILATION_FRACTION = 0.03
# "Small" central ellipse for mode full: radii as fractions of width and height.
FULL_ELLIPSE_RX = 0.2
FULL_ELLIPSE_RY = 0.25


def validate_composition(mode: str, focus: str, feather_px: int) -> tuple[str, str, int]:
    """Normalised (mode, focus, feather_px), or InvalidInputError naming the offending field."""
    if not isinstance(mode, str) or mode.strip().lower() not in MODES:
        raise InvalidInputError(f"composition must be one of {', '.join(MODES)}; got {mode!r}", field="composition")
    if not isinstance(focus, str) or focus.strip().lower() not in FOCUSES:
        raise InvalidInputError(f"focus must be one of {', '.join(FOCUSES)}; got {focus!r}", field="focus")
    # bool is an int subclass and is refused; numpy integers and whole floats such as 3.0 are accepted.
    number = isinstance(feather_px, numbers.Real) and not isinstance(feather_px, bool)
    if not number or not math.isfinite(feather_px) or feather_px != int(feather_px):
        raise InvalidInputError(f"feather_px must be a whole number; got {feather_px!r}", field="feather_px")
    if not 0 <= feather_px <= MAX_FEATHER_PX:
        raise InvalidInputError(
            f"feather_px must be between 0 and {MAX_FEATHER_PX}; got {feather_px}", field="feather_px"
        )
    return mode.strip().lower(), focus.strip().lower(), int(feather_px)


def apply_composition(
    alpha: np.ndarray, mode: str = "center", focus: str = "person", feather_px: int = 0
) -> np.ndarray:
    """The matte to composite with: float32 HxW in [0, 1], the same size as ``alpha``."""
    mode, focus, feather_px = validate_composition(mode, focus, feather_px)
    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim != 2 or a.size == 0:
        raise InvalidInputError("the mask must be a non-empty 2-D array", field="mask")
    a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0)
    h, w = a.shape
    if mode == "full":
        a = ellipse_mask(h, w, rx=FULL_ELLIPSE_RX, ry=FULL_ELLIPSE_RY, softness=0.05)
    if focus == "scene":
        a = _dilate(a, max(1, round(SCENE_DILATION_FRACTION * min(h, w))))
    if mode in ("left", "right"):
        a = a * half_weight(w, mode)[None, :]
    if feather_px:
        a = feather(a, feather_px)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def half_weight(width: int, side: str) -> np.ndarray:
    """Per-column weight: 1 on ``side``, 0 on the other half, linear across a width/10 ramp."""
    ramp = max(1.0, HALF_RAMP_FRACTION * width)
    x = np.arange(width, dtype=np.float32) + 0.5
    left = np.clip((width / 2.0 + ramp / 2.0 - x) / ramp, 0.0, 1.0)
    return left if side == "left" else left[::-1].copy()


def _dilate(a: np.ndarray, radius: int) -> np.ndarray:
    # Grey-level dilation keeps a soft rim soft (it moves outwards instead of being thresholded).
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(a, kernel)


def feather(a: np.ndarray, feather_px: int) -> np.ndarray:
    """Gaussian softening whose transition spans roughly ``feather_px`` pixels on each side."""
    if feather_px <= 0:
        return a
    sigma = feather_px / 2.0
    size = 2 * math.ceil(3 * sigma) + 1
    return cv2.GaussianBlur(a, (size, size), sigma, borderType=cv2.BORDER_REPLICATE)


def mask_preview_png(alpha: np.ndarray) -> bytes:
    """8-bit greyscale PNG of a matte (white = kept subject, black = new background)."""
    a = np.clip(np.nan_to_num(np.asarray(alpha, dtype=np.float32), nan=0.0), 0.0, 1.0)
    ok, buffer = cv2.imencode(".png", np.rint(a * 255.0).astype(np.uint8))
    if not ok:  # only for shapes PNG cannot hold (0-sized or not 2-D)
        raise InvalidInputError("the mask cannot be rendered as a PNG", field="mask")
    return buffer.tobytes()
