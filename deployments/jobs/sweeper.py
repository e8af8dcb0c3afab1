"""Retention: ended jobs are forgotten after ``jobs.retention_s``, and no file outlives its job.

Run by every ingress replica (each step is idempotent, so several may run at once). Three kinds of files
are deleted: those of jobs the store just forgot or found expired (Redis expires records by itself), and
orphans: files whose job has no record, left by a worker that was killed, a submission that failed after
storing its input, or a job deleted while its worker was still writing. Orphans are only taken once they
are ``orphan_grace_s`` old, because an input is written just before its job record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from deployments.config import JobQueueConfig
from deployments.jobs.results import ResultFiles
from deployments.jobs.store import JobStore

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    expired_jobs: int = 0
    files_deleted: int = 0
    orphans_deleted: int = 0


def sweep_once(store: JobStore, results: ResultFiles, queue: JobQueueConfig, now: float | None = None) -> SweepReport:
    now = time.time() if now is None else now
    report = SweepReport()
    for job_id in store.sweep_expired(now):
        report.expired_jobs += 1
        report.files_deleted += results.delete_files(job_id)
    stale = {}
    for job_id, paths in results.stored_files().items():
        ages = []
        for path in paths:
            try:
                ages.append(now - path.stat().st_mtime)
            except FileNotFoundError:
                continue
        if ages and min(ages) > queue.orphan_grace_s:
            stale[job_id] = paths
    alive = store.existing(sorted(stale)) if stale else set()
    for job_id, paths in stale.items():
        if job_id in alive:
            continue
        for path in paths:
            path.unlink(missing_ok=True)
            report.orphans_deleted += 1
    if report.expired_jobs or report.orphans_deleted:
        log.info(
            "retention: %d expired job(s), %d of their files and %d orphaned file(s) deleted",
            report.expired_jobs,
            report.files_deleted,
            report.orphans_deleted,
        )
    return report
