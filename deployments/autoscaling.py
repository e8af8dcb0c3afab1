"""Queue-aware autoscaling: scale a model deployment on the jobs waiting for it, not on HTTP requests.

Video and background replicas pull jobs from the store, so Ray Serve sees no ongoing requests on
them; its default policy would scale them to the minimum under any load. This policy (run by the
Serve controller) asks the job store how many jobs of its kind are queued or running and wants one
replica per ``jobs_per_replica`` of them; Serve then clamps to min/max replicas.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

log = logging.getLogger(__name__)


def desired_replicas(active_jobs: int, jobs_per_replica: float, current: int, minimum: int, maximum: int) -> int:
    """Enough replicas for every active job, within bounds; never below what running jobs occupy."""
    wanted = math.ceil(active_jobs / jobs_per_replica) if active_jobs else 0
    return max(minimum, min(maximum, wanted))


class QueueDepthPolicy:
    """``autoscaling_config.policy`` for a job-pulling deployment; constructed by the Serve controller."""

    def __init__(self, job_store: dict, kind: str, jobs_per_replica: float = 1.0, poll_interval_s: float = 5.0):
        from deployments.config import JobStoreConfig

        self.store_config = JobStoreConfig.model_validate(job_store)
        self.kind = kind
        self.jobs_per_replica = jobs_per_replica
        self.poll_interval_s = poll_interval_s
        self.active = 0
        self._store = None
        self._task: asyncio.Future | None = None
        self._last_poll = 0.0

    def _poll(self) -> int:
        if self._store is None:
            from deployments.jobs.connect import open_job_store

            self._store = open_job_store(self.store_config)
        return self._store.active_jobs(self.kind)

    def _collect(self, task: asyncio.Future) -> None:
        try:
            self.active = task.result()
        except Exception as exc:  # keep the last known load; the controller must not stall on a store outage
            log.warning("autoscaling: cannot read %s jobs from the store: %s", self.kind, type(exc).__name__)

    def __call__(self, ctx) -> tuple[int, dict]:
        now = time.monotonic()
        if (self._task is None or self._task.done()) and now - self._last_poll >= self.poll_interval_s:
            self._last_poll = now
            # The store call may block (network); run it off the controller's event loop.
            self._task = asyncio.get_running_loop().run_in_executor(None, self._poll)
            self._task.add_done_callback(self._collect)
        target = desired_replicas(
            self.active,
            self.jobs_per_replica,
            ctx.current_num_replicas,
            ctx.capacity_adjusted_min_replicas,
            ctx.capacity_adjusted_max_replicas,
        )
        return target, {"active_jobs": self.active}
