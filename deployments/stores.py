"""Opening the configured job store and result folder."""

from __future__ import annotations

from deployments.config import JobStoreConfig
from deployments.job_store import JobStore
from deployments.results import ResultFiles


def open_job_store(config: JobStoreConfig) -> JobStore:
    if config.backend == "sqlite":
        from deployments.sqlite_job_store import SQLiteJobStore

        return SQLiteJobStore(config.sqlite_path)
    if config.backend == "redis":
        from deployments.redis_job_store import RedisJobStore

        return RedisJobStore(config.redis_url, finished_job_ttl_s=config.finished_job_ttl_s)
    raise ValueError(f"unknown job store backend {config.backend!r}")


def open_results(config: JobStoreConfig) -> ResultFiles:
    return ResultFiles(config.results_dir)
