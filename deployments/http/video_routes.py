"""``/v1/videos``: the resolution plan and image-to-video jobs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

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
from deployments.http.prompt_routes import expand_for_request
from deployments.http.services import ApiServices
from pipelines.motion_templates import compose_prompt
from pipelines.video_plan import plan_video
from pipelines.video_request import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, VideoRequest, validate_video_params

PLAN_FIELDS = frozenset({"image", "duration_s"})
VIDEO_FIELDS = frozenset(
    {
        "image",
        "prompt",
        "negative_prompt",
        "template_id",
        "duration_s",
        "steps",
        "guidance_scale",
        "guidance_scale_2",
        "seed",
        "expand_prompt",
    }
)
DEFAULT_DURATION_S = 3.0


def video_router(services: ApiServices) -> APIRouter:
    router = APIRouter()

    async def decoded_image(form):
        return await read_image(form, max_bytes=services.max_upload_bytes, max_pixels=services.max_pixels)

    @router.post("/v1/videos/plan")
    async def plan(request: Request) -> dict:
        form = await read_form(request, PLAN_FIELDS, max_upload_bytes=services.max_upload_bytes)
        duration_s = float_field(form, "duration_s", DEFAULT_DURATION_S)
        validate_video_params(
            prompt="",
            negative_prompt="",
            duration_s=duration_s,
            steps=4,
            guidance_scale=1.0,
            guidance_scale_2=1.0,
            seed=0,
        )
        image = await decoded_image(form)
        return plan_video(image.width, image.height, duration_s).as_dict()

    @router.post("/v1/videos", status_code=202)
    async def create_video(request: Request) -> JSONResponse:
        form = await read_form(request, VIDEO_FIELDS, max_upload_bytes=services.max_upload_bytes)
        template_id = text_field(form, "template_id") or None
        user_prompt = text_field(form, "prompt")
        params = {
            # a template's prompt comes first and the user's text extends it
            "prompt": compose_prompt(template_id, user_prompt) or DEFAULT_PROMPT,
            "negative_prompt": text_field(form, "negative_prompt", DEFAULT_NEGATIVE_PROMPT),
            "duration_s": float_field(form, "duration_s", DEFAULT_DURATION_S),
            "steps": int_field(form, "steps", 4),
            "guidance_scale": float_field(form, "guidance_scale", 1.0),
            "guidance_scale_2": float_field(form, "guidance_scale_2", 1.0),
            "seed": int_field(form, "seed", None),
        }
        if params["seed"] is None:
            params["seed"] = draw_seed()
        expand = bool_field(form, "expand_prompt", False)
        validate_video_params(**params)
        image = await decoded_image(form)
        extra = {"template_id": template_id, "user_prompt": user_prompt, "expand_prompt": expand}
        if expand:
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
        return await enqueue_job(services, "video", params, video_request.image)

    return router
