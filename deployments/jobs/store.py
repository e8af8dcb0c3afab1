"""The job record and the store interface every ingress and model replica shares.

A job moves queued -> running -> succeeded | failed | cancelled. Transitions are conditional
(compare-and-set on the status), so a late writer can never move a finished job back.

The store is also the dispatch queue: the ingress only persists a queued job; model replicas pull the
oldest queued job of their kind (``claim_next``), heartbeat while it runs, and a reaper hands jobs whose
worker stopped heartbeating back to the queue (or fails them after too many attempts). Because a reaped
job may be claimed again by another worker, a worker's writes can be fenced with its name (``worker=``):
the old worker of a reassigned job can then no longer report progress for it or finish it.

Records carry their owner (the tenant that submitted them) and are kept for ``retention_s`` after they end;
``sweep_expired`` removes older ones so their files can be deleted too. A submission may carry an
idempotency key: the same key (per owner) returns the job it created before instead of a new one. A job
with a webhook stays on the store's delivery list until its final state has been delivered or given up on.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

JobKind = Literal["video", "background", "edit"]
DEFAULT_OWNER = "local"  # the one implicit tenant when authentication is off
DEFAULT_RETENTION_S = 7 * 24 * 3600
DEFAULT_IDEMPOTENCY_TTL_S = 24 * 3600
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
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
    attempts: int = 0  # how many times a worker claimed it; bounds the retries after lost workers
    heartbeat_at: float | None = None
    owner: str = DEFAULT_OWNER
    batch_id: str | None = None
    segment: int | None = None  # segmented videos: the segment being rendered (1-based) ...
    total_segments: int | None = None  # ... of this many; None for one-render jobs
    webhook: dict | None = None  # {"url", "status", "attempts", ...}: the delivery of the final state
    expires_at: float | None = None  # derived by the store: finished_at + its retention
    replayed: bool = False  # derived: create() returned the job an earlier request with this key created

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
            if self.result.get("details") is not None:
                result["details"] = self.result["details"]
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 4),
            "step": self.step,
            "total_steps": self.total_steps,
            "created_at": iso_utc(self.created_at),
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "params": self.params,
            "error": self.error,
            "result": result,
            "cancel_requested": self.cancel_requested,
            "attempts": self.attempts,
            "timings_s": self.timings,
            "owner": self.owner,
            "batch_id": self.batch_id,
            "segment": self.segment,
            "total_segments": self.total_segments,
            "expires_at": iso_utc(self.expires_at),
            "webhook": _public_webhook(self.webhook),
        }


def _public_webhook(state: dict | None) -> dict | None:
    if state is None:
        return None
    keys = ("url", "status", "attempts", "last_attempt_at", "last_status_code", "last_error", "delivered_at", "id")
    return {key: state.get(key) for key in keys}


@dataclass(frozen=True)
class Idempotency:
    """An ``Idempotency-Key`` and the fingerprint of the request that carried it."""

    key: str
    fingerprint: str


def webhook_state(url: str) -> dict:
    """The delivery record of a new job's webhook: pending until its final state has been delivered."""
    return {
        "url": url,
        "status": "pending",
        "attempts": 0,
        "last_attempt_at": None,
        "last_status_code": None,
        "last_error": None,
        "delivered_at": None,
        "id": None,
    }


