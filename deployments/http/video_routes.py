"""``/v1/videos``: the resolution plan and image-to-video jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from deployments.http.errors import error_responses
from deployments.http.form_models import VideoForm, VideoPlanForm
from deployments.http.job_submission import (
    JOB_ACCEPTED,
    JOB_REPLAYED,
    SubmissionParam,
    check_webhook,
    draw_seed,
    enqueue_job,
)
from deployments.http.multipart import multipart_form, upload_route_class
from deployments.http.prompt_routes import expand_for_request
from deployments.http.schemas import VideoPlan
from deployments.http.services import ApiServices
from deployments.http.uploads import read_image
from pipelines.video.motion_templates import compose_prompt
from pipelines.video.plan import plan_video
from pipelines.video.request import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, VideoRequest, validate_video_params


def video_router(services: ApiServices) -> APIRouter:
    router = APIRouter(route_class=upload_route_class(services.max_upload_bytes), tags=["videos"])

    async def decoded_image(upload):
        return await read_image(upload, max_bytes=services.max_upload_bytes, max_pixels=services.max_pixels)

    @router.post(
        "/v1/videos/plan",
        summary="Preview the output size and frame count of a photo",
        responses={200: {"model": VideoPlan}, **error_responses(400, 413)},
    )
    async def plan(form: Annotated[VideoPlanForm, multipart_form()]) -> dict:
        image = await decoded_image(form.image)
        return plan_video(image.width, image.height, form.duration_s).as_dict()

    @router.post(
        "/v1/videos",
        status_code=202,
        summary="Submit an image-to-video job",
        responses={202: JOB_ACCEPTED, 200: JOB_REPLAYED, **error_responses(400, 413, 422, 429, 503)},
    )
    async def create_video(form: Annotated[VideoForm, multipart_form()], submission: SubmissionParam) -> JSONResponse:
        params = {
            # a template's prompt comes first and the user's text extends it
            "prompt": compose_prompt(form.template_id, form.prompt) or DEFAULT_PROMPT,
            "negative_prompt": form.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
            "duration_s": form.duration_s,
            "steps": form.steps,
            "guidance_scale": form.guidance_scale,
            "guidance_scale_2": form.guidance_scale_2,
            "seed": draw_seed() if form.seed is None else form.seed,
        }
        # The typed request checks the texts (NUL, surrogates, length) before the image costs a decode.
        validate_video_params(**params)
        webhook_url = await check_webhook(services, form.webhook_url)
        image = await decoded_image(form.image)
        extra = {"template_id": form.template_id, "user_prompt": form.prompt, "expand_prompt": form.expand_prompt}
        if form.expand_prompt:
            expansion = await expand_for_request(services, params["prompt"], params["seed"])
            extra.update(
                original_prompt=params["prompt"],
                prompt_expansion={"expanded": expansion["expanded"], "reason": expansion["reason"]},
            )
            params["prompt"] = expansion["prompt"]
        video_request = VideoRequest(image=image, **params)
        params.update(extra)
        plan = plan_video(image.width, image.height, params["duration_s"])
        params.update(
            width=plan.width,
            height=plan.height,
            frames=plan.frames,
            fps=plan.fps,
            input_width=image.width,
            input_height=image.height,
        )
        return await enqueue_job(services, "video", params, video_request.image, submission, webhook_url)

    return router
