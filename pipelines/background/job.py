"""A background-replacement job: the photo, the scene, the composition options (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from pipelines.background.mask_controls import validate_composition
from pipelines.background.scene_templates import BASE_NEGATIVE_PROMPT
from pipelines.background.sdxl import DEFAULT_GUIDANCE, DEFAULT_STEPS, validate_background_params
from pipelines.common.errors import InvalidInputError


@dataclass(frozen=True)
class BackgroundJobRequest:
    image: Image.Image = field(repr=False)
    prompt: str
    negative_prompt: str = BASE_NEGATIVE_PROMPT
    composition: str = "center"
    focus: str = "person"
    feather_px: int = 0
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    seed: int = 42
    scene_id: str | None = None
    enrich_prompt: bool = True

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise InvalidInputError("give a `scene_id` or a `prompt` describing the new background", field="prompt")
        validate_background_params(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            seed=self.seed,
        )
        validate_composition(self.composition, self.focus, self.feather_px)
        if not isinstance(self.image, Image.Image) or self.image.mode != "RGB":
            raise InvalidInputError("the image must be an RGB picture", field="image")
