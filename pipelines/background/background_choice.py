"""Which background a job gets, resolved once from the request's fields, with the conflicts refused.

Five sources: a ``scene`` template or a ``prompt`` (SDXL generates the background), the caller's own
``image`` (fitted to the photo), a plain ``color``, or ``none`` (``output=cutout``: the subject alone, as
an RGBA PNG). Only the first two run SDXL.

The rules, each broken one a 400 naming the field:

- ``background_image`` and ``background_color`` replace the generated background, so ``scene_id``,
  ``prompt`` and ``negative_prompt`` conflict with them;
- ``background_image`` with ``background_color`` is allowed only with ``fit=contain``, where the colour
  fills the letterbox; with ``cover`` or ``stretch`` no letterbox exists, so the colour would be ignored;
- ``fit`` and ``position`` place a ``background_image`` and mean nothing without one;
- ``output=cutout`` has no background at all: every background field conflicts with it.

``steps``, ``guidance_scale``, ``seed`` and ``enrich_prompt`` tune SDXL; with the other sources they are
not used (and not recorded), rather than refused, because ``steps`` and ``enrich_prompt`` have defaults
that form-filling clients send unasked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.background.background_fit import (
    DEFAULT_FILL,
    DEFAULT_FIT,
    DEFAULT_POSITION,
    RGB,
    fit_background_image,
    hex_color,
    parse_hex_color,
    solid_background,
    validate_fit,
)
from pipelines.common.errors import InvalidInputError

SOURCES: tuple[str, ...] = ("scene", "prompt", "image", "color", "none")
GENERATED_SOURCES: tuple[str, ...] = ("scene", "prompt")
OUTPUTS: tuple[str, ...] = ("composite", "cutout")
# The caller's background picture is stored beside the job's input as `<job id>.background.png`.
UPLOAD_SUFFIX = "background.png"


@dataclass(frozen=True)
class BackgroundChoice:
    source: str  # one of SOURCES
    output: str = "composite"
    fit: str | None = None  # image only
    position: str | None = None  # image only
    color: RGB | None = None  # the plain colour (color) or the letterbox fill (image, contain)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")

    @property
    def generated(self) -> bool:
        """Whether SDXL makes this background."""
        return self.source in GENERATED_SOURCES

    def record(self) -> dict:
        """The resolved choice as it goes into the job's params and result details (JSON)."""
        record: dict = {"source": self.source, "output": self.output}
        if self.source == "image":
            record |= {"fit": self.fit, "position": self.position}
            if self.fit == "contain":
                record["fill"] = hex_color(self.color or DEFAULT_FILL)
        elif self.source == "color":
            record["color"] = hex_color(self.color)
        return record

    @classmethod
    def from_record(cls, record: dict) -> BackgroundChoice:
        fill = record.get("fill") or record.get("color")
        return cls(
            source=record["source"],
            output=record.get("output", "composite"),
            fit=record.get("fit"),
            position=record.get("position"),
            color=parse_hex_color(fill) if fill else None,
        )


def _given(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def resolve_background_choice(
    *,
    scene_id: str | None = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    has_background_image: bool = False,
    background_color: str | None = None,
    fit: str | None = None,
    position: str | None = None,
    output: str | None = None,
) -> BackgroundChoice:
    """The background source for these request fields (None or blank = not given); conflicts raise 400s."""
    output = output or "composite"
    if output not in OUTPUTS:
        raise InvalidInputError(
            f"`output` must be one of {', '.join(OUTPUTS)}, got {str(output)[:40]!r}", field="output"
        )
    generation = {"scene_id": scene_id, "prompt": prompt, "negative_prompt": negative_prompt}
    given_generation = [name for name, value in generation.items() if _given(value)]
    color = parse_hex_color(background_color) if _given(background_color) else None
    if fit is not None or position is not None:
        validate_fit(fit or DEFAULT_FIT, position or DEFAULT_POSITION)

    if output == "cutout":
        extras = {
            "background_image": has_background_image,
            "background_color": color is not None,
            "fit": fit is not None,
            "position": position is not None,
            **{name: True for name in given_generation},
        }
        for name, present in extras.items():
            if present:
                raise InvalidInputError(
                    f"`output=cutout` returns the subject alone, with no background: leave out `{name}`", field=name
                )
        return BackgroundChoice(source="none", output=output)

    own = "background_image" if has_background_image else "background_color" if color is not None else None
    if own is not None and given_generation:
        raise InvalidInputError(
            f"`{own}` replaces the generated background, so `{given_generation[0]}` has nothing to describe: "
            f"send either `scene_id`/`prompt` or `{own}`",
            field=own,
        )
    if has_background_image:
        fit, position = fit or DEFAULT_FIT, position or DEFAULT_POSITION
        if color is not None and fit != "contain":
            raise InvalidInputError(
                f"with `background_image`, `background_color` is the letterbox fill of `fit=contain`; "
                f"`fit={fit}` leaves no letterbox to fill",
                field="background_color",
            )
        return BackgroundChoice(source="image", output=output, fit=fit, position=position, color=color)
    for name, value in (("fit", fit), ("position", position)):
        if value is not None:
            raise InvalidInputError(
                f"`{name}` places a `background_image`; send one, or leave out `{name}`", field=name
            )
    if color is not None:
        return BackgroundChoice(source="color", output=output, color=color)
    if _given(scene_id):
        return BackgroundChoice(source="scene", output=output)
    if _given(prompt):
        return BackgroundChoice(source="prompt", output=output)
    raise InvalidInputError(
        "give the new background: a `scene_id` and/or a `prompt` (generated), a `background_image` or a "
        "`background_color`; or `output=cutout` for the subject alone",
        field="prompt",
    )


def own_background(
    choice: BackgroundChoice, width: int, height: int, background_rgb: np.ndarray | None = None
) -> np.ndarray:
    """The ``width`` x ``height`` background of an ``image`` or ``color`` choice (uint8 HxWx3)."""
    if choice.source == "image":
        if background_rgb is None:
            raise ValueError("an image background needs the picture")
        return fit_background_image(
            background_rgb, width, height, choice.fit, choice.position, choice.color or DEFAULT_FILL
        )
    if choice.source == "color":
        return solid_background(width, height, choice.color)
    raise ValueError(f"a {choice.source!r} background is not the caller's own")
