"""``/v1/jobs``: listing, status, result download, cancellation, deletion and a Server-Sent Events stream.

Every route sees only the caller's own jobs (an admin sees all): another tenant's job is a 404, like an
unknown id.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from deployments.errors import JobStateError
from deployments.http.errors import error_responses
from deployments.http.event_hub import EventHub
from deployments.http.schemas import Job, JobList
from deployments.http.services import ApiServices
from deployments.http.tenancy import CallerParam, visible_job
from deployments.jobs.reaper import record_finished
from pipelines.common.errors import InvalidInputError

MAX_PAGE = 100
EVENT_POLL_S = 0.25
KEEPALIVE_S = 10.0  # proxies and load balancers commonly cut connections silent for 30-60 s
RECONNECT_MS = 2000

RESULT_FILE = {
    "description": "The result: an H.264 MP4 for video jobs, a PNG for background jobs.",
    "content": {
        "video/mp4": {"schema": {"type": "string", "contentMediaType": "video/mp4"}},
        "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
    },
}
EVENT_STREAM = {
    "description": "`event: progress` with the job object as `data`, repeated; then one `event: succeeded`, "
    "`failed` or `cancelled`. Comment lines keep the connection alive.",
    # The schema of one event (the way Server-Sent Events are described since OpenAPI 3.2's `itemSchema`).
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"type": "string", "enum": ["progress", "succeeded", "failed", "cancelled"]},
                    "data": {
                        "type": "string",
                        "description": "The job object as JSON.",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/Job"},
                    },
                },
            }
        }
    },
}


def encode_cursor(created_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, job_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(created_at, (int, float)) or not isinstance(job_id, str):
            raise ValueError
        return float(created_at), job_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError(
            "`cursor` is not one this service handed out; pass the `next_cursor` of the previous page", field="cursor"
        ) from None


def job_router(services: ApiServices, hub: EventHub) -> APIRouter:
    router = APIRouter(tags=["jobs"])
    store = services.store

    @router.get(
        "/v1/jobs",
        summary="Your jobs, newest first",
        responses={200: {"model": JobList}, **error_responses(400, 503)},
    )
    async def list_jobs(
        caller: CallerParam,
        status: Annotated[
            Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query(description="Only these.")
        ] = None,
        kind: Annotated[Literal["video", "background", "edit"] | None, Query(description="Only this kind.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Jobs per page.")] = 20,
        cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")] = None,
    ) -> dict:
        before = decode_cursor(cursor) if cursor is not None else None
        jobs = await run_in_threadpool(
            lambda: store.list_jobs(caller.listing_owner, status=status, kind=kind, limit=limit + 1, before=before)
        )
        page, more = jobs[:limit], len(jobs) > limit
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return {"jobs": [job.public() for job in page], "next_cursor": next_cursor}

    @router.get("/v1/jobs/{job_id}", summary="A job", responses={200: {"model": Job}, **error_responses(404, 503)})
    async def get_job(job_id: str, caller: CallerParam) -> dict:
        return (await visible_job(store, job_id, caller)).public()

    @router.delete(
        "/v1/jobs/{job_id}",
        status_code=204,
        summary="Delete a job: cancels it if unfinished, then removes its record, input and result",
        response_class=Response,
        responses={204: {"description": "Deleted; the id answers 404 from now on."}, **error_responses(404, 503)},
    )
    async def delete_job(job_id: str, caller: CallerParam) -> Response:
        job = await visible_job(store, job_id, caller)
        if not job.is_final:
            # A running worker is fenced: it finds no record at its next check and removes its own file.
            cancelled = await run_in_threadpool(store.request_cancel, job_id)
            if job.status == "queued" and cancelled.status == "cancelled":
                record_finished(cancelled)
        await run_in_threadpool(store.delete, job_id)
        await run_in_threadpool(services.results.delete_files, job_id)
        return Response(status_code=204)

    @router.get(
        "/v1/jobs/{job_id}/result",
        summary="Download a job's result",
        response_class=FileResponse,
        responses={200: RESULT_FILE, **error_responses(404, 409, 503)},
    )
    async def get_result(job_id: str, caller: CallerParam) -> FileResponse:
        job = await visible_job(store, job_id, caller)
        if job.status != "succeeded":
            hint = "poll GET /v1/jobs/{id} until it has succeeded" if not job.is_final else "it will never have one"
            raise JobStateError(f"job {job_id} is {job.status} and has no result; {hint}", field="job_id")
        path = Path(job.result["path"])
        if not path.exists():
            raise JobStateError(f"the result of job {job_id} is no longer stored", field="job_id")
        extension = path.suffix
        return FileResponse(path, media_type=job.result["content_type"], filename=f"{job_id}{extension}")

    @router.post(
        "/v1/jobs/{job_id}/cancel",
        summary="Cancel a job (idempotent; 409 once its result is published)",
        responses={200: {"model": Job}, **error_responses(404, 409, 503)},
    )
    async def cancel_job(job_id: str, caller: CallerParam) -> dict:
        before = await visible_job(store, job_id, caller)
        job = await run_in_threadpool(store.request_cancel, job_id)
        if job.status == "succeeded":  # the result was published before the cancel arrived
            raise JobStateError(
                f"job {job_id} already succeeded: its result was published before the cancel arrived, "
                "so there is nothing left to cancel",
                field="job_id",
            )
        if before.status == "queued" and job.status == "cancelled":  # no worker will ever count this one
            record_finished(job)
        return job.public()

    @router.get(
        "/v1/jobs/{job_id}/events",
        summary="Server-Sent Events: progress, then the final state",
        response_class=StreamingResponse,
        responses={200: EVENT_STREAM, **error_responses(404, 429, 503)},
    )
    async def job_events(job_id: str, request: Request, caller: CallerParam) -> StreamingResponse:
        first = await visible_job(store, job_id, caller)  # 404 before the stream starts
        subscription = hub.subscribe(
            job_id, caller.tenant, services.settings.limits_for(caller.tenant).max_event_streams
        )
        lifetime_s = services.settings.event_stream_max_s

        async def stream():
            job, last_sent = first, None
            started = last_write = time.monotonic()
            try:
                while True:
                    if job is not None:
                        snapshot = job.public()
                        state = (snapshot["status"], snapshot["step"], snapshot["cancel_requested"])
                        if state != last_sent:
                            event = snapshot["status"] if job.is_final else "progress"
                            yield f"event: {event}\ndata: {json.dumps(snapshot)}\n\n"
                            last_sent, last_write = state, time.monotonic()
                        if job.is_final:
                            return
                    if subscription.gone:  # deleted (or expired) while watched: nothing more will come
                        return
                    if time.monotonic() - started > lifetime_s:
                        # EventSource reconnects by itself after `retry` ms; the client library does the same.
                        yield f": this stream ends after {lifetime_s:.0f} s; reconnect\nretry: {RECONNECT_MS}\n\n"
                        return
                    if await request.is_disconnected():
                        return
                    await subscription.next(timeout_s=KEEPALIVE_S)
                    if time.monotonic() - last_write > KEEPALIVE_S:  # proxies cut silent connections
                        yield ": keep-alive\n\n"
                        last_write = time.monotonic()
                    job = subscription.latest or job
            finally:
                hub.unsubscribe(subscription)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return router
