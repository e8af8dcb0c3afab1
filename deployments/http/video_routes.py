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
from deployments.http.lora_routes import lora_params
from deployments.http.multipart import multipart_form, upload_route_class
from deployments.http.prompt_routes import expand_for_request
from deployments.http.schemas import VideoPlan
from deployments.http.services import ApiServices
from deployments.http.video_layout import DEFAULT_DURATION_S, VideoLayout, plan_dict, read_layout
from deployments.video_generator import LAST_IMAGE_SUFFIX, view_suffix
from pipelines.common.images import encode_png
from pipelines.video.motion_templates import compose_prompt
from pipelines.video.request import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, validate_video_params


def video_router(services: ApiServices) -> APIRouter:
    router = APIRouter(route_class=upload_route_class(services.max_upload_bytes), tags=["videos"])

    @router.post(
        "/v1/videos/plan",
        summary="Preview the output size, frames and segments of a video",
        responses={200: {"model": VideoPlan}, **error_responses(400, 413)},
    )
    async def plan(form: Annotated[VideoPlanForm, multipart_form()]) -> dict:
        layout = await read_layout(services, form)
        return plan_dict(layout)[1]

    @router.post(
        "/v1/videos",
        status_code=202,
        summary="Submit an image-to-video job (one image, first/last frame, multi-view, long or storyboard)",
        responses={202: JOB_ACCEPTED, 200: JOB_REPLAYED, **error_responses(400, 413, 422, 429, 503)},
    )
    async def create_video(form: Annotated[VideoForm, multipart_form()], submission: SubmissionParam) -> JSONResponse:
        seed = draw_seed() if form.seed is None else form.seed
        params = base_params(form, seed)
        # The typed request checks the texts (NUL, surrogates, length) before the image costs a decode.
        validate_video_params(**params)
        lora = await lora_params(services, form.lora, form.lora_strength)
        webhook_url = await check_webhook(services, form.webhook_url)
        layout = await read_layout(services, form)
        params, first, extra_inputs = await video_job(services, form, layout, params, lora)
        return await enqueue_job(services, "video", params, first, submission, webhook_url, extra_inputs=extra_inputs)

    return router


def base_params(form, seed: int, prompt: str | None = None) -> dict:
    """The render parameters of a video form (``prompt``: a batch variation's own, else the form's)."""
    user_prompt = form.prompt if prompt is None else prompt
    return {
        # a template's prompt comes first and the user's text extends it
        "prompt": compose_prompt(form.template_id, user_prompt) or DEFAULT_PROMPT,
        "negative_prompt": form.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
        "duration_s": form.duration_s if form.duration_s is not None else DEFAULT_DURATION_S,
        "steps": form.steps,
        "guidance_scale": form.guidance_scale,
        "guidance_scale_2": form.guidance_scale_2,
        "seed": seed,
    }


async def video_job(
    services: ApiServices, form, layout: VideoLayout, params: dict, lora: dict, user_prompt: str | None = None
) -> tuple[dict, object, dict[str, bytes]]:
    """The job's params, its input image and the other pictures' files, from a checked form and layout."""
    params = {**params, "duration_s": layout.duration_s}
    extra = {
        "template_id": form.template_id,
        "user_prompt": form.prompt if user_prompt is None else user_prompt,
        "expand_prompt": form.expand_prompt,
    }
    extra.update(lora)
    if form.expand_prompt:
        expansion = await expand_for_request(services, params["prompt"], params["seed"])
        extra.update(
            original_prompt=params["prompt"],
            prompt_expansion={"expanded": expansion["expanded"], "reason": expansion["reason"]},
        )
        params["prompt"] = expansion["prompt"]
    layout.request(**{k: v for k, v in params.items() if k != "duration_s"})  # every rule, checked once more
    plan, planned = plan_dict(layout)
    params.update(extra)
    params.update(layout.params())
    params.update(
        width=plan.width,
        height=plan.height,
        frames=planned["frames"],
        fps=plan.fps,
        input_width=layout.first.width,
        input_height=layout.first.height,
        segments=len(planned["segments"]),
    )
    extra_inputs: dict[str, bytes] = {}
    if layout.last_image is not None:
        extra_inputs[LAST_IMAGE_SUFFIX] = encode_png(layout.last_image)
    for index, view in enumerate(layout.views[1:], start=1):
        extra_inputs[view_suffix(index)] = encode_png(view)
    return params, layout.first, extra_inputs
