"""Queueing a job: refuse when the queue is full, store the input, persist the record, answer 202.

Every job-creating POST goes through here, so its guarantees hold for all of them:

- ``Idempotency-Key``: the same key (per tenant) with the same request returns the job it created first
  (``200``, ``Idempotent-Replayed: true``); with a different request it is a ``422``. The store checks and
  creates in one atomic step, so racing retries create one job.
- ``webhook_url``: checked against the allow-list before anything is stored (``400`` naming the field).
- Nothing is left behind: the input is written before the record (a worker never claims a job without its
  image), and removed again when the record is not created or an earlier job is returned instead.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from deployments import metrics
from deployments.errors import IdempotencyKeyReusedError, ServiceOverloadedError, StorageUnavailableError
from deployments.http.schemas import Job
from deployments.http.services import ApiServices
from deployments.http.tenancy import LOCAL_CALLER, Caller, current_caller
from deployments.jobs.results import is_storage_failure
from deployments.jobs.store import Idempotency, IdempotencyConflict
from deployments.jobs.webhook_targets import check_webhook_url
from pipelines.common.errors import InvalidInputError
from pipelines.common.files import write_atomically
from pipelines.common.images import encode_png

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_CHARS = 255
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")

JOB_ACCEPTED = {
    "model": Job,
    "description": "Accepted: the job is stored and queued. Poll the job, or stream its events.",
    "headers": {"Location": {"description": "The job: `/v1/jobs/{id}`.", "schema": {"type": "string"}}},
}
JOB_REPLAYED = {
    "model": Job,
    "description": "The `Idempotency-Key` was used before with this same request: the job it created then.",
    "headers": {
        "Location": {"description": "The job: `/v1/jobs/{id}`.", "schema": {"type": "string"}},
        "Idempotent-Replayed": {"description": "`true`.", "schema": {"type": "string"}},
    },
}


@dataclass(frozen=True)
class Submission:
    """Who submits, and the request's idempotency key with its fingerprint (None without the header)."""

    caller: Caller
    idempotency: Idempotency | None = None


def job_submission(
    request: Request,
    caller: Annotated[Caller, Depends(current_caller)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            max_length=MAX_IDEMPOTENCY_KEY_CHARS,
            description="Retry safely: the same key with the same request returns the job it created (200) instead "
            "of a new one; reused with a different request: 422. Printable ASCII, at most 255 characters, kept "
            "at least 24 h, scoped to your tenant.",
        ),
    ] = None,
) -> Submission:
    if idempotency_key is None:
        return Submission(caller)
    if not _PRINTABLE.match(idempotency_key) or not idempotency_key.strip():
        raise InvalidInputError(
            f"`{IDEMPOTENCY_HEADER}` must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters",
            field=IDEMPOTENCY_HEADER,
        )
    fingerprint = getattr(request.state, "form_fingerprint", None)
    if fingerprint is None:  # a JSON route: the body was not read by the multipart reader
        raise InvalidInputError(f"`{IDEMPOTENCY_HEADER}` is not supported here", field=IDEMPOTENCY_HEADER)
    return Submission(caller, Idempotency(idempotency_key, fingerprint))


SubmissionParam = Annotated[Submission, Depends(job_submission)]


def draw_seed() -> int:
    """A seed for a request that gave none; it is stored in the job's params so the result can be reproduced."""
    return secrets.randbelow(2**31)


async def check_webhook(services: ApiServices, url: str | None) -> str | None:
    if url is None:
        return None
    if not services.settings.webhooks.enabled:
        raise InvalidInputError(
            "webhooks are turned off on this service (ingress.webhooks.enabled)", field="webhook_url"
        )
    await run_in_threadpool(
        lambda: check_webhook_url(url, services.settings.webhooks.allowed_hosts, resolve=services.resolve_host)
    )
    return url


def storage_error(exc: OSError) -> StorageUnavailableError | None:
    if is_storage_failure(exc):
        return StorageUnavailableError(f"results cannot be stored right now ({exc.strerror or exc}); try again later")
    return None


