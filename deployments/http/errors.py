"""The one table that maps the project's exceptions to HTTP status codes and the JSON error body."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.errors import JobNotFoundError, JobStateError, ServiceNotReadyError, ServiceOverloadedError
from pipelines.errors import (
    InputTooLargeError,
    InvalidInputError,
    ModelNotFoundError,
    UnsupportedHardwareError,
    VividFlowError,
)
from pipelines.subject_mask import MaskUnusableError

log = logging.getLogger(__name__)

# Most specific class first: the first match wins.
STATUS_BY_ERROR: tuple[tuple[type[VividFlowError], int], ...] = (
    (InputTooLargeError, 413),
    (MaskUnusableError, 422),
    (InvalidInputError, 400),
    (JobNotFoundError, 404),
    (JobStateError, 409),
    (ServiceOverloadedError, 429),
    (ServiceNotReadyError, 503),
    (ModelNotFoundError, 503),
    (UnsupportedHardwareError, 503),
)

_HTTP_KINDS = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed", 413: "input_too_large"}


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
    return JSONResponse(error_body(error.kind, message, error.field), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VividFlowError)
    async def _project_error(request: Request, exc: VividFlowError) -> JSONResponse:
        if status_for(exc) == 500:
            log.error("unmapped project error on %s: %s", request.url.path, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        message = f"{field or 'request'}: {first.get('msg', 'invalid value')}"
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
        if _is_backpressure(exc):
            # A model deployment's max_queued_requests is full (mask preview, analysis, expansion).
            overloaded = ServiceOverloadedError(
                "the service is busy with other requests of this kind; try again shortly", retry_after_s=5
            )
            return error_response(overloaded)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal error; the server log has details"), status_code=500)


def _is_backpressure(exc: Exception) -> bool:
    try:
        from ray.serve.exceptions import BackPressureError
    except ImportError:  # the HTTP app also runs without Ray
        return False
    return isinstance(exc, BackPressureError)
