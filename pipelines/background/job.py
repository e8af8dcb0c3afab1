"""A background-replacement job: the photo, the background choice, the composition options (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from pipelines.background.background_choice import BackgroundChoice
from pipelines.background.mask_controls import validate_composition
from pipelines.background.scene_templates import BASE_NEGATIVE_PROMPT
from pipelines.background.sdxl import DEFAULT_GUIDANCE, DEFAULT_STEPS, validate_background_params
from pipelines.common.errors import InvalidInputError

PROMPT_BACKGROUND = BackgroundChoice(source="prompt")


@dataclass(frozen=True)
class BackgroundJobRequest:
    """``background`` says where the new background comes from; ``prompt`` and the SDXL settings are used
    only when it is generated (``scene`` or ``prompt``), ``background_image`` only when it is ``image``."""

    image: Image.Image = field(repr=False)
    prompt: str = ""
    negative_prompt: str = BASE_NEGATIVE_PROMPT
    composition: str = "center"
    focus: str = "person"
    feather_px: int = 0
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    seed: int = 42
    scene_id: str | None = None
    enrich_prompt: bool = True
    background: BackgroundChoice = PROMPT_BACKGROUND
    background_image: Image.Image | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.background.generated:
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
        wants_image = self.background.source == "image"
        if wants_image and (not isinstance(self.background_image, Image.Image) or self.background_image.mode != "RGB"):
            raise InvalidInputError("the background must be an RGB picture", field="background_image")
        if not wants_image and self.background_image is not None:
            raise InvalidInputError(
                f"a `background_image` was given but the background source is {self.background.source!r}",
                field="background_image",
            )
