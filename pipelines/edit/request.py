"""The edit request and its validation (no torch: the HTTP layer uses it too)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipelines.common.errors import InvalidInputError
from pipelines.common.text import check_text
from pipelines.edit.control import CONTROLS

MODES = ("style", "replace")
MIN_STEPS, MAX_STEPS = 4, 40
MIN_STRENGTH, MAX_STRENGTH = 0.0, 2.0
DEFAULT_STRENGTH = 1.0
MIN_GUIDANCE, MAX_GUIDANCE = 1.0, 20.0
MAX_SEED = 2**63 - 1
DEFAULT_NEGATIVE_PROMPT = "blurry, low quality, jpeg artifacts, flicker, distorted, deformed, watermark"


@dataclass(frozen=True)
class EditRequest:
    frames: np.ndarray = field(repr=False)  # uint8 (frames, h, w, 3), 4k+1 frames at the output size
    prompt: str
    mode: str = "style"
    masks: np.ndarray | None = field(default=None, repr=False)  # bool (frames, h, w), mode=replace
    reference_image: Image.Image | None = field(default=None, repr=False)
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    strength: float = DEFAULT_STRENGTH
    steps: int = 4
    guidance_scale: float = 1.0
    guidance_scale_2: float = 1.0
    seed: int = 42
    control: str = "edges"
    feather_px: int = 6

    def __post_init__(self) -> None:
        validate_edit_params(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            mode=self.mode,
            strength=self.strength,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            guidance_scale_2=self.guidance_scale_2,
            seed=self.seed,
            control=self.control,
        )
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise InvalidInputError("frames must be uint8 shaped (frames, height, width, 3)", field="video")
        if (len(frames) - 1) % 4 or len(frames) < 5:
            raise InvalidInputError(f"an edit needs 4k+1 frames (at least 5), got {len(frames)}", field="video")
        if frames.shape[1] % 16 or frames.shape[2] % 16:
            raise InvalidInputError(
                f"height and width have to be multiples of 16 but are {frames.shape[1]} and {frames.shape[2]}; "
                "decode uploads with pipelines.edit.video_input.decode_video",
                field="video",
            )
        if self.mode == "replace":
            if self.masks is None or self.masks.shape != frames.shape[:3]:
                raise InvalidInputError("mode=replace needs one mask per frame, of the frames' size", field="video")
        elif self.masks is not None or self.reference_image is not None:
            raise InvalidInputError("masks and reference_image apply to mode=replace only", field="mode")


def validate_edit_params(
    *,
    prompt: str,
    negative_prompt: str,
    mode: str,
    strength: float,
    steps: int,
    guidance_scale: float,
    guidance_scale_2: float,
    seed: int,
    control: str,
) -> None:
    """Raise :class:`InvalidInputError` naming the first field that is out of range."""
    check_text(prompt, "prompt")
    if not prompt.strip():
        raise InvalidInputError("prompt is empty; say what the edited video should show", field="prompt")
    check_text(negative_prompt, "negative_prompt")
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    if control not in CONTROLS:
        raise InvalidInputError(f"control must be one of {', '.join(CONTROLS)}, got {control!r}", field="control")
    if not _finite(strength) or not MIN_STRENGTH <= strength <= MAX_STRENGTH:
        raise InvalidInputError(
            f"strength must be between {MIN_STRENGTH} and {MAX_STRENGTH}, got {strength}", field="strength"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise InvalidInputError(
            f"steps must be a whole number from {MIN_STEPS} to {MAX_STEPS}, got {steps}", field="steps"
        )
    for name, value in (("guidance_scale", guidance_scale), ("guidance_scale_2", guidance_scale_2)):
        if not _finite(value) or not MIN_GUIDANCE <= value <= MAX_GUIDANCE:
            raise InvalidInputError(
                f"{name} must be between {MIN_GUIDANCE} and {MAX_GUIDANCE} (1.0 turns guidance off), got {value}",
                field=name,
            )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInputError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed}", field="seed")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
