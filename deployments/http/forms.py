"""Reading multipart forms strictly: known fields only, numbers parsed with messages that say what to fix."""

from __future__ import annotations

import math
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from pipelines.errors import InputTooLargeError, InvalidInputError
from pipelines.images import decode_image

MAX_FIELD_CHARS = 10_000


async def read_form(request: Request, allowed: frozenset[str], *, max_upload_bytes: int) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise InvalidInputError(
            "send the request as multipart/form-data with the image in the `image` field "
            f"(got {content_type or 'no content type'!r})"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_upload_bytes + 1_000_000:
        raise InputTooLargeError(
            f"the request is {int(declared) / 1e6:.1f} MB; the limit is {max_upload_bytes / 1e6:.0f} MB"
        )
    try:
        form = await request.form(max_files=2, max_fields=40, max_part_size=max_upload_bytes)
    except Exception as exc:  # starlette raises MultiPartException / HTTPException for malformed bodies
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or "unreadable body"
        raise InvalidInputError(f"the multipart body could not be parsed: {detail}") from exc
    unknown = sorted(set(form.keys()) - allowed)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidInputError(
            f"unknown field{plural} {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}", field=unknown[0]
        )
    for key in form:
        if len(form.getlist(key)) > 1:
            raise InvalidInputError(f"field {key} was sent more than once", field=key)
    return form


async def read_image(form: FormData, *, max_bytes: int, max_pixels: int, field: str = "image"):
    """The uploaded image, decoded and normalised off the event loop (see ``pipelines.images``)."""
    data = await read_image_bytes(form, field)
    return await run_in_threadpool(decode_image, data, field=field, max_bytes=max_bytes, max_pixels=max_pixels)


async def read_image_bytes(form: FormData, field: str = "image") -> bytes:
    upload = form.get(field)
    if upload is None:
        raise InvalidInputError(f"the `{field}` file is missing; attach it as a multipart file field", field=field)
    if not isinstance(upload, UploadFile):
        raise InvalidInputError(f"`{field}` must be a file upload, not a text field", field=field)
    return await upload.read()


def text_field(form: FormData, name: str, default: str | None = None) -> str | None:
    value = form.get(name)
    if value is None:
        return default
    if isinstance(value, UploadFile):
        raise InvalidInputError(f"`{name}` must be a text field, not a file", field=name)
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidInputError(f"`{name}` is {len(value)} characters; the limit is {MAX_FIELD_CHARS}", field=name)
    return value


def float_field(form: FormData, name: str, default: float) -> float:
    raw = text_field(form, name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInputError(f"`{name}` must be a number, got {raw[:40]!r}", field=name) from None
    if not math.isfinite(value):
        raise InvalidInputError(f"`{name}` must be a finite number, got {raw[:40]!r}", field=name)
    return value


def int_field(form: FormData, name: str, default: int | None) -> int | None:
    raw = text_field(form, name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidInputError(f"`{name}` must be a whole number, got {raw[:40]!r}", field=name) from None


def bool_field(form: FormData, name: str, default: bool) -> bool:
    raw = text_field(form, name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InvalidInputError(f"`{name}` must be true or false, got {raw[:40]!r}", field=name)


def draw_seed() -> int:
    return secrets.randbelow(2**31)
