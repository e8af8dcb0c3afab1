"""Queueing a job: refuse when the queue is full, store the input, persist the record, answer 202."""

from __future__ import annotations

import secrets
import uuid

from fastapi.responses import JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from deployments import metrics
from deployments.errors import ServiceOverloadedError
from deployments.http.schemas import Job
from deployments.http.services import ApiServices
from pipelines.common.images import encode_png

JOB_ACCEPTED = {
    "model": Job,
    "description": "Accepted: the job is stored and queued. Poll the job, or stream its events.",
    "headers": {"Location": {"description": "The job: `/v1/jobs/{id}`.", "schema": {"type": "string"}}},
}


def draw_seed() -> int:
    """A seed for a request that gave none; it is stored in the job's params so the result can be reproduced."""
    return secrets.randbelow(2**31)


async def enqueue_job(services: ApiServices, kind: str, params: dict, image: Image.Image) -> JSONResponse:
    queue = services.queue
    depth = await run_in_threadpool(services.store.queue_depth, kind)
    if depth >= queue.max_queued_jobs:
        metrics.job_rejected(kind)
        raise ServiceOverloadedError(
            f"{depth} {kind} jobs are already waiting, the most this service queues; "
            f"try again in {queue.retry_after_s} s",
            retry_after_s=queue.retry_after_s,
        )
    job_id = uuid.uuid4().hex
    # The input is on the shared volume before the record exists, so a worker can never claim a job
    # whose image is missing.
    await run_in_threadpool(services.results.save_input, job_id, encode_png(image))
    job = await run_in_threadpool(services.store.create, kind, params, job_id=job_id)
    metrics.job_submitted(kind)
    metrics.queue_depth(kind, depth + 1)
    return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})
