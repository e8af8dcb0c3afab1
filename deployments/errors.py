"""Errors raised by the serving layer itself (the pipelines' errors live in ``pipelines.common.errors``)."""

from __future__ import annotations

from pipelines.common.errors import VividFlowError


class JobNotFoundError(VividFlowError):
    kind = "job_not_found"


class JobStateError(VividFlowError):
    """The job exists but is in the wrong state for the request (for example no result yet)."""

    kind = "job_state_conflict"


class ServiceOverloadedError(VividFlowError):
    kind = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 5, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class ServiceNotReadyError(VividFlowError):
    kind = "not_ready"


class StoreUnavailableError(ServiceNotReadyError):
    """The job store stayed unreachable for longer than a job run may wait for it."""

    kind = "store_unavailable"


class StorageUnavailableError(ServiceNotReadyError):
    """The results volume cannot be written (full, read-only, gone): nothing can be stored until it is fixed."""

    kind = "storage_unavailable"


class IdempotencyKeyReusedError(VividFlowError):
    """An ``Idempotency-Key`` came back with a different request than the one it was first used for."""

    kind = "idempotency_conflict"


class AuthenticationError(VividFlowError):
    """No API key, or one this service does not know (401 with ``WWW-Authenticate: Bearer``)."""

    kind = "unauthenticated"


class ForbiddenError(VividFlowError):
    """A valid key whose role may not do this (an admin-only route)."""

    kind = "forbidden"
