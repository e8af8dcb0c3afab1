"""Strict multipart reading for the upload endpoints, in front of FastAPI's form-model validation.

FastAPI validates the declared form model (types, bounds, enums, lengths). What it cannot see, because it
reads the body through Starlette's lenient parser, is checked here while the body streams in:

- the body is counted as it arrives and refused with 413 once it passes the limit (chunked or not), and a
  text field is refused once it passes its own limit, before it is buffered whole;
- text fields must be valid UTF-8 without NUL characters (Starlette would decode invalid bytes as latin-1);
- a field sent twice, an unknown field, a file where text is expected (or the reverse) and an empty value
  for a number, a boolean or a choice are refused: FastAPI would keep the last value, drop the field or fall
  back to the default, and the caller would never learn that their value was ignored.

The route class hands the checked form to FastAPI through the request, so FastAPI parses nothing twice.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import typing
from collections.abc import Callable
from typing import Any

from fastapi import Form, UploadFile, params
from fastapi.routing import APIRoute
from pydantic import BaseModel
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData, Headers
from starlette.requests import Request
from starlette.responses import Response

from pipelines.common.errors import InputTooLargeError, InvalidInputError

MULTIPART = "multipart/form-data"
FILE_LIST = list[UploadFile]  # the annotation of a field that takes several files
MAX_FIELD_CHARS = 10_000
MAX_FIELD_BYTES = 4 * MAX_FIELD_CHARS  # UTF-8 needs at most 4 bytes a character
MAX_PARTS = 40
FORM_SLACK_BYTES = 1_000_000  # text fields and multipart framing on top of the largest allowed upload
_SPOOL_BYTES = 1024 * 1024  # uploads above this go to a temporary file instead of memory
# What a number field may hold: ASCII decimal digits, an optional sign, fraction and exponent, and spaces
# around it (no `_` separators, hex or non-ASCII digits).
_PLAIN_NUMBER = re.compile(r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$")


def multipart_form(description: str | None = None) -> Any:
    """The ``Form()`` marker for an upload endpoint's form model, declared as multipart/form-data."""
    return Form(media_type=MULTIPART, description=description)


def upload_route_class(max_upload_bytes: int) -> type[APIRoute]:
    """An APIRoute class whose routes with a form model read their body strictly, within these limits."""

    class StrictUploadRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()
            model = form_model_of(self.endpoint)
            if model is None:
                return handler

            async def strict_handler(request: Request) -> Response:
                form = await read_strict_form(request, model, max_upload_bytes=max_upload_bytes)
                if "idempotency-key" in request.headers:  # only a keyed request is compared with an earlier one
                    request.state.form_fingerprint = form_fingerprint(request.url.path, form)
                return await handler(_ParsedFormRequest(request.scope, request.receive, form))

            return strict_handler

    return StrictUploadRoute


def form_fingerprint(path: str, form: FormData) -> str:
    """SHA-256 of what the request asks for: its path, every text field and every file's bytes, in a fixed
    order (the order of the parts, file names and transfer details do not change it)."""
    digest = hashlib.sha256(path.encode())
    for name, value in sorted(form.multi_items(), key=lambda item: item[0]):
        digest.update(b"\x00" + name.encode() + b"\x00")
        if isinstance(value, UploadFile):
            content = hashlib.sha256()
            value.file.seek(0)
            for chunk in iter(lambda: value.file.read(1 << 20), b""):  # noqa: B023 - consumed right here
                content.update(chunk)
            value.file.seek(0)
            digest.update(b"file:" + content.digest())
        else:
            digest.update(b"text:" + value.encode())
    return digest.hexdigest()


def form_model_of(endpoint: Callable) -> type[BaseModel] | None:
    """The form model an endpoint declares (``Annotated[Model, Form()]``), or None."""
    for hint in typing.get_type_hints(endpoint, include_extras=True).values():
        if typing.get_origin(hint) is typing.Annotated:
            model, *markers = typing.get_args(hint)
            if (
                isinstance(model, type)
                and issubclass(model, BaseModel)
                and any(isinstance(m, params.Form) for m in markers)
            ):
                return model
    return None


class _ParsedFormRequest(Request):
    """A request whose form was already read (strictly): FastAPI's ``await request.form()`` gets it."""

    def __init__(self, scope, receive, form: FormData) -> None:
        super().__init__(scope, receive)
        self._parsed_form = form

    async def form(self, **_limits) -> FormData:  # type: ignore[override]
        return self._parsed_form


async def read_strict_form(request: Request, model: type[BaseModel], *, max_upload_bytes: int) -> FormData:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    file_fields = {name for name, info in model.model_fields.items() if info.annotation in (UploadFile, FILE_LIST)}
    kind = content_type.decode("latin-1").lower()
    if kind != MULTIPART or not options.get(b"boundary"):
        # name the file the form cannot do without (`video`, not the optional `reference_image`)
        required = sorted(name for name in file_fields if model.model_fields[name].is_required())
        file_field = (required or sorted(file_fields) or ["image"])[0]
        sent = request.headers.get("content-type") or "no content type"
        if kind in ("", "application/x-www-form-urlencoded"):  # a form that cannot carry a file
            declared = request.headers.get("content-length", "")
            if kind and declared.isdigit() and int(declared) <= MAX_FIELD_BYTES * MAX_PARTS:
                sent_fields = await request.form()
                if file_field in sent_fields:
                    raise InvalidInputError(f"`{file_field}` must be a file upload, not a text field", field=file_field)
            raise InvalidInputError(
                f"the `{file_field}` file is missing: send the request as {MULTIPART} with the file in the "
                f"`{file_field}` field (got {sent!r})",
                field=file_field,
            )
        raise InvalidInputError(
            f"send the request as {MULTIPART} with the file in the `{file_field}` field (got {sent!r})"
        )
    limit = max_upload_bytes + FORM_SLACK_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InputTooLargeError(f"the request is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB")
    reader = _PartCollector(options[b"boundary"])
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise InputTooLargeError(f"the request is over the limit of {limit / 1e6:.0f} MB")
            reader.write(chunk)
        parts = reader.finish()
    except BaseException:
        reader.discard()
        raise
    try:
        return _check_parts(parts, model, file_fields)
    except BaseException:
        for _, value in parts:
            if isinstance(value, UploadFile):
                value.file.close()
        raise


