"""``/v1/edits``: text-driven edits of uploaded videos (job kind ``edit``) and their plan.

The upload is decoded once here, frame by frame (nothing kept but the first and last frame), so a file
that is not a video, is too long or too large, or is corrupted half-way is refused with a 4xx before a
job exists. The source is then stored beside the job as ``<job id>.source.<container>`` (and the
optional reference picture as ``<job id>.reference.png``) before the record is created, like every
input; the job's input image slot holds the first frame. For ``mode=replace`` the first and last frames
are segmented first, when a segmenter is deployed: a video in which no subject is found is a 422
``mask_unusable`` now rather than a failed job later.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments.errors import ServiceNotReadyError
from deployments.http.errors import error_responses
from deployments.http.form_models import EditForm, EditPlanForm
from deployments.http.job_submission import (
    JOB_ACCEPTED,
    JOB_REPLAYED,
    SubmissionParam,
    check_webhook,
    draw_seed,
    enqueue_job,
)
from deployments.http.multipart import multipart_form, upload_route_class
from deployments.http.schemas import EditPlan
from deployments.http.services import ApiServices
from deployments.http.uploads import read_image
from deployments.http.video_uploads import read_video, video_bytes
from pipelines.common.errors import InvalidInputError, MaskUnusableError
from pipelines.common.images import encode_png
from pipelines.edit.request import DEFAULT_NEGATIVE_PROMPT, validate_edit_params

REFERENCE_SUFFIX = "reference.png"


def edit_router(services: ApiServices) -> APIRouter:
    limits = services.edits
    # The body carries the video and, for replace, a reference picture within the image upload limit.
    body_limit = int(limits.max_input_mb * 1_000_000) + services.max_upload_bytes
    router = APIRouter(route_class=upload_route_class(body_limit), tags=["edits"])

    @router.post(
        "/v1/edits/plan",
        summary="Preview an edit's output size, frame count and fps for a source video",
        responses={200: {"model": EditPlan}, **error_responses(400, 413)},
    )
    async def plan(form: Annotated[EditPlanForm, multipart_form()]) -> dict:
        return (await read_video(form.video, limits)).plan()

    @router.post(
        "/v1/edits",
        status_code=202,
        summary="Submit a text-driven video edit (restyle it, or replace its subject)",
        responses={202: JOB_ACCEPTED, 200: JOB_REPLAYED, **error_responses(400, 413, 422, 429, 503)},
    )
    async def create_edit(form: Annotated[EditForm, multipart_form()], submission: SubmissionParam) -> JSONResponse:
        if "edit" not in services.job_kinds:
            raise ServiceNotReadyError("video editing is not deployed in this configuration (add `video_editor`)")
        _check_mode_fields(form)
        params = {
            "prompt": form.prompt.strip(),
            "negative_prompt": form.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
            "mode": form.mode,
            "strength": form.strength,
            "steps": form.steps,
            "guidance_scale": form.guidance_scale,
            "guidance_scale_2": form.guidance_scale,
            "seed": draw_seed() if form.seed is None else form.seed,
            "control": (form.control or "edges") if form.mode == "style" else None,
        }
        validate_edit_params(**{**params, "control": params["control"] or "edges"})
        webhook_url = await check_webhook(services, form.webhook_url)
        info = await read_video(form.video, limits)
        reference = None
        if form.reference_image is not None:
            reference = await read_image(
                form.reference_image,
                max_bytes=services.max_upload_bytes,
                max_pixels=services.max_pixels,
                field="reference_image",
            )
        if form.mode == "replace":
            await _require_subject(services, info)
        plan = info.plan()
        params |= {
            "keep_audio": form.keep_audio,
            "reference_image": reference is not None,
            "source_suffix": info.suffix,
            "width": plan["output"]["width"],
            "height": plan["output"]["height"],
            "frames": plan["frames"],
            "fps": plan["fps"],
            "duration_s": plan["duration_s"],
            "input": plan["input"],
        }
        extra_inputs = {info.suffix: await video_bytes(form.video)}
        if reference is not None:
            extra_inputs[REFERENCE_SUFFIX] = await run_in_threadpool(encode_png, reference)
        return await enqueue_job(
            services,
            "edit",
            params,
            info.first_frame.convert("RGB"),
            submission,
            webhook_url,
            extra_inputs=extra_inputs,
        )

    return router


def _check_mode_fields(form: EditForm) -> None:
    """A field that has no effect in the chosen mode is refused, so the caller learns it was not used."""
    if form.mode == "style" and form.reference_image is not None:
        raise InvalidInputError("`reference_image` applies to mode=replace only", field="reference_image")
    if form.mode == "replace" and form.control is not None:
        raise InvalidInputError("`control` applies to mode=style only", field="control")


async def _require_subject(services: ApiServices, info) -> None:
    if services.mask_subject is None:  # the worker's own check still applies
        return
    for frame in (info.first_frame, info.last_frame):
        mask = await services.mask_subject(frame.convert("RGB"), "center", "person", 0)
        if mask.stage != "ellipse" and mask.status == "ok":
            return
    raise MaskUnusableError(
        "no subject was found in the video's first or last frame, so mode=replace has nothing to replace; use "
        "mode=style, or a video where the subject stands out from its backdrop",
        field="video",
    )
