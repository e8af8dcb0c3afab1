"""The exceptions the client raises.

Every failure a caller can act on is one of these, so code using the client needs no ``httpx`` import to
handle them: ``ApiError`` carries the API's own error body, ``ConnectionFailedError`` says the service
could not be reached (after the retries), ``EventStreamError`` that an event stream ended early, and
``WaitTimeoutError`` that a job outlived the caller's patience.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from vividflow.client.models import Batch, Job

if TYPE_CHECKING:
    import httpx

# Statuses that mean "change the request": the CLI exits with 2 on them, as it does for its own checks.
BAD_INPUT_STATUSES = frozenset({400, 413, 422})


class VividflowError(Exception):
    """Base of every exception this package raises on purpose."""


class ApiError(VividflowError):
    """The API answered with an error: ``{"error": {"type", "message", "field"?}}`` and a status code.

    ``type`` is the API's stable machine-readable kind (``invalid_input``, ``job_not_found``,
    ``overloaded``, ...); ``message`` is written for people; ``field`` names the request field at fault
    when there is one. ``retry_after_s`` is the ``Retry-After`` header, when the answer had one.
    """

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        field: str | None = None,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {type}: {message}" + (f" (field: {field})" if field else ""))
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s

    @property
    def is_bad_input(self) -> bool:
        """True when the request itself must change (400, 413, 422), not the moment it is sent."""
        return self.status in BAD_INPUT_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """The error in the API's own shape, plus the status: what ``--json`` prints."""
        body: dict[str, Any] = {"status": self.status, "type": self.type, "message": self.message}
        if self.field:
            body["field"] = self.field
        return {"error": body}

    @classmethod
    def from_response(cls, response: httpx.Response, retry_after_s: float | None = None) -> ApiError:
        """Read the error body; a body that is not the API's (a proxy's HTML page) still gives a clear error."""
        detail: Any = None
        with contextlib.suppress(ValueError, AttributeError):  # not JSON, or JSON that is not an object
            detail = json.loads(response.content).get("error")
        if isinstance(detail, dict) and isinstance(detail.get("message"), str):
            field = detail.get("field")
            return cls(
                response.status_code,
                str(detail.get("type") or "http_error"),
                detail["message"],
                field if isinstance(field, str) else None,
                retry_after_s=retry_after_s,
            )
        text = response.text.strip()[:200] or response.reason_phrase
        message = f"HTTP {response.status_code}: {text}"
        return cls(response.status_code, "http_error", message, retry_after_s=retry_after_s)


class ConnectionFailedError(VividflowError):
    """The service could not be reached, or the connection broke, and retrying did not help."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"could not reach {url}: {reason}")
        self.url = url
        self.reason = reason


class EventStreamError(VividflowError):
    """A job's event stream ended, or sent something unreadable, before the job's final event."""


class WaitTimeoutError(VividflowError, TimeoutError):
    """The job was not final within the ``timeout_s`` given to ``wait``; ``job`` is its last known state
    (a ``Batch`` when ``wait_batch`` timed out)."""

    def __init__(self, job: Job | Batch, timeout_s: float) -> None:
        what = "job" if isinstance(job, Job) else "batch"
        super().__init__(f"{what} {job.id} is still {job.status} after {timeout_s:g} s")
        self.job = job
        self.timeout_s = timeout_s
