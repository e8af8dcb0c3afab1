"""One poll of the job store for every open event stream of this ingress replica.

Each ``/v1/jobs/{id}/events`` stream subscribes to its job here instead of polling the store itself: a single
task reads every watched job in one batched call (``get_many``) per tick and hands each stream the newest
snapshot. A thousand watchers cost one query per tick, not four thousand a second. The hub also counts open
streams per tenant, so one tenant cannot hold every connection of the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from deployments.errors import ServiceOverloadedError
from deployments.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


class Subscription:
    """The newest snapshot of one job (None once the job is gone), replaced, never queued up."""

    def __init__(self, job_id: str, tenant: str) -> None:
        self.job_id, self.tenant = job_id, tenant
        self.latest: Job | None = None
        self.gone = False
        self.changed = asyncio.Event()

    def publish(self, job: Job | None) -> None:
        if job is None:
            self.gone = True
        else:
            self.latest = job
        self.changed.set()

    async def next(self, timeout_s: float) -> bool:
        """Wait for a new snapshot; False on timeout."""
        try:
            await asyncio.wait_for(self.changed.wait(), timeout_s)
        except TimeoutError:
            return False
        self.changed.clear()
        return True


class EventHub:
    def __init__(self, store: JobStore, poll_s: float) -> None:
        self.store, self.poll_s = store, poll_s
        self._subscriptions: set[Subscription] = set()
        self._open_per_tenant: Counter[str] = Counter()
        self._task: asyncio.Task | None = None

    def open_streams(self, tenant: str) -> int:
        return self._open_per_tenant[tenant]

    def subscribe(self, job_id: str, tenant: str, max_streams: int) -> Subscription:
        if self._open_per_tenant[tenant] >= max_streams:
            raise ServiceOverloadedError(
                f"{max_streams} event streams are already open for your tenant on this server, the most allowed; "
                "close one, or poll GET /v1/jobs/{id}",
                retry_after_s=5,
            )
        subscription = Subscription(job_id, tenant)
        self._subscriptions.add(subscription)
        self._open_per_tenant[tenant] += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            self._open_per_tenant[subscription.tenant] -= 1

    async def _poll(self) -> None:
        while self._subscriptions:
            await asyncio.sleep(self.poll_s)
            ids = sorted({subscription.job_id for subscription in self._subscriptions})
            try:
                jobs = await asyncio.to_thread(self.store.get_many, ids)
            except Exception:  # a store blip: streams keep their last state and the next tick tries again
                log.warning("event streams: reading %d job(s) failed; retrying", len(ids))
                continue
            for subscription in list(self._subscriptions):
                subscription.publish(jobs.get(subscription.job_id))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
