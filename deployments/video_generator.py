"""``VideoGenerator``: the Ray Serve shim around one image-to-video pipeline.

A plain class (Ray is applied in ``deployments.builder``) so tests can drive it directly. The
replica owns the job while it renders: it marks the job running, writes progress after every step,
polls the cancel flag, writes the MP4 and records the final state itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from deployments.config import JobStoreConfig, VideoGeneratorConfig
from deployments.job_store import JobStore
from deployments.results import ResultFiles
from deployments.stores import open_job_store, open_results
from pipelines.errors import JobCancelledError, VividFlowError
from pipelines.media import export_mp4
from pipelines.video_request import VideoRequest

log = logging.getLogger(__name__)


class VideoGenerator:
    def __init__(
        self,
        config: VideoGeneratorConfig,
        store_config: JobStoreConfig,
        *,
        pipeline=None,
        store: JobStore | None = None,
        results: ResultFiles | None = None,
    ) -> None:
        self.config = config
        self.store = store or open_job_store(store_config)
        self.results = results or open_results(store_config)
        if pipeline is None:
            from pipelines.wan_i2v import WanImageToVideo

            started = time.perf_counter()
            pipeline = WanImageToVideo.from_config(config.model)
            log.info("video pipeline ready in %.1f s", time.perf_counter() - started)
        self.pipeline = pipeline
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    async def render(self, job_id: str, request: VideoRequest) -> str:
        """Render one job to completion; returns its final status. Runs the pipeline off the event loop."""
        return await asyncio.to_thread(self.render_blocking, job_id, request)

    def render_blocking(self, job_id: str, request: VideoRequest) -> str:
        if not self.store.start(job_id, self.worker, total_steps=request.steps):
            return self.store.get(job_id).status  # cancelled (or taken) before it started
        try:
            result = self.pipeline(
                request,
                progress=lambda step, total: self.store.report_progress(job_id, step, total),
                should_cancel=lambda: self.store.is_cancel_requested(job_id),
            )
            path = self.results.path_for(job_id, "mp4")
            export = self.config.export
            timings = dict(result.timings_s)
            timings["export"] = export_mp4(result.frames, path, fps=result.fps, crf=export.crf, preset=export.preset)
            timings = {name: round(seconds, 4) for name, seconds in timings.items()}
            result_info = {"path": str(path), "content_type": "video/mp4", "bytes": path.stat().st_size}
            if not self.store.succeed(job_id, result_info, timings):
                path.unlink(missing_ok=True)
        except JobCancelledError:
            self.store.mark_cancelled(job_id)
        except VividFlowError as exc:
            self.store.fail(job_id, exc.kind, exc.message)
        except Exception:
            log.exception("job %s failed", job_id)
            self.store.fail(
                job_id, "internal_error", f"rendering failed unexpectedly; the replica log has details (job {job_id})"
            )
        return self.store.get(job_id).status

    def check_health(self) -> None:
        self.store.ping()
