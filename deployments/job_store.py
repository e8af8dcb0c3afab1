"""The job record and the store interface every ingress and model replica shares.

A job moves queued -> running -> succeeded | failed | cancelled. Transitions are conditional
(compare-and-set on the status), so a late writer can never move a finished job back.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

JobKind = Literal["video", "background"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass
class Job:
    id: str
    kind: str
    status: str
    created_at: float
    params: dict
    progress: float = 0.0
    step: int = 0
    total_steps: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: dict | None = None
    result: dict | None = None  # internal: {"path", "content_type", "bytes"}
    cancel_requested: bool = False
    worker: str | None = None
    timings: dict = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def public(self) -> dict:
        """The job object of the HTTP contract (no file paths, no worker names)."""
        result = None
        if self.status == "succeeded" and self.result:
            result = {
                "url": f"/v1/jobs/{self.id}/result",
                "content_type": self.result["content_type"],
                "bytes": self.result.get("bytes"),
            }
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 4),
            "step": self.step,
            "total_steps": self.total_steps,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "params": self.params,
            "error": self.error,
            "result": result,
            "cancel_requested": self.cancel_requested,
            "timings_s": self.timings,
        }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job(kind: str, params: dict) -> Job:
    return Job(id=uuid.uuid4().hex, kind=kind, status="queued", created_at=time.time(), params=params)


class JobStore(Protocol):
    def create(self, kind: str, params: dict) -> Job:
        """Persist a new queued job and return it (durable before this returns)."""

    def get(self, job_id: str) -> Job:
        """Return the job or raise ``JobNotFoundError``."""

    def start(self, job_id: str, worker: str, total_steps: int) -> bool:
        """queued -> running; False (and nothing changes) if the job is no longer queued."""

    def report_progress(self, job_id: str, step: int, total_steps: int) -> None:
        """Record progress of a running job."""

    def succeed(self, job_id: str, result: dict, timings: dict) -> bool:
        """running -> succeeded with the result location."""

    def fail(self, job_id: str, error_type: str, message: str) -> bool:
        """queued|running -> failed; False if the job had already ended."""

    def mark_cancelled(self, job_id: str) -> bool:
        """queued|running -> cancelled."""

    def request_cancel(self, job_id: str) -> Job:
        """Idempotent: a queued job is cancelled at once, a running one is flagged; ended jobs are left alone."""

    def is_cancel_requested(self, job_id: str) -> bool:
        """Polled by the worker between denoising steps."""

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
