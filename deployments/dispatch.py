"""Handing a persisted job to a model replica.

The job record is written before dispatch, and the replica writes every later state itself. The
ingress only watches the call so that a replica which dies mid-job (a crash, a lost node) turns
the job into ``failed`` instead of leaving it ``running`` forever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from deployments.job_store import JobStore
from pipelines.video_request import VideoRequest

log = logging.getLogger(__name__)


class VideoDispatcher(Protocol):
    async def submit(self, job_id: str, request: VideoRequest) -> None: ...


class _Watcher:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._tasks: set[asyncio.Task] = set()

    def watch(self, job_id: str, awaitable) -> None:
        task = asyncio.ensure_future(self._await(job_id, awaitable))
        self._tasks.add(task)  # keep a reference: asyncio holds tasks weakly
        task.add_done_callback(self._tasks.discard)

    async def _await(self, job_id: str, awaitable) -> None:
        try:
            await awaitable
        except Exception as exc:
            log.warning("job %s: worker call ended with %s", job_id, type(exc).__name__)
            await asyncio.to_thread(
                self.store.fail,
                job_id,
                "worker_lost",
                "the video replica stopped before finishing this job (crash, restart or node loss); submit it again",
            )

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class RayVideoDispatcher(_Watcher):
    """Calls ``VideoGenerator.render`` through a Ray Serve deployment handle."""

    def __init__(self, handle, store: JobStore) -> None:
        super().__init__(store)
        self.handle = handle

    async def submit(self, job_id: str, request: VideoRequest) -> None:
        self.watch(job_id, self.handle.render.remote(job_id, request))


class InProcessVideoDispatcher(_Watcher):
    """Runs a ``VideoGenerator`` in this process: tests and a Ray-free development server."""

    def __init__(self, generator, store: JobStore) -> None:
        super().__init__(store)
        self.generator = generator

    async def submit(self, job_id: str, request: VideoRequest) -> None:
        self.watch(job_id, self.generator.render(job_id, request))