def iso_utc(timestamp: float | None) -> str | None:
    """The contract's time format: ISO 8601 in UTC with milliseconds and a `Z`."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job(
    kind: str,
    params: dict,
    job_id: str | None = None,
    *,
    owner: str = DEFAULT_OWNER,
    batch_id: str | None = None,
    webhook_url: str | None = None,
) -> Job:
    if job_id is not None and not _JOB_ID.match(job_id):
        raise ValueError(f"job ids are 32 lowercase hex characters, got {job_id!r}")
    return Job(
        id=job_id or uuid.uuid4().hex,
        kind=kind,
        status="queued",
        created_at=time.time(),
        params=params,
        owner=owner,
        batch_id=batch_id,
        webhook=webhook_state(webhook_url) if webhook_url else None,
    )


class IdempotencyConflict(Exception):
    """The key was used before, by this owner, for a different request (``job_id`` is the earlier job)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class JobStore(Protocol):
    def create(
        self,
        kind: str,
        params: dict,
        job_id: str | None = None,
        *,
        owner: str = DEFAULT_OWNER,
        batch_id: str | None = None,
        webhook_url: str | None = None,
        idempotency: Idempotency | None = None,
    ) -> Job:
        """Persist a new queued job and return it (durable before this returns).

        With ``idempotency``: if ``owner`` used the key before and that job still exists, nothing is created:
        the earlier job is returned with ``replayed`` set, or ``IdempotencyConflict`` is raised when the
        fingerprints differ. Checking and creating are one atomic step, so racing requests create one job.
        """

    def idempotent_job_id(self, owner: str, key: str) -> str | None:
        """The job ``owner``'s key created, while both are kept; a read-only look-up (create() decides)."""

    def list_jobs(
        self,
        owner: str | None,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 20,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        """Jobs of ``owner`` (None: everyone's), newest first, strictly older than ``before``
        (``(created_at, id)`` of the last job of the previous page)."""

    def delete(self, job_id: str) -> Job:
        """Remove the record (and its idempotency key) and return what it was; ``JobNotFoundError`` if absent.
        Fenced writes of a worker still running it then find nothing and stop."""

    def sweep_expired(self, now: float | None = None) -> list[str]:
        """Forget ended jobs older than the retention and stale idempotency keys; the ids of the jobs removed
        (or found expired), so their files can be deleted."""

    def existing(self, job_ids: list[str]) -> set[str]:
        """Which of ``job_ids`` have a record (the sweeper deletes files of the others)."""

    def queued_jobs_of(self, owner: str) -> int:
        """Queued jobs of ``owner``, all kinds together (its per-tenant limit)."""

    def take_token(self, bucket: str, rate_per_s: float, burst: int, now: float | None = None) -> float:
        """Take one token from the named bucket (refilled at ``rate_per_s`` up to ``burst``), shared by every
        process on the store: 0 when taken, else the seconds until a token will be there (nothing taken)."""

    def take_due_webhooks(self, now: float, lease_s: float, limit: int = 20) -> list[Job]:
        """Ended jobs whose webhook delivery is due; each is leased for ``lease_s`` so that two deliverers do
        not post it at the same moment (delivery is still at-least-once)."""

    def update_webhook(self, job_id: str, state: dict, due_at: float | None) -> None:
        """Record a delivery attempt; ``due_at`` is the next try, None once delivered or given up."""

    def get(self, job_id: str) -> Job:
        """Return the job or raise ``JobNotFoundError``."""

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        """The jobs of ``job_ids`` that exist, by id, in one round trip (event streams share one poll)."""

    def claim_next(self, kind: str, worker: str, prefer_loras: frozenset[str] = frozenset()) -> Job | None:
        """Atomically take a queued job of ``kind`` for ``worker``: queued -> running, attempts + 1.

        ``prefer_loras``: the motion LoRAs the worker holds; among the next few jobs in claim order, one that
        needs none or one of these goes first, unless the head has waited too long (``lora_affinity``).

        Tenants take turns: the job is the oldest of the tenant whose last claim of this kind is the oldest
        (a tenant never served goes first); within a tenant, jobs go oldest first.

        None if nothing is queued. Racing workers never get the same job. A queued job already flagged for
        cancellation is ended as cancelled instead of being handed out.
        """

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """Renew the worker's lease; False if the job is no longer running for ``worker`` (stop working on it)."""

    def reap_stale(self, lease_s: float, max_attempts: int) -> list[tuple[str, str]]:
        """Settle running jobs whose last heartbeat is older than ``lease_s`` seconds.

        Each becomes ``cancelled`` if a cancel was requested, else ``queued`` again (in its old place) if it
        was claimed fewer than ``max_attempts`` times, else ``failed`` (``worker_lost``). Returns
        ``(action, job_id)`` pairs, action being "requeued", "failed" or "cancelled".
        """

    def active_jobs(self, kind: str) -> int:
        """Queued plus running jobs of ``kind``: the autoscaler's measure of load."""

    def queue_depth(self, kind: str) -> int:
        """How many jobs of ``kind`` wait to be claimed."""

    def create_batch(
        self,
        kind: str,
        jobs: list[tuple[str, dict]],
        batch_id: str,
        *,
        owner: str = DEFAULT_OWNER,
        webhook_url: str | None = None,
        idempotency: Idempotency | None = None,
    ) -> list[Job]:
        """Persist ``(job id, params)`` as queued jobs of one batch in one atomic step: all of them or none.

        With ``idempotency`` the key is bound to the batch's first job: a replay returns the earlier batch's
        jobs (each with ``replayed`` set), a different request raises ``IdempotencyConflict``."""

    def batch_jobs(self, batch_id: str) -> list[Job]:
        """The jobs of a batch in the order they were given to ``create_batch``; empty if there is none."""

    def report_segment(self, job_id: str, segment: int, total_segments: int, worker: str | None = None) -> None:
        """Record which segment (1-based) of a segmented video is rendering (only while it runs for ``worker``)."""

    def report_progress(self, job_id: str, step: int, total_steps: int, worker: str | None = None) -> None:
        """Record progress of a running job (only if it still runs for ``worker``, when given)."""

    def succeed(self, job_id: str, result: dict, timings: dict, worker: str | None = None) -> bool:
        """running -> succeeded with the result location (only if it still runs for ``worker``, when given).

        Refused once a cancel was requested: a job whose cancel was accepted never ends ``succeeded``."""

    def fail(self, job_id: str, error_type: str, message: str, worker: str | None = None) -> bool:
        """queued|running -> failed; False if the job had already ended (or, with ``worker``, was reassigned)."""

    def mark_cancelled(self, job_id: str, worker: str | None = None) -> bool:
        """queued|running -> cancelled (with ``worker``: only if it still runs for that worker)."""

    def release(self, job_id: str, worker: str, error_type: str, message: str, max_attempts: int) -> str:
        """``worker`` gives its running job back after a failure of its own (not of the job): re-queued while
        attempts < ``max_attempts`` (``requeued``), else failed with ``error_type`` (``failed``); a cancelled
        job ends ``cancelled``; ``lost`` if the job no longer runs for ``worker`` (nothing changes)."""

    def request_cancel(self, job_id: str) -> Job:
        """Idempotent: a queued job is cancelled at once, a running one is flagged; ended jobs are left alone."""

    def is_cancel_requested(self, job_id: str) -> bool:
        """Whether a cancel was requested for the job."""

    def should_stop(self, job_id: str, worker: str) -> bool:
        """Polled by ``worker`` between stages and steps: a cancel was requested, or the job no longer runs
        for it (reaped and re-queued, handed to another worker, or ended): its work would be thrown away."""

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
