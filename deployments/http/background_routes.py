"""``/v1/backgrounds``: background-replacement jobs and the synchronous mask preview."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from deployments.errors import ServiceNotReadyError
from deployments.http.forms import (
    bool_field,
    draw_seed,
    float_field,
    int_field,
    read_form,
    read_image,
    text_field,
)
from deployments.http.job_submission import enqueue_job
from deployments.http.services import ApiServices
from pipelines.background_job import BackgroundJobRequest
from pipelines.composition import validate_composition
from pipelines.scene_templates import BASE_NEGATIVE_PROMPT, get_scene_template, negative_prompt_for
from pipelines.sdxl_background import DEFAULT_GUIDANCE, DEFAULT_STEPS, background_size

COMPOSITION_FIELDS = {"image", "composition", "focus", "feather_px"}
MASK_FIELDS = frozenset(COMPOSITION_FIELDS)
BACKGROUND_FIELDS = frozenset(
    COMPOSITION_FIELDS | {"scene_id", "prompt", "negative_prompt", "steps", "guidance_scale", "seed", "enrich_prompt"}
)


def _composition(form) -> tuple[str, str, int]:
    return validate_composition(
        text_field(form, "composition", "center") or "center",
        text_field(form, "focus", "person") or "person",
        int_field(form, "feather_px", 0),
    )


def background_router(services: ApiServices) -> APIRouter:
    router = APIRouter()

    async def decoded_image(form):
        return await read_image(form, max_bytes=services.max_upload_bytes, max_pixels=services.max_pixels)

    @router.post("/v1/backgrounds/mask")
    async def mask_preview(request: Request) -> Response:
        if services.mask_subject is None:
            raise ServiceNotReadyError("segmentation is not deployed in this configuration (add `segmenter`)")
        form = await read_form(request, MASK_FIELDS, max_upload_bytes=services.max_upload_bytes)
        composition, focus, feather_px = _composition(form)
        image = await decoded_image(form)
        mask = await services.mask_subject(image, composition, focus, feather_px)
        from pipelines.composition import mask_preview_png

        png = await run_in_threadpool(mask_preview_png, mask.alpha)
        headers = {
            "X-Mask-Stage": mask.stage,
            "X-Mask-Status": mask.status,
            "X-Mask-Coverage": f"{mask.quality['coverage']:.4f}",
        }
        return Response(png, media_type="image/png", headers=headers)

    @router.post("/v1/backgrounds", status_code=202)
    async def create_background(request: Request) -> JSONResponse:
        if "background" not in services.job_kinds:
            raise ServiceNotReadyError(
                "background replacement is not deployed in this configuration (add `background_generator`)"
            )
        form = await read_form(request, BACKGROUND_FIELDS, max_upload_bytes=services.max_upload_bytes)
        scene_id = text_field(form, "scene_id") or None
        user_prompt = (text_field(form, "prompt") or "").strip() or None
        user_negative = text_field(form, "negative_prompt")
        guidance_default, prompt, negative = DEFAULT_GUIDANCE, user_prompt or "", BASE_NEGATIVE_PROMPT
        if scene_id is not None:
            template = get_scene_template(scene_id)
            prompt = f"{template.prompt}, {user_prompt}" if user_prompt else template.prompt
            negative, guidance_default = negative_prompt_for(template), template.guidance_scale
        if user_negative is not None:
            negative = user_negative
        composition, focus, feather_px = _composition(form)
        seed = int_field(form, "seed", None)
        job_request_fields = {
            "prompt": prompt,
            "negative_prompt": negative,
            "composition": composition,
            "focus": focus,
            "feather_px": feather_px,
            "steps": int_field(form, "steps", DEFAULT_STEPS),
            "guidance_scale": float_field(form, "guidance_scale", guidance_default),
            "seed": draw_seed() if seed is None else seed,
            "scene_id": scene_id,
            "enrich_prompt": bool_field(form, "enrich_prompt", True),
        }
        image = await decoded_image(form)
        job_request = BackgroundJobRequest(image=image, **job_request_fields)
        width, height = background_size(image.width, image.height)
        params = {
            **job_request_fields,
            "user_prompt": user_prompt,
            "input_width": image.width,
            "input_height": image.height,
            "background_width": width,
            "background_height": height,
        }
        return await enqueue_job(services, "background", params, job_request.image)

    return router
