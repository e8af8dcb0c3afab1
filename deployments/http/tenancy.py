"""Who is calling: the tenant that owns the jobs a request creates, and what it may see.

With authentication off (the embedded default) every caller is the one implicit tenant ``local``. A job of
another tenant is answered exactly like an unknown id (404): ids are not confirmed to outsiders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from deployments.errors import JobNotFoundError
from deployments.jobs.store import DEFAULT_OWNER, Job, JobStore


@dataclass(frozen=True)
class Caller:
    tenant: str
    role: Literal["user", "admin"] = "user"

    def can_see(self, job: Job) -> bool:
        return self.role == "admin" or job.owner == self.tenant

    @property
    def listing_owner(self) -> str | None:
        """Whose jobs ``GET /v1/jobs`` lists: an admin's listing spans every tenant."""
        return None if self.role == "admin" else self.tenant


LOCAL_CALLER = Caller(DEFAULT_OWNER)


def current_caller(request: Request) -> Caller:
    """The caller the authentication step recorded on the request; the implicit tenant when it is off."""
    return getattr(request.state, "caller", None) or LOCAL_CALLER


CallerParam = Annotated[Caller, Depends(current_caller)]


async def visible_job(store: JobStore, job_id: str, caller: Caller) -> Job:
    job = await run_in_threadpool(store.get, job_id)
    if not caller.can_see(job):
        raise JobNotFoundError(f"no job with id {job_id!r}", field="job_id")
    return job
