"""Who may reach the API from where: API keys and per-tenant request rates, and CORS for browser pages.

Order matters: CORS is outermost (a browser's preflight needs no key, and a 401 still carries the headers that
let the page read it), then authentication and the rate limit, then the routes.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from deployments.http.auth import AuthMiddleware, KeyRing
from deployments.http.services import ApiServices

# What a browser page may send and read (the job headers included).
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_EXPOSED = ["Location", "Retry-After", "Idempotent-Replayed", "X-Mask-Stage", "X-Mask-Status", "X-Mask-Coverage"]


def install_access_control(app: FastAPI, services: ApiServices) -> None:
    settings = services.settings
    if settings.auth.mode == "api_keys":
        app.add_middleware(
            AuthMiddleware,
            config=settings.auth,
            keys=KeyRing(settings.auth.keys_file),
            store=services.store,
            limits_for=settings.limits_for,
        )
    if settings.cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors.allow_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )
