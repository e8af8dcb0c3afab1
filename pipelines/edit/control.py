"""Structure videos for ``mode=style``: what of the source the new look must follow, with no extra weights.

VACE takes a control video in place of the source and regenerates every pixel under it, so layout and
motion come from the control while the prompt sets the look. ``edges`` (Canny lines, white on black, as
VACE's scribble/edge tasks see them) keeps outlines and lets colours and textures change freely;
``greyscale`` keeps the tonal layout too (VACE's colourisation task), for edits that should stay close.
"""

from __future__ import annotations

import cv2
import numpy as np

CONTROLS = ("edges", "greyscale")
# Canny thresholds on a lightly blurred frame: photos keep their main outlines and lose sensor noise.
CANNY_LOW, CANNY_HIGH = 60, 140


def control_video(frames: np.ndarray, control: str) -> np.ndarray:
    """uint8 (frames, h, w, 3) -> the control video, same shape."""
    if control not in CONTROLS:
        raise ValueError(f"unknown control {control!r}; choose one of {', '.join(CONTROLS)}")
    out = np.empty_like(frames)
    for index, frame in enumerate(frames):
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if control == "edges":
            grey = cv2.Canny(cv2.GaussianBlur(grey, (3, 3), 0), CANNY_LOW, CANNY_HIGH)
        out[index] = grey[..., None]
    return out
