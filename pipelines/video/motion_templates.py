"""The motion template library: curated image-to-video prompts grouped by what the picture shows.

The prompts live in ``pipelines/data/motion_templates.yaml`` so they can be reviewed and extended without
touching code; this module loads that file once, checks it, and turns a template id plus an optional user
prompt into the text the pipeline receives. Light on purpose (no torch) so the HTTP layer can import it.
"""

from __future__ import annotations

import difflib
import functools
from collections import Counter
from importlib import resources
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.common.errors import InvalidInputError

DATA_PACKAGE = "pipelines"
DATA_FILE = "data/motion_templates.yaml"
LIST_HINT = "GET /v1/templates/motion lists the valid ids"

# Printable ASCII only: the text is sent to a tokenizer and shown in clients, and stray Unicode
# (smart quotes, non-breaking spaces) silently changes how the model reads it.
Text = Annotated[str, Field(min_length=1, pattern=r"^[ -~]+$")]
Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class MotionTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z0-9][a-z0-9_]*$")]
    prompt: Text


class MotionCategory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: Text
    when_to_use: Text
    prompts: tuple[MotionTemplate, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_belong_to_category(self) -> MotionCategory:
        # The category prefix makes an id self-describing in logs and job records.
        for template in self.prompts:
            if not template.id.startswith(f"{self.id}."):
                raise ValueError(f"template id {template.id!r} must start with its category id {self.id!r}.")
        return self


class MotionLibrary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: tuple[MotionCategory, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> MotionLibrary:
        _reject_duplicates("category id", [category.id for category in self.categories])
        templates = [template for category in self.categories for template in category.prompts]
        _reject_duplicates("template id", [template.id for template in templates])
        _reject_duplicates("prompt", [template.prompt for template in templates])
        return self


def _reject_duplicates(what: str, values: list[str]) -> None:
    duplicates = sorted(value for value, count in Counter(values).items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate {what}: {', '.join(repr(value) for value in duplicates)}")


def parse_motion_library(raw: object, source: str = DATA_FILE) -> MotionLibrary:
    """Validate already-parsed YAML; a ``ValueError`` names the file and every problem found."""
    try:
        return MotionLibrary.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"invalid motion template data in {source}: {exc}") from exc


@functools.cache
def _library() -> tuple[MotionLibrary, dict[str, MotionTemplate]]:
    text = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"motion template data in {DATA_FILE} is not valid YAML: {exc}") from exc
    library = parse_motion_library(raw)
    index = {template.id: template for category in library.categories for template in category.prompts}
    return library, index


def motion_categories() -> list[MotionCategory]:
    """All categories in file order; the models are frozen, so sharing them is safe."""
    return list(_library()[0].categories)


def get_motion_template(template_id: str) -> MotionTemplate:
    index = _library()[1]
    template = index.get(template_id)
    if template is None:
        close = difflib.get_close_matches(str(template_id), index, n=1)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInputError(
            f"unknown motion template {template_id!r}{suggestion}; {LIST_HINT}", field="template_id"
        )
    return template


def compose_prompt(template_id: str | None, user_prompt: str | None) -> str:
    """The prompt for a request: template text first, then the user's words as extra clauses.

    The template leads so the motion the user picked is stated first and their own words only refine
    it. Blank values count as absent (HTML forms send empty strings); with neither given the
    result is empty and the caller applies its default prompt.
    """
    user_text = (user_prompt or "").strip()
    if not (template_id or "").strip():
        return user_text
    template_text = get_motion_template(template_id.strip()).prompt
    return f"{template_text}, {user_text}" if user_text else template_text
