"""``POST /v1/analyze``: what an image shows and how it is lit, and the prompt enrichment that implies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from PIL import Image

from deployments.http.forms import read_form, read_image, text_field
from pipelines.clip_analysis import validate_prompt

ANALYZE_FIELDS = frozenset({"image", "prompt"})
RESPONSE_KEYS = ("subject", "scores", "warm", "bright", "lighting", "atmosphere", "enriched_prompt")

AnalyzeCall = Callable[[Image.Image, str | None], Awaitable[dict]]


def analyze_router(analyze_call: AnalyzeCall, max_upload_bytes: int, max_pixels: int) -> APIRouter:
    """``analyze_call`` is the deployment's ``analyze`` (through a handle in production, in-process in tests)."""
    router = APIRouter()

    @router.post("/v1/analyze")
    async def analyze(request: Request) -> dict:
        form = await read_form(request, ANALYZE_FIELDS, max_upload_bytes=max_upload_bytes)
        # Cheap checks first: a bad prompt should not cost an image decode.
        prompt = validate_prompt(text_field(form, "prompt"))
        image = await read_image(form, max_bytes=max_upload_bytes, max_pixels=max_pixels)
        result = await analyze_call(image, prompt)
        return {key: result[key] for key in RESPONSE_KEYS}

    return router
