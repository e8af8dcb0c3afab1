"""The job store as a job run uses it: each write retried through short outages of the store.

A Redis failover, a network blip or a locked SQLite file lasts seconds; a render lasts minutes. Failing the
render on the first refused progress write would throw that work away, so every store call a job run
makes is retried with exponential backoff for up to ``window_s``. Only when the store stays unreachable
for longer does the call raise :class:`StoreUnavailableError` (the job then fails as ``store_unavailable``,
or, if even that cannot be written, the reaper re-queues it once its lease runs out).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from deployments.errors import ServiceNotReadyError, StoreUnavailableError
from deployments.jobs.store import JobStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a store raises when it cannot be reached: the Redis store wraps connection errors in
# ServiceNotReadyError; SQLite raises OperationalError (locked, disk I/O) and the OS raises OSError.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ServiceNotReadyError, sqlite3.OperationalError, OSError)
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0


def retry_store(
    call: Callable[[], T],
    *,
    window_s: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    deadline = clock() + window_s
    delay = FIRST_DELAY_S
    while True:
        try:
            return call()
        except StoreUnavailableError:
            raise
        except TRANSIENT_ERRORS as exc:
            if clock() + delay > deadline:
                raise StoreUnavailableError(
                    f"the job store stayed unreachable for more than {window_s:g} s while {what}"
                ) from exc
            log.warning("job store unreachable while %s (%s); retrying in %.2f s", what, type(exc).__name__, delay)
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)


class RetryingStore:
    """The calls a job run makes on ``store``, each through :func:`retry_store`."""

    def __init__(self, store: JobStore, window_s: float) -> None:
        self.store = store
        self.window_s = window_s

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        return retry_store(call, window_s=self.window_s, what=what)

    def report_progress(self, job_id: str, step: int, total_steps: int, worker: str | None = None) -> None:
        self._retry("recording progress", lambda: self.store.report_progress(job_id, step, total_steps, worker))

    def report_segment(self, job_id: str, segment: int, total_segments: int, worker: str | None = None) -> None:
        self._retry("recording the segment", lambda: self.store.report_segment(job_id, segment, total_segments, worker))

    def should_stop(self, job_id: str, worker: str) -> bool:
        return self._retry("checking for a cancel", lambda: self.store.should_stop(job_id, worker))

    def succeed(self, job_id: str, result: dict, timings: dict, worker: str | None = None) -> bool:
        return self._retry("publishing the result", lambda: self.store.succeed(job_id, result, timings, worker))

    def fail(self, job_id: str, error_type: str, message: str, worker: str | None = None) -> bool:
        return self._retry("recording the failure", lambda: self.store.fail(job_id, error_type, message, worker))

    def release(self, job_id: str, worker: str, error_type: str, message: str, max_attempts: int) -> str:
        return self._retry(
            "giving the job back", lambda: self.store.release(job_id, worker, error_type, message, max_attempts)
        )

    def mark_cancelled(self, job_id: str, worker: str | None = None) -> bool:
        return self._retry("recording the cancel", lambda: self.store.mark_cancelled(job_id, worker))
