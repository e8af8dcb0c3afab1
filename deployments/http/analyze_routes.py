"""``POST /v1/analyze``: what an image shows and how it is lit, and the prompt enrichment that implies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter
from PIL import Image

from deployments.http.errors import error_responses
from deployments.http.form_models import AnalyzeForm
from deployments.http.multipart import multipart_form, upload_route_class
from deployments.http.schemas import Analysis
from deployments.http.uploads import read_image
from pipelines.background.clip_analysis import validate_prompt

RESPONSE_KEYS = ("subject", "scores", "warm", "bright", "lighting", "atmosphere", "enriched_prompt")

AnalyzeCall = Callable[[Image.Image, str | None], Awaitable[dict]]


def analyze_router(analyze_call: AnalyzeCall, max_upload_bytes: int, max_pixels: int) -> APIRouter:
    """``analyze_call`` is the deployment's ``analyze`` (through a handle in production, in-process in tests)."""
    router = APIRouter(route_class=upload_route_class(max_upload_bytes), tags=["analysis"])

    @router.post(
        "/v1/analyze",
        summary="Classify the subject and the light of a photo, and enrich a prompt from it",
        responses={200: {"model": Analysis}, **error_responses(400, 413, 429, 503)},
    )
    async def analyze(form: Annotated[AnalyzeForm, multipart_form()]) -> dict:
        # Cheap checks first: a bad prompt should not cost an image decode.
        prompt = validate_prompt(form.prompt)
        image = await read_image(form.image, max_bytes=max_upload_bytes, max_pixels=max_pixels)
        result = await analyze_call(image, prompt)
        return {key: result[key] for key in RESPONSE_KEYS}

    return router
