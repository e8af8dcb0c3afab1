"""The request parameters of the upload endpoints, declared once for both clients and the CLI.

Each ``TypedDict`` lists the form fields one endpoint takes, so ``client.submit_video(image, steps=8)``
is checked by a type checker and a misspelt option fails at once, here, instead of as a ``400`` from
the server. The ranges mirror the API's v1 bounds so the CLI can refuse a bad value before any request;
``tests/test_cli.py`` compares them with the served OpenAPI document, so they cannot drift silently. The
server stays the judge: the client itself does not range-check, it sends what it is given.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Literal, NamedTuple, TypedDict

ImageSource = str | os.PathLike[str] | bytes | IO[bytes]
"""A path, the encoded bytes of a picture, or an open binary file."""

FormValue = str | int | float | bool
Composition = Literal["center", "left", "right", "full"]
Focus = Literal["person", "scene"]


class VideoOptions(TypedDict, total=False):
    """``POST /v1/videos`` (and, for ``duration_s``, ``POST /v1/videos/plan``). None leaves a field out."""

    prompt: str | None
    negative_prompt: str | None
    template_id: str | None
    duration_s: float | None
    steps: int | None
    guidance_scale: float | None
    guidance_scale_2: float | None
    seed: int | None
    expand_prompt: bool | None


class CompositionOptions(TypedDict, total=False):
    """``POST /v1/backgrounds/mask``: which part of the photo stays in front of the new background."""

    composition: Composition | None
    focus: Focus | None
    feather_px: int | None


class BackgroundOptions(CompositionOptions, total=False):
    """``POST /v1/backgrounds``: ``scene_id``, ``prompt`` or both, plus the composition options."""

    scene_id: str | None
    prompt: str | None
    negative_prompt: str | None
    steps: int | None
    guidance_scale: float | None
    seed: int | None
    enrich_prompt: bool | None


class Range(NamedTuple):
    min: float
    max: float


# The API's v1 bounds (README "API (v1)"); the CLI's checks, not the client's.
VIDEO_DURATION_S = Range(0.5, 5.0)
VIDEO_STEPS = Range(4, 12)
VIDEO_GUIDANCE = Range(1.0, 20.0)
BACKGROUND_STEPS = Range(4, 50)
BACKGROUND_GUIDANCE = Range(1.0, 20.0)
FEATHER_PX = Range(0, 20)
MAX_SEED = 2**63 - 1
MAX_PROMPT_CHARS = 2000


def form_fields(
    options: Mapping[str, object], allowed: type, extra_fields: Mapping[str, FormValue] | None = None
) -> dict[str, str]:
    """The options as multipart text fields; ``None`` leaves a field out (the server's default applies).

    ``allowed`` is the endpoint's ``TypedDict``: an unknown option raises ``TypeError`` the way a wrong
    keyword argument does. ``extra_fields`` is the way to send a field this client does not know yet
    (one a newer server accepts) without waiting for a client release.
    """
    known = set(allowed.__annotations__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; expected some of: {', '.join(sorted(known))}")
    fields: dict[str, str] = {}
    for name, value in {**options, **(extra_fields or {})}.items():
        if value is None:
            continue
        fields[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return fields


def image_part(source: ImageSource, name: str | None = None) -> tuple[str, bytes, str]:
    """``(filename, bytes, content type)`` for the ``image`` part.

    The file is read into memory once, here, so a retried request sends exactly the same bytes (a stream
    could not be rewound reliably) and a missing file fails before any connection is made.
    """
    if isinstance(source, bytes):
        data, filename = source, name or "image"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data, filename = path.read_bytes(), name or path.name
    else:
        data = source.read()
        filename = name or Path(str(getattr(source, "name", "image"))).name
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return filename, data, content_type