async def _is_a_repeat(services: ApiServices, submission: Submission) -> bool:
    if submission.idempotency is None:
        return False
    earlier = await run_in_threadpool(
        services.store.idempotent_job_id, submission.caller.tenant, submission.idempotency.key
    )
    return earlier is not None


async def check_capacity(services: ApiServices, kind: str, tenant: str, jobs: int = 1) -> int:
    """Refuse with 429 when the tenant's queued-jobs quota or the kind's queue cannot take ``jobs`` more;
    returns the queue depth seen."""
    if services.settings.auth.mode != "off":  # the one local tenant of the embedded default has no quota
        limit = services.settings.limits_for(tenant).max_queued_jobs
        queued = await run_in_threadpool(services.store.queued_jobs_of, tenant)
        if queued + jobs > limit:
            metrics.job_rejected(kind)
            raise ServiceOverloadedError(
                f"your tenant already has {queued} queued jobs and may have {limit}; wait for some to start "
                "(or cancel some) and try again",
                retry_after_s=services.queue.retry_after_s,
            )
    queue = services.queue
    depth = await run_in_threadpool(services.store.queue_depth, kind)
    if depth + jobs > queue.max_queued_jobs:
        metrics.job_rejected(kind)
        raise ServiceOverloadedError(
            f"{depth} {kind} jobs are already waiting, the most this service queues is {queue.max_queued_jobs}; "
            f"try again in {queue.retry_after_s} s",
            retry_after_s=queue.retry_after_s,
        )
    return depth


async def enqueue_job(
    services: ApiServices,
    kind: str,
    params: dict,
    image: Image.Image,
    submission: Submission | None = None,
    webhook_url: str | None = None,
    extra_inputs: dict[str, bytes] | None = None,
) -> JSONResponse:
    """``webhook_url`` must have passed :func:`check_webhook` (routes call it early, before costly work).
    ``extra_inputs`` (file suffix -> bytes) are more input files, stored as ``<job id>.<suffix>`` beside the
    image and before the record like it (a background job's own background picture)."""
    submission = submission or Submission(LOCAL_CALLER)
    depth = None
    if not await _is_a_repeat(services, submission):  # a repeat is answered with its job, never refused for load
        depth = await check_capacity(services, kind, submission.caller.tenant)
    job_id = uuid.uuid4().hex
    # The input is on the shared volume before the record exists, so a worker can never claim a job
    # whose image is missing.
    try:
        await run_in_threadpool(services.results.save_input, job_id, encode_png(image))
        for suffix, data in (extra_inputs or {}).items():
            await run_in_threadpool(write_atomically, services.results.path_for(job_id, suffix), data)
    except OSError as exc:
        await run_in_threadpool(services.results.delete_files, job_id)
        raise (storage_error(exc) or exc) from exc
    try:
        job = await run_in_threadpool(
            lambda: services.store.create(
                kind,
                params,
                job_id=job_id,
                owner=submission.caller.tenant,
                webhook_url=webhook_url,
                idempotency=submission.idempotency,
            )
        )
    except IdempotencyConflict as exc:
        await run_in_threadpool(services.results.delete_files, job_id)
        raise IdempotencyKeyReusedError(
            f"this `{IDEMPOTENCY_HEADER}` was already used for a different request (job {exc.job_id}); "
            "use a new key for a new request",
            field=IDEMPOTENCY_HEADER,
        ) from None
    except BaseException:
        await run_in_threadpool(services.results.delete_files, job_id)
        raise
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if job.replayed:
        await run_in_threadpool(services.results.delete_files, job_id)
        return JSONResponse(job.public(), status_code=200, headers={**headers, "Idempotent-Replayed": "true"})
    metrics.job_submitted(kind)
    if depth is not None:
        metrics.queue_depth(kind, depth + 1)
    return JSONResponse(job.public(), status_code=202, headers=headers)
