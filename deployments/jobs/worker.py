"""The pull side of the job queue, run inside every model replica.

A replica claims the oldest queued job of its kind from the shared job store, runs it, and
heartbeats from a second thread while it runs. A replica that dies stops heartbeating; the reaper
(``deployments.jobs.reaper``, run by every ingress and every worker) then re-queues its job or, after
``max_attempts``, fails it with ``worker_lost``. Jobs therefore survive the death of the ingress
that accepted them (they are in the store before the 202) and of the replica that ran them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from deployments import metrics
from deployments.config import JobQueueConfig
from deployments.jobs.reaper import reap_once, record_finished
from deployments.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


def worker_name(kind: str) -> str:
    # pid alone is not unique across a restart in a container; the suffix is.
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobWorker:
    def __init__(
        self,
        store: JobStore,
        kind: str,
        run_job: Callable[[Job, str], None],
        queue: JobQueueConfig,
        claim_preference: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        # what the replica holds (its motion LoRAs): claims prefer jobs that need nothing else loaded
        self.claim_preference = claim_preference
        self.store = store
        self.kind = kind
        self.run_job = run_job
        self.queue = queue
        self.name = worker_name(kind)
        self.current: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{kind}-worker", daemon=True)
        self._last_reap = 0.0

    def start(self) -> JobWorker:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop_claiming(self) -> None:
        """Claim nothing new (the loop ends after the running job); safe to call from inside a job run."""
        self._stopping.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Claim nothing new; wait up to ``timeout_s`` for the running job. True when the loop ended."""
        self._stopping.set()
        if self._thread.ident is None:  # never started
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._maybe_reap()
                if self.claim_preference is not None:
                    job = self.store.claim_next(self.kind, self.name, prefer_loras=self.claim_preference())
                else:
                    job = self.store.claim_next(self.kind, self.name)
            except Exception:
                log.exception("%s: the job store is unavailable; retrying", self.name)
                self._stopping.wait(max(self.queue.poll_interval_s, 1.0))
                continue
            if job is None:
                self._stopping.wait(self.queue.poll_interval_s)
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        self.current = job.id
        beating = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, beating), daemon=True)
        beat.start()
        try:
            self.run_job(job, self.name)
        except Exception:  # run_job records outcomes itself; this only guards the loop
            log.exception("%s: job %s escaped its outcome handler", self.name, job.id)
        finally:
            beating.set()
            beat.join()
            self.current = None
        self._record_metrics(job.id)

    def _record_metrics(self, job_id: str) -> None:
        try:
            job = self.store.get(job_id)
        except Exception:
            return
        if job.is_final and job.worker == self.name:  # a reaped-and-reassigned job is counted by its new owner
            record_finished(job)
            metrics.stage_durations(job.kind, job.timings)

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(self.queue.heartbeat_interval_s):
            try:
                if not self.store.heartbeat(job_id, self.name):
                    return  # reassigned, cancelled or finished: nothing left to keep alive
            except Exception:
                log.warning("%s: heartbeat for %s failed", self.name, job_id)

    def _maybe_reap(self) -> None:
        now = time.monotonic()
        if now - self._last_reap >= self.queue.reap_interval_s:
            self._last_reap = now
            reap_once(self.store, self.queue)
