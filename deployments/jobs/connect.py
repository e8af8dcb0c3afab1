"""Opening the configured job store and result folder."""

from __future__ import annotations

from deployments.config import JobQueueConfig, JobStoreConfig
from deployments.jobs.results import ResultFiles
from deployments.jobs.store import JobStore


def open_job_store(config: JobStoreConfig, jobs: JobQueueConfig | None = None) -> JobStore:
    """The configured store; ``jobs`` gives the retention of ended jobs and of idempotency keys."""
    jobs = jobs or JobQueueConfig()
    kept = {"retention_s": jobs.retention_s, "idempotency_ttl_s": jobs.idempotency_ttl_s}
    if config.backend == "sqlite":
        from deployments.jobs.sqlite_store import SQLiteJobStore

        return SQLiteJobStore(config.sqlite_path, **kept)
    if config.backend == "redis":
        from deployments.jobs.redis_store import RedisJobStore

        return RedisJobStore(config.redis_url, **kept)
    raise ValueError(f"unknown job store backend {config.backend!r}")


def open_results(config: JobStoreConfig) -> ResultFiles:
    return ResultFiles(config.results_dir)
