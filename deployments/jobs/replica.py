"""What every job-pulling model replica (video, background, edit) does the same way: health and shutdown.

A subclass sets ``self.store``, ``self.worker`` (its ``JobWorker``), ``self.config.deployment`` and
``self.unhealthy`` (None while it can render) in its constructor.
"""

from __future__ import annotations


class JobReplica:
    unhealthy: str | None = None

    def _leave_service(self, error: BaseException) -> None:
        # The CUDA context may be unusable now: claim nothing more, and fail the health check so Ray replaces
        # this replica; the job went back to the queue for another one.
        self.unhealthy = f"a device error ({type(error).__name__}) left this replica unable to render"
        self.worker.stop_claiming()

    def check_health(self) -> None:
        """Ray Serve's health check: a device error, an unreachable job store or a dead worker thread fails it."""
        if self.unhealthy:
            raise RuntimeError(self.unhealthy)
        self.store.ping()
        if not self.worker.alive:
            raise RuntimeError("the job worker thread has stopped")

    def __del__(self) -> None:
        # Ray Serve calls this on graceful shutdown: finish the running job, claim nothing new.
        worker = getattr(self, "worker", None)
        if worker is not None and worker.alive:
            worker.stop(self.config.deployment.graceful_shutdown_timeout_s)
