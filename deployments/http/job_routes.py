"""``/v1/jobs``: status, result download, cancellation and a Server-Sent Events stream."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from deployments.errors import JobStateError
from deployments.http.errors import error_responses
from deployments.http.schemas import Job
from deployments.http.services import ApiServices
from deployments.jobs.reaper import record_finished

EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0

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


def job_router(services: ApiServices) -> APIRouter:
    router = APIRouter(tags=["jobs"])
    store = services.store

    @router.get("/v1/jobs/{job_id}", summary="A job", responses={200: {"model": Job}, **error_responses(404, 503)})
    async def get_job(job_id: str) -> dict:
        return (await run_in_threadpool(store.get, job_id)).public()

    @router.get(
        "/v1/jobs/{job_id}/result",
        summary="Download a job's result",
        response_class=FileResponse,
        responses={200: RESULT_FILE, **error_responses(404, 409, 503)},
    )
    async def get_result(job_id: str) -> FileResponse:
        job = await run_in_threadpool(store.get, job_id)
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
    async def cancel_job(job_id: str) -> dict:
        before = await run_in_threadpool(store.get, job_id)
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
        responses={200: EVENT_STREAM, **error_responses(404, 503)},
    )
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        first = await run_in_threadpool(store.get, job_id)  # 404 before the stream starts

        async def stream():
            job, last_sent, last_write = first, None, time.monotonic()
            while True:
                snapshot = job.public()
                state = (snapshot["status"], snapshot["step"], snapshot["cancel_requested"])
                if state != last_sent:
                    event = snapshot["status"] if job.is_final else "progress"
                    yield f"event: {event}\ndata: {json.dumps(snapshot)}\n\n"
                    last_sent, last_write = state, time.monotonic()
                if job.is_final or await request.is_disconnected():
                    return
                if time.monotonic() - last_write > KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    last_write = time.monotonic()
                await asyncio.sleep(EVENT_POLL_S)
                job = await run_in_threadpool(store.get, job_id)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return router
