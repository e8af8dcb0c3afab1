"""``/v1/backgrounds``: background-replacement jobs and the synchronous mask preview.

A job's background is a scene and/or a prompt (SDXL), the caller's own picture or colour, or none at all
(``output=cutout``); which one is resolved once, by ``resolve_background_choice``, and recorded in the
job's params as ``background``. The caller's picture is decoded and limited like ``image`` and stored
beside the job's input (``<job id>.background.png``) before the job is queued.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from deployments.errors import ServiceNotReadyError
from deployments.http.errors import error_responses
from deployments.http.form_models import BackgroundForm, MaskForm
from deployments.http.job_submission import (
    JOB_ACCEPTED,
    JOB_REPLAYED,
    SubmissionParam,
    check_webhook,
    draw_seed,
    enqueue_job,
)
from deployments.http.multipart import multipart_form, upload_route_class
from deployments.http.services import ApiServices
from deployments.http.uploads import read_image
from pipelines.background.background_choice import UPLOAD_SUFFIX, resolve_background_choice
from pipelines.background.job import BackgroundJobRequest
from pipelines.background.mask_controls import mask_preview_png, validate_composition
from pipelines.background.scene_templates import BASE_NEGATIVE_PROMPT, get_scene_template, negative_prompt_for
from pipelines.background.sdxl import DEFAULT_GUIDANCE, background_size
from pipelines.common.errors import InvalidInputError
from pipelines.common.images import encode_png

MASK_PREVIEW = {
    "description": "The matte a background job would blend, as a greyscale PNG (white = kept).",
    "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}},
    "headers": {
        "X-Mask-Stage": {"description": "The segmentation stage that made the mask.", "schema": {"type": "string"}},
        "X-Mask-Status": {"description": "`ok`, `empty` or `full`.", "schema": {"type": "string"}},
        "X-Mask-Coverage": {"description": "Share of pixels kept (0-1).", "schema": {"type": "string"}},
    },
}


def background_router(services: ApiServices) -> APIRouter:
    router = APIRouter(route_class=upload_route_class(services.max_upload_bytes), tags=["backgrounds"])

    async def decoded_image(upload):
        return await read_image(upload, max_bytes=services.max_upload_bytes, max_pixels=services.max_pixels)

    @router.post(
        "/v1/backgrounds/mask",
        summary="Preview the subject mask a background job would use",
        response_class=Response,
        responses={200: MASK_PREVIEW, **error_responses(400, 413, 429, 503)},
    )
    async def mask_preview(form: Annotated[MaskForm, multipart_form()]) -> Response:
        if services.mask_subject is None:
            raise ServiceNotReadyError("segmentation is not deployed in this configuration (add `segmenter`)")
        composition, focus, feather_px = validate_composition(form.composition, form.focus, form.feather_px)
        image = await decoded_image(form.image)
        mask = await services.mask_subject(image, composition, focus, feather_px)
        png = await run_in_threadpool(mask_preview_png, mask.alpha)
        headers = {
            "X-Mask-Stage": mask.stage,
            "X-Mask-Status": mask.status,
            "X-Mask-Coverage": f"{mask.quality['coverage']:.4f}",
        }
        return Response(png, media_type="image/png", headers=headers)

    async def decoded_background(upload):
        try:
            return await read_image(
                upload, max_bytes=services.max_upload_bytes, max_pixels=services.max_pixels, field="background_image"
            )
        except InvalidInputError as error:  # the decoder speaks of "the image": say which one
            raise type(error)(f"`background_image`: {error.message}", field="background_image") from None

    async def create_background(
        form: Annotated[BackgroundForm, multipart_form()], submission: SubmissionParam
    ) -> JSONResponse:
        if "background" not in services.job_kinds:
            raise ServiceNotReadyError(
                "background replacement is not deployed in this configuration (add `background_generator`)"
            )
        user_prompt = (form.prompt or "").strip() or None
        choice = resolve_background_choice(
            scene_id=form.scene_id,
            prompt=user_prompt,
            negative_prompt=form.negative_prompt,
            has_background_image=form.background_image is not None,
            background_color=form.background_color,
            fit=form.fit,
            position=form.position,
            output=form.output,
        )
        composition, focus, feather_px = validate_composition(form.composition, form.focus, form.feather_px)
        webhook_url = await check_webhook(services, form.webhook_url)
        job_request_fields: dict = {"composition": composition, "focus": focus, "feather_px": feather_px}
        if choice.generated:
            job_request_fields |= _generation_fields(form, user_prompt)
        image = await decoded_image(form.image)
        background_image = await decoded_background(form.background_image) if choice.source == "image" else None
        job_request = BackgroundJobRequest(
            image=image, background=choice, background_image=background_image, **job_request_fields
        )
        params = {
            **job_request_fields,
            "background": choice.record(),
            "input_width": image.width,
            "input_height": image.height,
        }
        if choice.generated:
            width, height = background_size(image.width, image.height)
            params |= {"user_prompt": user_prompt, "background_width": width, "background_height": height}
        extra_inputs = None
        if background_image is not None:
            extra_inputs = {UPLOAD_SUFFIX: await run_in_threadpool(encode_png, background_image)}
            params["background"] |= {"width": background_image.width, "height": background_image.height}
        return await enqueue_job(
            services, "background", params, job_request.image, submission, webhook_url, extra_inputs=extra_inputs
        )

    # Its own route class: the body may carry two pictures (`image` and `background_image`), each within the
    # upload limit, so the body limit is twice the mask preview's.
    router.add_api_route(
        "/v1/backgrounds",
        create_background,
        methods=["POST"],
        status_code=202,
        summary="Submit a background-replacement job",
        responses={202: JOB_ACCEPTED, 200: JOB_REPLAYED, **error_responses(400, 413, 422, 429, 503)},
        route_class_override=upload_route_class(2 * services.max_upload_bytes),
    )

    return router


def _generation_fields(form: BackgroundForm, user_prompt: str | None) -> dict:
    """The SDXL request fields of a generated background: the scene's prompt first, then the caller's."""
    guidance_default, prompt, negative = DEFAULT_GUIDANCE, user_prompt or "", BASE_NEGATIVE_PROMPT
    if form.scene_id is not None:
        template = get_scene_template(form.scene_id)
        prompt = f"{template.prompt}, {user_prompt}" if user_prompt else template.prompt
        negative, guidance_default = negative_prompt_for(template), template.guidance_scale
    if form.negative_prompt is not None:
        negative = form.negative_prompt
    return {
        "prompt": prompt,
        "negative_prompt": negative,
        "steps": form.steps,
        "guidance_scale": guidance_default if form.guidance_scale is None else form.guidance_scale,
        "seed": draw_seed() if form.seed is None else form.seed,
        "scene_id": form.scene_id,
        "enrich_prompt": form.enrich_prompt,
    }
