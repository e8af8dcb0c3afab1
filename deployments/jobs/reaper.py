"""The reaper: jobs whose worker stopped heartbeating go back to the queue, or fail after ``max_attempts``.

Every ingress and every worker runs it (a store-side compare-and-set makes concurrent reapers safe),
so no single process has to be alive for a lost job to be noticed.
"""

from __future__ import annotations

import logging

from deployments import metrics
from deployments.config import JobQueueConfig
from deployments.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


def reap_once(store: JobStore, queue: JobQueueConfig) -> list[tuple[str, str]]:
    outcomes = store.reap_stale(queue.lease_s, queue.max_attempts)
    for outcome, job_id in outcomes:
        log.warning("job %s %s: its worker stopped heartbeating", job_id, outcome)
        metrics.jobs_reaped(outcome)
        if outcome != "requeued":
            record_finished(store.get(job_id))
    return outcomes


def record_finished(job: Job) -> None:
    latency = job.finished_at - job.created_at if job.finished_at else None
    metrics.job_finished(job.kind, job.status, latency)