def _check_parts(parts: list[tuple[str, str | UploadFile]], model: type[BaseModel], file_fields: set[str]) -> FormData:
    allowed = set(model.model_fields)
    names = [name for name, _ in parts]
    unknown = sorted(set(names) - allowed)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidInputError(
            f"unknown field{plural} {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}", field=unknown[0]
        )
    for name in names:
        # a list of files (`images`) is the one field that is sent once per item
        if names.count(name) > 1 and model.model_fields[name].annotation != FILE_LIST:
            raise InvalidInputError(f"field {name} was sent more than once", field=name)
    for name, value in parts:
        if name in file_fields and not isinstance(value, UploadFile):
            raise InvalidInputError(f"`{name}` must be a file upload, not a text field", field=name)
        if name not in file_fields and isinstance(value, UploadFile):
            raise InvalidInputError(f"`{name}` must be a text field, not a file", field=name)
        if isinstance(value, str) and value.strip() == "" and model.model_fields[name].annotation is not str:
            default = model.model_fields[name].default
            hint = f"the default ({default})" if default is not None else "no value"
            raise InvalidInputError(f"`{name}` is empty; send a value, or leave the field out for {hint}", field=name)
        if isinstance(value, str) and model.model_fields[name].annotation in (int, float) and _odd_number(value):
            raise InvalidInputError(
                f"`{name}` must be a plain decimal number such as 3 or 2.5, got {value[:40]!r}", field=name
            )
    return FormData(parts)


def _odd_number(text: str) -> bool:
    """A number spelled in a way only Python reads (pydantic takes "1_000" as 1000; a caller in another language
    meant something else). Words (nan, inf) are left to pydantic, which says they must be finite."""
    return not _PLAIN_NUMBER.match(text) and not text.strip().lstrip("+-").isalpha()


class _PartCollector:
    """Collects multipart parts from python-multipart's callbacks: text as checked str, files spooled."""

    def __init__(self, boundary: bytes) -> None:
        self.parts: list[tuple[str, str | UploadFile]] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._name: str | None = None
        self._text: bytearray | None = None
        self._file: UploadFile | None = None
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidInputError(f"the multipart body could not be parsed: {exc}") from None

    def finish(self) -> list[tuple[str, str | UploadFile]]:
        self._parser.finalize()
        if self._name is not None:
            raise InvalidInputError("the multipart body ends in the middle of a part (truncated upload?)")
        for _, value in self.parts:
            if isinstance(value, UploadFile):
                value.file.seek(0)
        return self.parts

    def discard(self) -> None:
        for _, value in self.parts:
            if isinstance(value, UploadFile):
                value.file.close()
        if self._file is not None:
            self._file.file.close()

    def _part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise InvalidInputError(f"the form has more than {MAX_PARTS} parts")
        self._headers = []

    def _header_end(self) -> None:
        self._headers.append((bytes(self._header_field).lower(), bytes(self._header_value)))
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        headers = dict(self._headers)
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise InvalidInputError("a multipart part has no field name (Content-Disposition: form-data; name=...)")
        self._name = _utf8(options[b"name"], "a field name")
        if b"filename" in options:
            # Closed with the form (FastAPI closes it after the response) or by discard() on an error.
            spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
            headers = Headers(raw=list(self._headers))
            filename = _utf8(options[b"filename"], f"the file name of `{self._name}`")
            self._file = UploadFile(spool, size=0, filename=filename, headers=headers)
        else:
            self._text = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.file.write(data[start:end])
            self._file.size = (self._file.size or 0) + (end - start)
        elif self._text is not None:
            self._text.extend(data[start:end])
            if len(self._text) > MAX_FIELD_BYTES:
                raise InputTooLargeError(
                    f"`{self._name}` is over {MAX_FIELD_CHARS} characters; shorten it", field=self._name
                )

    def _part_end(self) -> None:
        if self._file is not None:
            self.parts.append((self._name, self._file))
        else:
            text = _utf8(bytes(self._text or b""), f"`{self._name}`", field=self._name)
            if "\x00" in text:
                raise InvalidInputError(f"`{self._name}` contains a NUL character; send plain text", field=self._name)
            if len(text) > MAX_FIELD_CHARS:  # the byte count above lets up to 4x through for multi-byte text
                raise InputTooLargeError(
                    f"`{self._name}` is over {MAX_FIELD_CHARS} characters; shorten it", field=self._name
                )
            self.parts.append((self._name, text))
        self._name, self._text, self._file = None, None, None


def _utf8(raw: bytes, what: str, *, field: str | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} is not valid UTF-8 text", field=field) from None
