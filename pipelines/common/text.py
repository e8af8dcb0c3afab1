"""Checks every prompt-like text field passes, whichever pipeline it is for."""

from __future__ import annotations

from pipelines.common.errors import InvalidInputError

MAX_PROMPT_CHARS = 2000


def check_text(value: object, name: str, *, required: bool = False, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Return ``value`` unchanged if it is usable text, else raise :class:`InvalidInputError` naming ``name``.

    NUL characters and unpaired surrogates are refused rather than stored: neither can be written as
    UTF-8 into a job record or passed to a tokenizer, so accepting them would fail later, further away.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be text", field=name)
    if "\x00" in value:
        raise InvalidInputError(f"{name} contains a NUL character; send plain text", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{name} contains an unpaired surrogate code point, which is not valid Unicode text", field=name
        ) from None
    if len(value) > max_chars:
        raise InvalidInputError(f"{name} is {len(value)} characters; the limit is {max_chars}", field=name)
    if required and not value.strip():
        raise InvalidInputError(f"{name} must be a non-empty string", field=name)
    return value
