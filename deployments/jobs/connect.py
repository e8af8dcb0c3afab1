"""Opening the configured job store and result folder."""

from __future__ import annotations

from deployments.config import JobStoreConfig
from deployments.jobs.results import ResultFiles
from deployments.jobs.store import JobStore


def open_job_store(config: JobStoreConfig) -> JobStore:
    if config.backend == "sqlite":
        from deployments.jobs.sqlite_store import SQLiteJobStore

        return SQLiteJobStore(config.sqlite_path)
    if config.backend == "redis":
        from deployments.jobs.redis_store import RedisJobStore

        return RedisJobStore(config.redis_url, finished_job_ttl_s=config.finished_job_ttl_s)
    raise ValueError(f"unknown job store backend {config.backend!r}")


def open_results(config: JobStoreConfig) -> ResultFiles:
    return ResultFiles(config.results_dir)
