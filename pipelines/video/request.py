"""The image-to-video request and its validation (no torch: the HTTP layer uses it too).

A request has one of three layouts, checked by :func:`validate_layout`:

- ``image`` alone: one shot of ``duration_s`` (above 5 s: chained segments; ``storyboard`` gives each
  segment its own prompt and length);
- ``image`` + ``last_image``: the video starts on one picture and ends on the other;
- ``views`` (2-8 pictures, no ``image``): one transition of ``transition_s`` per pair of neighbours, each
  pinned at both ends; a ``storyboard`` then has one entry per transition (its own prompt and length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import Image

from pipelines.common.errors import InvalidInputError
from pipelines.common.text import check_text
from pipelines.video.plan import MAX_DURATION_S, MAX_SEGMENT_S, MIN_DURATION_S

MIN_STEPS, MAX_STEPS = 4, 12
MIN_GUIDANCE, MAX_GUIDANCE = 1.0, 20.0
MAX_SEED = 2**63 - 1
DEFAULT_PROMPT = "cinematic motion, the subject moves naturally, gentle camera movement"
DEFAULT_NEGATIVE_PROMPT = "static, blurry, low quality, jpeg artifacts, deformed, extra limbs, watermark"
MIN_VIEWS, MAX_VIEWS = 2, 8
DEFAULT_TRANSITION_S = 2.0
MAX_STORYBOARD_ENTRIES = 64


@dataclass(frozen=True)
class StoryboardEntry:
    """One stretch of a long video (or one transition of a multi-view video) with its own prompt."""

    prompt: str
    duration_s: float


@dataclass(frozen=True)
class VideoRequest:
    image: Image.Image | None = field(repr=False)
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    duration_s: float = 3.0
    steps: int = 4
    guidance_scale: float = 1.0
    guidance_scale_2: float = 1.0
    seed: int = 42
    last_image: Image.Image | None = field(default=None, repr=False)
    views: tuple[Image.Image, ...] = field(default=(), repr=False)
    transition_s: float = DEFAULT_TRANSITION_S
    storyboard: tuple[StoryboardEntry, ...] = ()

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
        validate_layout(
            has_image=self.image is not None,
            has_last_image=self.last_image is not None,
            views=len(self.views),
            transition_s=self.transition_s,
            storyboard=self.storyboard,
            duration_s=self.duration_s,
        )
        pictures = [("image", self.image), ("last_image", self.last_image)]
        pictures += [(f"images[{index}]", view) for index, view in enumerate(self.views)]
        for name, picture in pictures:
            if picture is not None and (not isinstance(picture, Image.Image) or picture.mode != "RGB"):
                raise InvalidInputError(
                    f"{name} must be an RGB picture (decode uploads with decode_image)",
                    field=name.split("[")[0],
                )

    @property
    def first_image(self) -> Image.Image:
        """The picture whose plan sets the output size: ``image``, or the first view."""
        return self.image if self.image is not None else self.views[0]


def storyboard_total_s(entries: tuple[StoryboardEntry, ...] | list[StoryboardEntry]) -> float:
    return round(sum(entry.duration_s for entry in entries), 6)


def validate_layout(
    *,
    has_image: bool,
    has_last_image: bool,
    views: int,
    transition_s: float,
    storyboard: tuple[StoryboardEntry, ...] | list[StoryboardEntry],
    duration_s: float,
    max_duration_s: float = MAX_DURATION_S,
) -> None:
    """Which pictures go together, and whether the storyboard fits the duration (the rules in the docstring)."""
    if views:
        if has_image:
            raise InvalidInputError("send either `image` or `images` (2-8 views), not both", field="images")
        if has_last_image:
            raise InvalidInputError(
                "`last_image` goes with `image`; with `images` the last view is the last frame", field="last_image"
            )
        if not MIN_VIEWS <= views <= MAX_VIEWS:
            raise InvalidInputError(f"`images` takes {MIN_VIEWS} to {MAX_VIEWS} views, got {views}", field="images")
        if not _finite(transition_s) or not MIN_DURATION_S <= transition_s <= MAX_SEGMENT_S:
            raise InvalidInputError(
                f"transition_s must be between {MIN_DURATION_S} and {MAX_SEGMENT_S} seconds, got {transition_s}",
                field="transition_s",
            )
    elif not has_image:
        if has_last_image:
            raise InvalidInputError("`last_image` needs `image` (the first frame)", field="last_image")
        raise InvalidInputError("the `image` file is missing: send `image` (or `images`, 2-8 views)", field="image")
    if not storyboard:
        if views and abs((views - 1) * transition_s - duration_s) > 1e-6:
            raise InvalidInputError(
                f"{views} views at {transition_s:g} s per transition last {(views - 1) * transition_s:g} s, "
                f"not duration_s {duration_s:g} s",
                field="duration_s",
            )
        return
    if len(storyboard) > MAX_STORYBOARD_ENTRIES:
        raise InvalidInputError(
            f"a storyboard has at most {MAX_STORYBOARD_ENTRIES} entries, got {len(storyboard)}", field="storyboard"
        )
    longest = MAX_SEGMENT_S if views else max_duration_s
    for index, entry in enumerate(storyboard):
        try:
            check_text(entry.prompt, "storyboard")
        except InvalidInputError as exc:
            raise InvalidInputError(f"storyboard[{index}].prompt: {exc.message}", field="storyboard") from None
        if not entry.prompt.strip():
            raise InvalidInputError(f"storyboard[{index}].prompt is empty", field="storyboard")
        if not _finite(entry.duration_s) or not MIN_DURATION_S <= entry.duration_s <= longest:
            raise InvalidInputError(
                f"storyboard[{index}].duration_s must be between {MIN_DURATION_S} and {longest} seconds, "
                f"got {entry.duration_s}",
                field="storyboard",
            )
    if views and len(storyboard) != views - 1:
        raise InvalidInputError(
            f"with {views} views the storyboard needs one entry per transition ({views - 1}), got {len(storyboard)}",
            field="storyboard",
        )
    total = storyboard_total_s(storyboard)
    if abs(total - duration_s) > 1e-6:
        raise InvalidInputError(
            f"the storyboard's durations add up to {total:g} s, but duration_s is {duration_s:g} s",
            field="storyboard",
        )
    if total > max_duration_s:
        raise InvalidInputError(
            f"the storyboard lasts {total:g} s; the most is {max_duration_s:g} s", field="storyboard"
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
