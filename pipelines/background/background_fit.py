"""Fitting a caller's own background picture to the subject photo's frame, and plain colour backgrounds.

Three fits, as in CSS ``object-fit``:

- ``cover``: scale to fill the frame and crop what overflows; the source is cropped to the frame's aspect
  ratio *before* resizing, so a very wide or tall picture never becomes a huge intermediate image;
- ``contain``: scale to fit inside the frame and fill the rest (the letterbox) with a colour;
- ``stretch``: resize to the frame, ignoring the aspect ratio.

``position`` says which part is kept when cropping (``cover``) or where the picture sits in the letterbox
(``contain``): ``center``, or against one edge (``top``, ``bottom``, ``left``, ``right``); the other axis
stays centred. When centring leaves an odd remainder, the extra pixel goes to the right or the bottom.
The maths is :func:`plan_fit` (pure integers, no pixels); :func:`fit_background_image` applies it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipelines.background.compositor import fit_background
from pipelines.common.errors import InvalidInputError

FITS: tuple[str, ...] = ("cover", "contain", "stretch")
POSITIONS: tuple[str, ...] = ("center", "top", "bottom", "left", "right")
DEFAULT_FIT = "cover"
DEFAULT_POSITION = "center"
# Letterbox fill of `contain` when no colour is given: black, as video letterboxing is.
DEFAULT_FILL = (0, 0, 0)
HEX_COLOR_PATTERN = r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"
_HEX_COLOR = re.compile(HEX_COLOR_PATTERN)

RGB = tuple[int, int, int]


def parse_hex_color(text: str, *, field: str = "background_color") -> RGB:
    """``#rgb`` or ``#rrggbb`` (either case) -> (r, g, b); ``#f80`` is ``#ff8800``."""
    if not isinstance(text, str) or not _HEX_COLOR.match(text.strip()):
        raise InvalidInputError(
            f"`{field}` must be a hex colour such as #1e90ff or #fff, got {str(text)[:40]!r}", field=field
        )
    digits = text.strip()[1:]
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def hex_color(rgb: RGB) -> str:
    """(r, g, b) -> ``#rrggbb`` (lower case): how a colour is recorded in a job's params."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def validate_fit(fit: str, position: str) -> tuple[str, str]:
    if fit not in FITS:
        raise InvalidInputError(f"`fit` must be one of {', '.join(FITS)}, got {str(fit)[:40]!r}", field="fit")
    if position not in POSITIONS:
        raise InvalidInputError(
            f"`position` must be one of {', '.join(POSITIONS)}, got {str(position)[:40]!r}", field="position"
        )
    return fit, position


@dataclass(frozen=True)
class FitPlan:
    """Where the background's pixels go: ``crop`` (x0, y0, x1, y1) of the source is resized to ``size``
    (width, height) and pasted at ``offset`` (x, y) of the frame; the rest of the frame is letterbox."""

    crop: tuple[int, int, int, int]
    size: tuple[int, int]
    offset: tuple[int, int]


def _anchor(free: int, position: str, start: str, end: str) -> int:
    """The offset along one axis with ``free`` spare pixels (>= 0): at the start, the end, or centred."""
    if position == start:
        return 0
    if position == end:
        return free
    return free // 2


def plan_fit(source: tuple[int, int], frame: tuple[int, int], fit: str, position: str = DEFAULT_POSITION) -> FitPlan:
    """The placement of a ``source`` (width, height) picture in a ``frame`` (width, height)."""
    fit, position = validate_fit(fit, position)
    (sw, sh), (fw, fh) = source, frame
    if min(sw, sh, fw, fh) < 1:
        raise ValueError(f"sizes must be positive, got source {source} and frame {frame}")
    if fit == "stretch":
        return FitPlan(crop=(0, 0, sw, sh), size=(fw, fh), offset=(0, 0))
    if fit == "cover":
        # The largest window of the source with the frame's aspect ratio (cross-multiplied: exact integers).
        if sw * fh >= fw * sh:  # the source is wider than the frame: crop left/right
            cw, ch = min(sw, max(1, round(sh * fw / fh))), sh
        else:  # taller: crop top/bottom
            cw, ch = sw, min(sh, max(1, round(sw * fh / fw)))
        # The window slides in the source: the spare source pixels go before or after it.
        x0 = _anchor(sw - cw, position, "left", "right")
        y0 = _anchor(sh - ch, position, "top", "bottom")
        return FitPlan(crop=(x0, y0, x0 + cw, y0 + ch), size=(fw, fh), offset=(0, 0))
    # contain: the constrained side fills the frame exactly, the other is scaled and rounded.
    if sw * fh >= fw * sh:
        w, h = fw, min(fh, max(1, round(sh * fw / sw)))
    else:
        w, h = min(fw, max(1, round(sw * fh / sh))), fh
    offset = (_anchor(fw - w, position, "left", "right"), _anchor(fh - h, position, "top", "bottom"))
    return FitPlan(crop=(0, 0, sw, sh), size=(w, h), offset=offset)


def fit_background_image(
    background_rgb: np.ndarray,
    width: int,
    height: int,
    fit: str = DEFAULT_FIT,
    position: str = DEFAULT_POSITION,
    fill: RGB = DEFAULT_FILL,
) -> np.ndarray:
    """The background (uint8 HxWx3) fitted to a ``width`` x ``height`` frame; ``fill`` colours the letterbox."""
    bg = np.asarray(background_rgb)
    if bg.dtype != np.uint8 or bg.ndim != 3 or bg.shape[2] != 3:
        raise InvalidInputError("the background must be an HxWx3 uint8 RGB array", field="background_image")
    plan = plan_fit((bg.shape[1], bg.shape[0]), (width, height), fit, position)
    x0, y0, x1, y1 = plan.crop
    resized = fit_background(np.ascontiguousarray(bg[y0:y1, x0:x1]), *plan.size)
    if plan.size == (width, height):
        return resized
    frame = solid_background(width, height, fill)
    ox, oy = plan.offset
    frame[oy : oy + plan.size[1], ox : ox + plan.size[0]] = resized
    return frame


def solid_background(width: int, height: int, rgb: RGB) -> np.ndarray:
    """A plain ``width`` x ``height`` background of one colour (uint8 HxWx3)."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = np.asarray(rgb, np.uint8)
    return frame
