"""The served OpenAPI document: FastAPI's, without the default 422 that this service never answers with.

Request validation failures are answered with 400 and the project's error body (see ``errors.py``), and
every route lists its real error statuses through ``error_responses``; FastAPI would still add a 422 with
its own ``HTTPValidationError`` shape to every route with parameters, which would send a client generator
or a schema-driven tester after an answer that never comes.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from deployments.http.errors import error_responses

DESCRIPTION = """Image → video (Wan2.2-I2V) and background replacement (segmentation, SDXL, compositing) as
asynchronous jobs: submit a photo (`202` with the job and a `Location` header), follow the job (`GET` it or
stream its events), download the result.

Uploads are `multipart/form-data`. Fields are parsed strictly: unknown or repeated fields, a file where text
is expected (or the reverse), an empty value for a number, a boolean or a choice, text that is not UTF-8 or
holds a NUL character are refused with `400`. An empty text field is the same as leaving it out.
Errors are always `{"error": {"type", "message", "field"?}}`.

Authentication depends on the deployment (`ingress.auth.mode`): off in the embedded default (one implicit
tenant), or API keys sent as `Authorization: Bearer <key>`. With keys, every route but `/healthz` answers
`401` without a known key and `429` when the tenant's request rate is used up; a tenant sees only its own
jobs (another tenant's id is a `404`)."""
OPEN_PATHS = ("/healthz",)

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = contract_document(app)
        return app.openapi_schema

    app.openapi = openapi  # FastAPI's documented way to customise the document


def contract_document(app: FastAPI) -> dict:
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=DESCRIPTION,
        routes=app.routes,
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            default_422 = responses.get("422", {})
            if "HTTPValidationError" in str(default_422.get("content", {})):
                del responses["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    _declare_api_keys(document)
    return document


def _declare_api_keys(document: dict) -> None:
    """Bearer keys, optional (`{}`) because the embedded default runs without them; and the 401 and 429 that
    every guarded route can answer with when they are on."""
    document.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `vividflow keys new`, when the deployment has `ingress.auth.mode: api_keys`.",
    }
    for path, operations in document.get("paths", {}).items():
        if path in OPEN_PATHS:
            continue
        for operation in operations.values():
            operation["security"] = [{"apiKey": []}, {}]
            responses = operation.setdefault("responses", {})
            for status, entry in error_responses(401, 429).items():
                responses.setdefault(str(status), _documented(entry))


def _documented(entry: dict) -> dict:
    """An ``error_responses`` entry (a pydantic model) as the document's JSON."""
    described = {
        "description": entry["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if "headers" in entry:
        described["headers"] = entry["headers"]
    return described
