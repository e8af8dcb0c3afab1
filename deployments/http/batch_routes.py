"""``/v1/batches``: N variations of one video request, each a normal video job with the batch's id.

Every job of a batch is an ordinary job in the queue (same claiming, same progress, same result URL), so
a batch interleaves with other tenants' work instead of holding the queue. The jobs are created together
in one atomic store step (``create_batch``): a batch exists whole or not at all. Every check, including
each variation's seed and prompt, runs before anything is stored; input files written for a batch that
is then not created are removed again.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments import metrics
from deployments.errors import IdempotencyKeyReusedError, JobNotFoundError, ServiceOverloadedError
from deployments.http.errors import error_responses
from deployments.http.form_models import MAX_VARIATIONS, BatchForm
from deployments.http.job_submission import (
    IDEMPOTENCY_HEADER,
    SubmissionParam,
    check_webhook,
    draw_seed,
    storage_error,
)
from deployments.http.lora_routes import lora_params
from deployments.http.multipart import multipart_form, upload_route_class
from deployments.http.schemas import Batch
from deployments.http.services import ApiServices
from deployments.http.tenancy import Caller, CallerParam
from deployments.http.video_layout import read_layout
from deployments.http.video_routes import base_params, video_job
from deployments.jobs.store import FINAL_STATUSES, IdempotencyConflict, Job, iso_utc
from pipelines.common.errors import InvalidInputError
from pipelines.common.files import write_atomically
from pipelines.common.images import encode_png
from pipelines.video.request import MAX_SEED, validate_video_params

DEFAULT_VARIATIONS = 4
_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _json_list(text: str | None, name: str) -> list | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{name} is not valid JSON ({exc.msg})", field=name) from None
    except RecursionError:  # thousands of nested brackets: valid JSON, but nothing this field can hold
        raise InvalidInputError(f"{name} is nested too deeply; send a flat JSON list", field=name) from None
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"{name} must be a non-empty JSON list", field=name)
    return value


def variations_of(form: BatchForm) -> list[tuple[int, str | None]]:
    """(seed, prompt or None for the form's own) per variation, checked."""
    seeds, prompts = _json_list(form.seeds, "seeds"), _json_list(form.prompts, "prompts")
    count = form.variations or len(seeds or prompts or []) or DEFAULT_VARIATIONS
    for name, values in (("seeds", seeds), ("prompts", prompts)):
        if values is not None and len(values) != count:
            raise InvalidInputError(f"{name} has {len(values)} entries for {count} variations", field=name)
    if count > MAX_VARIATIONS:
        raise InvalidInputError(f"a batch has at most {MAX_VARIATIONS} variations, got {count}", field="variations")
    if seeds is not None:
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise InvalidInputError(
                    f"seeds must be whole numbers from 0 to {MAX_SEED}, got {seed!r}", field="seeds"
                )
    elif form.seed is not None:
        seeds = [(form.seed + index) % (MAX_SEED + 1) for index in range(count)]
    else:
        seeds = [draw_seed() for _ in range(count)]
    if prompts is not None and not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InvalidInputError("prompts must be non-empty texts", field="prompts")
    return list(zip(seeds, prompts or [None] * count, strict=True))


def batch_public(batch_id: str, jobs: list[Job]) -> dict:
    counts = {status: sum(1 for job in jobs if job.status == status) for status in _STATUSES}
    if all(job.status == "queued" for job in jobs):
        status = "queued"
    elif any(job.status not in FINAL_STATUSES for job in jobs):
        status = "running"
    elif counts["failed"]:
        status = "failed"
    elif counts["cancelled"]:
        status = "cancelled"
    else:
        status = "succeeded"
    progress = sum(1.0 if job.is_final else job.progress for job in jobs) / len(jobs)
    return {
        "id": batch_id,
        "status": status,
        "progress": round(progress, 4),
        "counts": counts,
        "owner": jobs[0].owner,
        "created_at": iso_utc(jobs[0].created_at),
        "jobs": [job.public() for job in jobs],
    }


async def visible_batch(services: ApiServices, batch_id: str, caller: Caller) -> list[Job]:
    jobs = await run_in_threadpool(services.store.batch_jobs, batch_id) if len(batch_id) == 32 else []
    if not jobs or not caller.can_see(jobs[0]):  # another tenant's batch is answered like an unknown id
        raise JobNotFoundError(f"no batch with id {batch_id!r}", field="batch_id")
    return jobs


def batch_router(services: ApiServices) -> APIRouter:
    router = APIRouter(route_class=upload_route_class(services.max_upload_bytes), tags=["batches"])
    store, results = services.store, services.results

    @router.post(
        "/v1/batches",
        status_code=202,
        summary="Submit N variations of one video (different seeds, or the given seeds/prompts)",
        responses={202: {"model": Batch}, 200: {"model": Batch}, **error_responses(400, 413, 422, 429, 503)},
    )
    async def create_batch(form: Annotated[BatchForm, multipart_form()], submission: SubmissionParam) -> JSONResponse:
        variations = variations_of(form)
        for seed, prompt in variations:  # texts and ranges of every variation before any decode
            validate_video_params(**base_params(form, seed, prompt))
        lora = await lora_params(services, form.lora, form.lora_strength)
        webhook_url = await check_webhook(services, form.webhook_url)
        layout = await read_layout(services, form)
        planned = []
        for index, (seed, prompt) in enumerate(variations):
            params, first, extra = await video_job(
                services, form, layout, base_params(form, seed, prompt), lora, user_prompt=prompt
            )
            planned.append((uuid.uuid4().hex, {**params, "variation": index}, first, extra))
        await _check_room(services, submission.caller.tenant, len(planned))
        batch_id = uuid.uuid4().hex
        ids = [job_id for job_id, *_ in planned]
        try:
            for job_id, _, first, extra in planned:  # inputs before records, as for single jobs
                await run_in_threadpool(results.save_input, job_id, encode_png(first))
                for suffix, data in extra.items():
                    await run_in_threadpool(write_atomically, results.path_for(job_id, suffix), data)
            jobs = await run_in_threadpool(
                lambda: store.create_batch(
                    "video",
                    [(job_id, params) for job_id, params, *_ in planned],
                    batch_id,
                    owner=submission.caller.tenant,
                    webhook_url=webhook_url,
                    idempotency=submission.idempotency,
                )
            )
        except IdempotencyConflict as exc:
            await _remove_inputs(services, ids)
            raise IdempotencyKeyReusedError(
                f"this `{IDEMPOTENCY_HEADER}` was already used for a different request (job {exc.job_id}); "
                "use a new key for a new request",
                field=IDEMPOTENCY_HEADER,
            ) from None
        except OSError as exc:
            await _remove_inputs(services, ids)
            raise (storage_error(exc) or exc) from exc
        except BaseException:
            await _remove_inputs(services, ids)
            raise
        body = batch_public(jobs[0].batch_id, jobs)
        headers = {"Location": f"/v1/batches/{body['id']}"}
        if jobs[0].replayed:
            await _remove_inputs(services, ids)
            return JSONResponse(body, status_code=200, headers={**headers, "Idempotent-Replayed": "true"})
        for _ in jobs:
            metrics.job_submitted("video")
        return JSONResponse(body, status_code=202, headers=headers)

    @router.get(
        "/v1/batches/{batch_id}",
        summary="A batch: its jobs, counts per status and overall progress",
        responses={200: {"model": Batch}, **error_responses(404)},
    )
    async def get_batch(batch_id: str, caller: CallerParam) -> dict:
        return batch_public(batch_id, await visible_batch(services, batch_id, caller))

    @router.post(
        "/v1/batches/{batch_id}/cancel",
        summary="Cancel every unfinished job of a batch (idempotent)",
        responses={200: {"model": Batch}, **error_responses(404)},
    )
    async def cancel_batch(batch_id: str, caller: CallerParam) -> dict:
        jobs = await visible_batch(services, batch_id, caller)
        for job in jobs:
            if not job.is_final:
                await run_in_threadpool(store.request_cancel, job.id)
        return batch_public(batch_id, await visible_batch(services, batch_id, caller))

    return router


async def _check_room(services: ApiServices, tenant: str, count: int) -> None:
    """The whole batch must fit the queue (and the tenant's limit): a batch is never queued in part."""
    if services.settings.auth.mode != "off":
        limit = services.settings.limits_for(tenant).max_queued_jobs
        queued = await run_in_threadpool(services.store.queued_jobs_of, tenant)
        if queued + count > limit:
            metrics.job_rejected("video")
            raise ServiceOverloadedError(
                f"your tenant has {queued} queued jobs; {count} more would pass its limit of {limit}",
                retry_after_s=services.queue.retry_after_s,
            )
    depth = await run_in_threadpool(services.store.queue_depth, "video")
    if depth + count > services.queue.max_queued_jobs:
        metrics.job_rejected("video")
        raise ServiceOverloadedError(
            f"{depth} video jobs are already waiting; {count} more would pass the most this service queues "
            f"({services.queue.max_queued_jobs}); try again in {services.queue.retry_after_s} s",
            retry_after_s=services.queue.retry_after_s,
        )


async def _remove_inputs(services: ApiServices, job_ids: list[str]) -> None:
    for job_id in job_ids:
        await run_in_threadpool(services.results.delete_files, job_id)
