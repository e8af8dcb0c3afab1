"""The image-to-video request and its validation (no torch: the HTTP layer uses it too)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import Image

from pipelines.common.errors import InvalidInputError
from pipelines.common.text import check_text
from pipelines.video.plan import MAX_DURATION_S, MIN_DURATION_S

MIN_STEPS, MAX_STEPS = 4, 12
MIN_GUIDANCE, MAX_GUIDANCE = 1.0, 20.0
MAX_SEED = 2**63 - 1
DEFAULT_PROMPT = "cinematic motion, the subject moves naturally, gentle camera movement"
DEFAULT_NEGATIVE_PROMPT = "static, blurry, low quality, jpeg artifacts, deformed, extra limbs, watermark"


@dataclass(frozen=True)
class VideoRequest:
    image: Image.Image = field(repr=False)
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    duration_s: float = 3.0
    steps: int = 4
    guidance_scale: float = 1.0
    guidance_scale_2: float = 1.0
    seed: int = 42

    def __post_init__(self) -> None:
        validate_video_params(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            duration_s=self.duration_s,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            guidance_scale_2=self.guidance_scale_2,
            seed=self.seed,
        )
        if not isinstance(self.image, Image.Image) or self.image.mode != "RGB":
            raise InvalidInputError(
                "the image must be an RGB picture (decode uploads with decode_image)", field="image"
            )


def validate_video_params(
    *,
    prompt: str,
    negative_prompt: str,
    duration_s: float,
    steps: int,
    guidance_scale: float,
    guidance_scale_2: float,
    seed: int,
) -> None:
    """Raise :class:`InvalidInputError` naming the first field that is out of range."""
    check_text(prompt, "prompt")
    check_text(negative_prompt, "negative_prompt")
    if not _finite(duration_s) or not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
        raise InvalidInputError(
            f"duration_s must be between {MIN_DURATION_S} and {MAX_DURATION_S} seconds, got {duration_s}",
            field="duration_s",
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
