"""The resolution rule and the frame rule for image-to-video, in one place.

The plan endpoint and the pipeline both call :func:`plan_video`, so what a user previews is exactly
what gets rendered (VividFlow's preview used a different formula from its resize).

Every other picture of a request (``last_image``, the later views of a multi-view video) follows one rule:
it takes the *first* picture's output size, is centre-cropped to that aspect ratio (the largest centred box
that fits) and Lanczos-resized, so nothing is stretched and mixed aspect ratios need no choice from the user.
:func:`follower_crop` computes that crop and the plan endpoint reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

FPS = 16
LONG_SIDE = 832
SHORT_SIDE = 480
SQUARE_SIDE = 640
SIDE_MULTIPLE = 16  # VAE stride 8 times transformer patch 2
MAX_ASPECT = LONG_SIDE / SHORT_SIDE
# Sides within 2 % of each other count as square; otherwise a 1000x990 photo would jump to 832x816.
SQUARE_TOLERANCE = 0.02
MIN_DURATION_S = 0.5
# One render of the model: 81 frames. Longer videos are chained segments of at most this long.
MAX_SEGMENT_S = 5.0
# The ceiling of any video; a deployment sets its own maximum at or below it (``ingress.videos``).
MAX_DURATION_S = 60.0
DEFAULT_MAX_DURATION_S = 30.0


@dataclass(frozen=True)
class VideoPlan:
    input_width: int
    input_height: int
    crop_box: tuple[int, int, int, int]  # left, upper, right, lower in input pixels
    width: int
    height: int
    frames: int
    fps: int
    duration_s: float

    def as_dict(self) -> dict:
        return {
            "input": {"width": self.input_width, "height": self.input_height},
            "crop": dict(zip(("left", "top", "right", "bottom"), self.crop_box, strict=True)),
            "output": {"width": self.width, "height": self.height},
            "frames": self.frames,
            "fps": self.fps,
            "duration_s": self.duration_s,
        }


def frames_for_duration(duration_s: float) -> int:
    """Frames at 16 fps, always 4k+1 (the VAE's temporal stride): 0.5 s -> 9, 3 s -> 49, 5 s -> 81."""
    return 1 + 4 * math.floor(duration_s * FPS / 4 + 0.5)


def _multiple_of(value: float, multiple: int) -> int:
    return int(math.floor(value / multiple + 0.5)) * multiple


def output_size(width: int, height: int) -> tuple[tuple[int, int, int, int], int, int]:
    """Centre-crop box and output size for an input of ``width`` x ``height``."""
    aspect = width / height
    if abs(aspect - 1.0) <= SQUARE_TOLERANCE:
        return (0, 0, width, height), SQUARE_SIDE, SQUARE_SIDE
    crop = (0, 0, width, height)
    if aspect > MAX_ASPECT:
        kept = round(height * MAX_ASPECT)
        left = (width - kept) // 2
        crop, aspect = (left, 0, left + kept, height), MAX_ASPECT
    elif aspect < 1 / MAX_ASPECT:
        kept = round(width * MAX_ASPECT)
        top = (height - kept) // 2
        crop, aspect = (0, top, width, top + kept), 1 / MAX_ASPECT
    landscape = aspect > 1.0
    long_side, short_side = LONG_SIDE, LONG_SIDE / (aspect if landscape else 1 / aspect)
    short_side = min(max(_multiple_of(short_side, SIDE_MULTIPLE), SHORT_SIDE), LONG_SIDE)
    out_w, out_h = (long_side, short_side) if landscape else (short_side, long_side)
    return crop, out_w, out_h


def plan_video(width: int, height: int, duration_s: float) -> VideoPlan:
    crop, out_w, out_h = output_size(width, height)
    return VideoPlan(
        input_width=width,
        input_height=height,
        crop_box=crop,
        width=out_w,
        height=out_h,
        frames=frames_for_duration(duration_s),
        fps=FPS,
        duration_s=duration_s,
    )


def follower_crop(width: int, height: int, plan: VideoPlan) -> tuple[int, int, int, int]:
    """The centred crop box of a later picture (``last_image``, a later view) with the plan's aspect ratio."""
    target = plan.width / plan.height
    if width / height > target:  # wider than the output: keep the full height
        kept = min(width, max(1, round(height * target)))
        left = (width - kept) // 2
        return left, 0, left + kept, height
    kept = min(height, max(1, round(width / target)))
    top = (height - kept) // 2
    return 0, top, width, top + kept


def prepare_follower(image: Image.Image, plan: VideoPlan) -> Image.Image:
    """Crop and Lanczos-resize a later picture to the first picture's output size (the rule above)."""
    box = follower_crop(image.width, image.height, plan)
    cropped = image.crop(box) if box != (0, 0, *image.size) else image
    return cropped.resize((plan.width, plan.height), Image.Resampling.LANCZOS)


def follower_dict(width: int, height: int, plan: VideoPlan) -> dict:
    """What the plan endpoint reports for a later picture: its size, the crop kept, the size it becomes."""
    box = follower_crop(width, height, plan)
    return {
        "input": {"width": width, "height": height},
        "crop": dict(zip(("left", "top", "right", "bottom"), box, strict=True)),
        "output": {"width": plan.width, "height": plan.height},
    }


def prepare_image(image: Image.Image, plan: VideoPlan) -> Image.Image:
    """Crop and Lanczos-resize ``image`` to the plan's output size."""
    if image.size != (plan.input_width, plan.input_height):
        raise ValueError(f"plan was made for {plan.input_width}x{plan.input_height}, image is {image.size}")
    cropped = image.crop(plan.crop_box) if plan.crop_box != (0, 0, *image.size) else image
    return cropped.resize((plan.width, plan.height), Image.Resampling.LANCZOS)


__all__ = [
    "FPS",
    "VideoPlan",
    "follower_crop",
    "follower_dict",
    "frames_for_duration",
    "output_size",
    "plan_video",
    "prepare_follower",
    "prepare_image",
]
