"""The one table that maps the project's exceptions to HTTP status codes and the JSON error body.

It is also where the OpenAPI document learns the error shape: ``error_responses`` gives each route the
statuses it can answer with, each with :class:`ErrorBody`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.errors import (
    AuthenticationError,
    ForbiddenError,
    IdempotencyKeyReusedError,
    JobNotFoundError,
    JobStateError,
    ServiceNotReadyError,
    ServiceOverloadedError,
)
from pipelines.common.errors import (
    InputTooLargeError,
    InvalidInputError,
    MaskUnusableError,
    ModelNotFoundError,
    UnsupportedHardwareError,
    VividFlowError,
)

log = logging.getLogger(__name__)

# Most specific class first: the first match wins.
STATUS_BY_ERROR: tuple[tuple[type[VividFlowError], int], ...] = (
    (InputTooLargeError, 413),
    (MaskUnusableError, 422),
    (IdempotencyKeyReusedError, 422),
    (InvalidInputError, 400),
    (AuthenticationError, 401),
    (ForbiddenError, 403),
    (JobNotFoundError, 404),
    (JobStateError, 409),
    (ServiceOverloadedError, 429),
    (ServiceNotReadyError, 503),
    (ModelNotFoundError, 503),
    (UnsupportedHardwareError, 503),
)

_HTTP_KINDS = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed", 413: "input_too_large"}


class ErrorDetail(BaseModel):
    type: str = Field(description="Stable machine-readable kind, e.g. `invalid_input`, `job_not_found`, `overloaded`.")
    message: str = Field(description="What went wrong and what to change, written for the caller.")
    field: str | None = Field(default=None, description="The request field at fault, when there is one.")


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "Bad input: the message says what to fix, `field` names the field.",
    401: "No API key, or an unknown one: send `Authorization: Bearer <key>`.",
    403: "The key is valid but its role may not use this route.",
    404: "No such job (ids are not confirmed to anyone else either).",
    409: "The job is in the wrong state for this request (for example: no result yet).",
    413: "The upload, the image's pixel count or a text field is over its limit.",
    422: "The input is well-formed but unusable (for example: the subject mask came out empty), or an "
    "`Idempotency-Key` was reused with a different request (`idempotency_conflict`).",
    429: "Overloaded: the queue of this kind of job, or the model deployment, is full. Retry after `Retry-After` s.",
    503: "Not ready: the job store cannot be reached, the results volume cannot be written "
    "(`storage_unavailable`), or the feature is not deployed in this configuration.",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """The ``responses=`` entries for the error statuses a route can answer with."""
    responses: dict[int | str, dict] = {}
    for status in statuses:
        entry: dict = {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        if status == 429:
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
            }
        responses[status] = entry
    return responses


def status_for(error: VividFlowError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def error_body(kind: str, message: str, field: str | None = None) -> dict:
    body = {"type": kind, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


def error_response(error: VividFlowError) -> JSONResponse:
    status = status_for(error)
    # ``error.message`` only: ``str()`` of an error that crossed a Ray boundary carries a traceback.
    message = error.message if status != 500 else "internal error; the server log has details"
    headers = {}
    if isinstance(error, ServiceOverloadedError):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="vividflow"'
        if error.field == "Authorization":  # a key was sent, and it is not one of ours
            headers["WWW-Authenticate"] += ', error="invalid_token"'
    return JSONResponse(error_body(error.kind, message, error.field), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VividFlowError)
    async def _project_error(request: Request, exc: VividFlowError) -> JSONResponse:
        if status_for(exc) == 500:
            log.error("unmapped project error on %s: %s", request.url.path, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = validation_message(exc.errors()[0] if exc.errors() else {})
        return JSONResponse(error_body("invalid_input", message, field), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see the README for the API"
        return JSONResponse(error_body(kind, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if _is_client_gone(exc):
            # Under Ray Serve a client that hangs up (an event stream closed) cancels the request's task; nobody
            # is left to read an answer, and it is not a bug, so it must not be logged as one.
            log.debug("client went away during %s %s", request.method, request.url.path)
            return JSONResponse(error_body("client_gone", "the client closed the connection"), status_code=499)
        if _is_backpressure(exc):
            # A model deployment's max_queued_requests is full (mask preview, analysis, expansion).
            overloaded = ServiceOverloadedError(
                "the service is busy with other requests of this kind; try again shortly", retry_after_s=5
            )
            return error_response(overloaded)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal error; the server log has details"), status_code=500)


def _is_client_gone(exc: Exception) -> bool:
    try:
        from ray.exceptions import TaskCancelledError
    except ImportError:
        return False
    return isinstance(exc, TaskCancelledError)


def _is_backpressure(exc: Exception) -> bool:
    try:
        from ray.serve.exceptions import BackPressureError
    except ImportError:  # the HTTP app also runs without Ray
        return False
    return isinstance(exc, BackPressureError)


def validation_message(error: dict) -> tuple[str | None, str]:
    """(field, message) for one pydantic/FastAPI validation error, phrased like the project's own checks."""
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = ".".join(location) or None
    name = f"`{field}`" if field else "the request"
    kind, raw = error.get("type", ""), error.get("input")
    shown = repr(raw)[:40] if isinstance(raw, (str, int, float)) else None
    got = f", got {shown}" if shown is not None else ""
    if kind == "missing":
        return field, f"{name} is missing; it is required"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return field, f"{name} must be a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return field, f"{name} must be a number{got}"
    if kind == "finite_number":
        return field, f"{name} must be a finite number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return field, f"{name} must be true or false{got}"
    if kind == "json_invalid":
        return None, "the body is not valid JSON"
    return field, f"{name}: {error.get('msg', 'invalid value')}{got}"
