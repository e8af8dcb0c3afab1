"""``VideoGenerator``: the Ray Serve shim around one image-to-video pipeline.

A plain class (Ray is applied in ``deployments.builder``) so tests can drive it directly. It takes
no HTTP requests for jobs: its :class:`JobWorker` claims queued video jobs from the shared store,
and the replica records running, progress, the MP4 and the final state itself.
"""

from __future__ import annotations

import logging
import time

from deployments.config import JobQueueConfig, JobStoreConfig, VideoGeneratorConfig
from deployments.jobs.connect import open_job_store, open_results
from deployments.jobs.outcome import publish_result, recorded_outcome
from deployments.jobs.results import ResultFiles
from deployments.jobs.retrying import RetryingStore
from deployments.jobs.store import Job, JobStore
from deployments.jobs.worker import JobWorker
from pipelines.common.media import export_mp4
from pipelines.video.request import VideoRequest

log = logging.getLogger(__name__)

REQUEST_FIELDS = ("prompt", "negative_prompt", "duration_s", "steps", "guidance_scale", "guidance_scale_2", "seed")


class VideoGenerator:
    kind = "video"

    def __init__(
        self,
        config: VideoGeneratorConfig,
        store_config: JobStoreConfig,
        queue_config: JobQueueConfig | None = None,
        *,
        pipeline=None,
        store: JobStore | None = None,
        results: ResultFiles | None = None,
        start_worker: bool = True,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.config = config
        self.store = store or open_job_store(store_config, queue_config)
        self.results = results or open_results(store_config)
        if pipeline is None:
            from pipelines.common.devices import cap_process_gpu_memory
            from pipelines.tiny.provision import provision_tiny_models
            from pipelines.video.wan_i2v import WanImageToVideo

            cap_process_gpu_memory(config.deployment.cuda_memory_fraction)  # before the first CUDA allocation
            started = time.perf_counter()
            provision_tiny_models(config.model)
            pipeline = WanImageToVideo.from_config(config.model)
            log.info("video pipeline ready in %.1f s", time.perf_counter() - started)
        self.pipeline = pipeline
        self.queue = queue_config or JobQueueConfig()
        self.unhealthy: str | None = None
        self.worker = JobWorker(self.store, self.kind, self.run_job, self.queue)
        if start_worker:
            self.worker.start()

    def run_job(self, job: Job, worker: str) -> None:
        store = RetryingStore(self.store, self.queue.store_retry_window_s)

        def should_stop() -> bool:  # fenced to this claim: a reaped-and-reassigned job stops here too
            return store.should_stop(job.id, worker)

        with recorded_outcome(
            store, job.id, worker, max_attempts=self.queue.max_attempts, on_device_failure=self._leave_service
        ):
            request = VideoRequest(image=self.results.load_input(job.id), **{k: job.params[k] for k in REQUEST_FIELDS})
            store.report_progress(job.id, 0, request.steps, worker=worker)
            result = self.pipeline(
                request,
                progress=lambda step, total: store.report_progress(job.id, step, total, worker=worker),
                should_cancel=should_stop,
            )
            path = self.results.result_path(job.id, job.attempts, "mp4")
            export = self.config.export
            timings = dict(result.timings_s)
            timings["export"] = export_mp4(result.frames, path, fps=result.fps, crf=export.crf, preset=export.preset)
            timings = {name: round(seconds, 4) for name, seconds in timings.items()}
            info = {"path": str(path), "content_type": "video/mp4", "bytes": path.stat().st_size}
            publish_result(store, job.id, worker, path, info, timings)

    def _leave_service(self, error: BaseException) -> None:
        # The CUDA context may be unusable now: claim nothing more, and fail the health check so Ray replaces
        # this replica; the job went back to the queue for another one.
        self.unhealthy = f"a device error ({type(error).__name__}) left this replica unable to render"
        self.worker.stop_claiming()

    def check_health(self) -> None:
        if self.unhealthy:
            raise RuntimeError(self.unhealthy)
        self.store.ping()
        if not self.worker.alive:
            raise RuntimeError("the job worker thread has stopped")

    def __del__(self) -> None:
        # Ray Serve calls this on graceful shutdown: finish the running video, claim nothing new.
        worker = getattr(self, "worker", None)
        if worker is not None and worker.alive:
            worker.stop(self.config.deployment.graceful_shutdown_timeout_s)
