"""The curated SDXL background scene templates (data in ``pipelines/data/scene_templates.yaml``).

No torch, Ray or FastAPI here: the HTTP layer lists the templates and the background pipeline looks them up.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.common.errors import InvalidInputError

SceneCategory = Literal["professional", "nature", "urban", "artistic", "seasonal"]
# The order clients show the categories in.
CATEGORIES: tuple[str, ...] = get_args(SceneCategory)

MIN_GUIDANCE, MAX_GUIDANCE = 6.5, 8.0

# Applied to every background: the subject is composited on top later, so anything subject-like or any
# lettering in the generated scene competes with it.
BASE_NEGATIVE_PROMPT = (
    "people, person, human, face, body, crowd, text, letters, watermark, logo, signature, "
    "low quality, worst quality, lowres, jpeg artifacts, deformed, distorted, duplicate, frame, border"
)


class SceneTemplate(BaseModel):
    # Frozen because the cached instances are shared by every caller.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", description="Stable snake_case id used by clients.")
    name: str = Field(min_length=1)
    category: SceneCategory
    prompt: str = Field(min_length=1)
    negative_prompt: str = Field(default="", description="Scene-specific terms added to BASE_NEGATIVE_PROMPT.")
    guidance_scale: float = Field(ge=MIN_GUIDANCE, le=MAX_GUIDANCE)


class _SceneLibrary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: tuple[SceneTemplate, ...]

    @model_validator(mode="after")
    def _ids_unique(self) -> _SceneLibrary:
        seen: set[str] = set()
        for template in self.templates:
            if template.id in seen:
                raise ValueError(f"duplicate scene template id {template.id!r}")
            seen.add(template.id)
        return self


@functools.cache
def _library() -> _SceneLibrary:
    # importlib.resources so the file is found in an installed wheel too, not only in the checkout.
    text = resources.files("pipelines").joinpath("data/scene_templates.yaml").read_text(encoding="utf-8")
    return _SceneLibrary.model_validate(yaml.safe_load(text))


@functools.cache
def _by_id() -> dict[str, SceneTemplate]:
    return {template.id: template for template in _library().templates}


def scene_templates() -> list[SceneTemplate]:
    """All templates in file order (grouped by category); a new list each call so callers may reorder it."""
    return list(_library().templates)


def get_scene_template(scene_id: str) -> SceneTemplate:
    try:
        return _by_id()[scene_id]
    except (KeyError, TypeError):  # TypeError: an unhashable value from a loosely typed caller
        raise InvalidInputError(
            f"unknown scene template {scene_id!r}; GET /v1/templates/scenes lists the valid ids", field="scene_id"
        ) from None


def _terms(prompt: str) -> list[str]:
    return [term.strip() for term in prompt.split(",") if term.strip()]


def negative_prompt_for(template: SceneTemplate) -> str:
    """Base terms then the template's own, each once (case-insensitive), so repeats do not add weight."""
    seen: set[str] = set()
    terms: list[str] = []
    for term in _terms(BASE_NEGATIVE_PROMPT) + _terms(template.negative_prompt):
        key = " ".join(term.lower().split())
        if key not in seen:
            seen.add(key)
            terms.append(term)
    return ", ".join(terms)
