"""When to send a request again, and how long to wait first: one policy shared by both clients.

Two kinds of failure are worth another try. The server may say "not now" (``429`` with ``Retry-After``
when a queue is full, ``503`` while it starts): the wait it asks for is honoured, up to a cap. Or the
network may fail: then the wait grows exponentially, with jitter so many clients do not return in step.
Every retry loop is bounded by attempts and by total time, so a script never hangs on a dead server.

A failure after the request may have reached the server (a read timeout, a dropped connection) is retried
for job submissions too, because each submission carries an ``Idempotency-Key`` that stays the same across
its retries and the server answers a repeat with the job the first attempt created (``DESIGN.md`` §6).
``resend_submits=False`` turns that off for servers that predate the key.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

# Failures where the request never left this machine: always safe to send again.
NEVER_SENT: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures where it may have arrived: safe only for requests that create nothing.
MAYBE_SENT: tuple[type[Exception], ...] = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryNotice:
    """Passed to a client's ``on_retry`` callback just before it waits: what failed and for how long it waits."""

    method: str
    path: str
    attempt: int  # the attempt that failed, from 1
    delay_s: float
    status: int | None  # the HTTP status, or None for a network failure
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop. ``RetryPolicy(max_attempts=1)`` turns retrying off."""

    max_attempts: int = 6
    max_elapsed_s: float = 60.0  # never start a wait that would end later than this after the first attempt
    backoff_initial_s: float = 0.5
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 10.0
    retry_after_max_s: float = 30.0  # a longer Retry-After is shortened to this
    jitter: float = 0.2  # each backoff wait is scaled by a random factor in [1 - jitter, 1 + jitter]
    retry_statuses: frozenset[int] = frozenset({429, 503})
    # 503s that name a configuration problem (a missing checkpoint, an unsupported GPU): waiting cannot fix them
    permanent_error_types: frozenset[str] = frozenset({"model_not_found", "unsupported_hardware"})
    resend_submits: bool = True  # retry job submissions after failures that may have reached the server

    def backoff_s(self, attempt: int) -> float:
        """The exponential wait after failed attempt ``attempt`` (1, 2, ...)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * self.backoff_multiplier ** (attempt - 1))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter))) if self.jitter else base

    def delay_after_status(
        self, status: int, retry_after: str | None, attempt: int, elapsed_s: float, error_type: str | None = None
    ) -> float | None:
        """The wait before the next attempt after an answer with ``status``; None: do not retry."""
        if status not in self.retry_statuses or error_type in self.permanent_error_types:
            return None
        asked = parse_retry_after(retry_after)
        delay = self.backoff_s(attempt) if asked is None else min(asked, self.retry_after_max_s)
        return self._within_bounds(delay, attempt, elapsed_s)

    def delay_after_error(self, error: Exception, attempt: int, elapsed_s: float, creates_job: bool) -> float | None:
        """The wait before the next attempt after a network failure; None: do not retry."""
        if isinstance(error, NEVER_SENT):
            retryable = True
        elif isinstance(error, MAYBE_SENT):
            retryable = not creates_job or self.resend_submits
        else:  # an invalid URL, an unsupported scheme: another try cannot help
            retryable = False
        return self._within_bounds(self.backoff_s(attempt), attempt, elapsed_s) if retryable else None

    def _within_bounds(self, delay: float, attempt: int, elapsed_s: float) -> float | None:
        if attempt >= self.max_attempts or elapsed_s + delay > self.max_elapsed_s:
            return None
        return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
