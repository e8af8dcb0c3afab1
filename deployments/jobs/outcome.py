"""Turning whatever a model replica's job run raised into the job's final state."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from deployments.jobs.results import is_storage_failure
from deployments.jobs.store import JobStore
from pipelines.common.device_errors import is_device_failure
from pipelines.common.errors import JobCancelledError, VividFlowError

log = logging.getLogger(__name__)


@contextmanager
def recorded_outcome(
    store: JobStore,
    job_id: str,
    worker: str,
    *,
    max_attempts: int = 1,
    on_device_failure: Callable[[BaseException], None] | None = None,
) -> Iterator[None]:
    """Cancelled, failed with the project's message, or failed as an internal error: never left running.

    Every write names the worker, so a worker whose job was reaped and handed to another replica
    cannot overwrite what the new owner records. A device failure (the GPU, not the job, failed) gives
    the job back to the queue for another replica, up to ``max_attempts`` claims, then fails it as
    ``device_error``; ``on_device_failure`` lets the replica take itself out of service.
    """
    try:
        yield
    except JobCancelledError:
        store.mark_cancelled(job_id, worker=worker)
    except VividFlowError as exc:
        store.fail(job_id, exc.kind, exc.message, worker=worker)
    except Exception as exc:
        if is_storage_failure(exc):
            # The results volume is full or read-only: every replica would fail the same way, so the job is
            # not re-queued; the file layer removed its partial file, and /healthz reports 503 until it is fixed.
            log.error("job %s: the result could not be stored: %s", job_id, exc)
            store.fail(
                job_id,
                "storage_unavailable",
                f"the result could not be stored ({exc.strerror or exc}); submit the job again once the service "
                "is healthy",
                worker=worker,
            )
            return
        if on_device_failure is not None and is_device_failure(exc):
            log.error("job %s: device failure (%s); giving the job back, leaving service", job_id, type(exc).__name__)
            message = f"the GPU failed while running the job ({type(exc).__name__})"
            outcome = store.release(job_id, worker, "device_error", message, max_attempts)
            log.warning("job %s %s after a device failure", job_id, outcome)
            on_device_failure(exc)
            return
        log.exception("job %s failed", job_id)
        store.fail(
            job_id,
            "internal_error",
            f"the job failed unexpectedly; the replica log has details (job {job_id})",
            worker=worker,
        )


def publish_result(store: JobStore, job_id: str, worker: str, path: Path, info: dict, timings: dict) -> None:
    """Mark the job succeeded with the file at ``path`` (this attempt's own), or remove the file and stop.

    Checked just before publishing, and again if the store refuses: a cancel accepted while the file was
    being written ends the job ``cancelled``, and a worker that lost its claim only removes its own file.
    """
    try:
        if store.should_stop(job_id, worker):
            raise JobCancelledError("cancelled before the result was published")
        if not store.succeed(job_id, info, timings, worker=worker):
            raise JobCancelledError("the result was not published: the job was cancelled or handed to another worker")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def call_deployment(target, method: str, *args):
    """Call ``target.method(*args)`` from a worker thread, on a Ray handle or an in-process shim alike."""
    bound = getattr(target, method)
    if hasattr(bound, "remote"):
        return bound.remote(*args).result()
    if inspect.iscoroutinefunction(bound):
        return asyncio.run(bound(*args))
    return bound(*args)
