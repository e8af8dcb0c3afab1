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
from deployments.jobs.replica import JobReplica
from deployments.jobs.results import ResultFiles
from deployments.jobs.retrying import RetryingStore
from deployments.jobs.store import Job, JobStore
from deployments.jobs.worker import JobWorker
from pipelines.common.media import export_mp4
from pipelines.video.request import StoryboardEntry, VideoRequest
from pipelines.video.segment_pieces import SegmentPieces
from pipelines.video.segments import plan_segments

log = logging.getLogger(__name__)

REQUEST_FIELDS = ("prompt", "negative_prompt", "duration_s", "steps", "guidance_scale", "guidance_scale_2", "seed")
# Input files beside ``<id>.input.png`` (the image, or the first view): written by the ingress.
LAST_IMAGE_SUFFIX = "last.png"


def view_suffix(index: int) -> str:
    """The input file of view ``index`` (1..7) of a multi-view job; view 0 is the job's input image."""
    return f"view-{index}.png"


def job_loras(params: dict) -> list[tuple[str, float]]:
    """A job's motion LoRAs as (library id, strength), as the pipeline takes them; none without `lora`."""
    lora = params.get("lora")
    return [(lora, float(params.get("lora_strength", 1.0)))] if lora else []


class VideoGenerator(JobReplica):
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
        self.worker = JobWorker(self.store, self.kind, self.run_job, self.queue, claim_preference=self.held_loras)
        if start_worker:
            self.worker.start()

    def run_job(self, job: Job, worker: str) -> None:
        store = RetryingStore(self.store, self.queue.store_retry_window_s)

        def should_stop() -> bool:  # fenced to this claim: a reaped-and-reassigned job stops here too
            return store.should_stop(job.id, worker)

        with recorded_outcome(
            store, job.id, worker, max_attempts=self.queue.max_attempts, on_device_failure=self._leave_service
        ):
            request = self._request(job)
            export = self.config.export
            # Finished segments live beside the job's input on the shared volume: a re-run after a replica died
            # starts after the last one instead of from zero.
            pieces = SegmentPieces(self.results.root, job.id, fps=16, crf=export.crf, preset=export.preset)
            resumed = pieces.finished()
            total_steps = request.steps * len(plan_segments(request))
            store.report_progress(job.id, request.steps * resumed, total_steps, worker=worker)

            def segment_started(index: int, total: int) -> None:
                if total > 1:
                    store.report_segment(job.id, index + 1, total, worker=worker)

            call = {
                "progress": lambda step, total: store.report_progress(job.id, step, total, worker=worker),
                "should_cancel": should_stop,
            }
            loras = job_loras(job.params)
            if loras:
                call["loras"] = loras
            # A pipeline that streams its segments (the Wan one) writes them to the pieces as they finish; a
            # plain one (test stand-ins, one render) returns its frames, encoded here in one go.
            streams = getattr(self.pipeline, "streams_segments", False)
            if streams:
                call.update(sink=pieces, segment_started=segment_started)
            result = self.pipeline(request, **call)
            path = self.results.result_path(job.id, job.attempts, "mp4")
            timings = dict(result.timings_s)
            if streams:
                timings["export"] = pieces.encode_s + pieces.assemble(path, result.segments)
                if result.segments > 1:
                    timings["segments_resumed"] = resumed
            else:
                timings["export"] = export_mp4(
                    result.frames, path, fps=result.fps, crf=export.crf, preset=export.preset
                )
            timings = {name: round(seconds, 4) for name, seconds in timings.items()}
            info = {"path": str(path), "content_type": "video/mp4", "bytes": path.stat().st_size}
            publish_result(store, job.id, worker, path, info, timings)
        self._drop_pieces_once_final(job.id)

    def _request(self, job: Job) -> VideoRequest:
        params = job.params
        first = self.results.load_input(job.id)
        fields = {k: params[k] for k in REQUEST_FIELDS}
        storyboard = tuple(StoryboardEntry(e["prompt"], e["duration_s"]) for e in params.get("storyboard") or ())
        views = int(params.get("views") or 0)
        if views:
            pictures = (first, *(self._load(job.id, view_suffix(index)) for index in range(1, views)))
            return VideoRequest(
                image=None,
                views=pictures,
                transition_s=params["transition_s"],
                storyboard=storyboard,
                **fields,
            )
        last = self._load(job.id, LAST_IMAGE_SUFFIX) if params.get("last_image") else None
        return VideoRequest(image=first, last_image=last, storyboard=storyboard, **fields)

    def _load(self, job_id: str, suffix: str):
        from PIL import Image

        with Image.open(self.results.path_for(job_id, suffix)) as image:
            return image.convert("RGB")

    def _drop_pieces_once_final(self, job_id: str) -> None:
        # Kept while the job may run again (re-queued after a device failure); gone once it has ended.
        try:
            if self.store.get(job_id).is_final:
                SegmentPieces(self.results.root, job_id).remove()
        except Exception:  # the record was deleted meanwhile: its files went with it
            log.debug("job %s: segment pieces not removed", job_id, exc_info=True)

    def held_loras(self) -> frozenset[str]:
        """The motion LoRAs this replica holds loaded: what its claims prefer (see docs/decisions.md)."""
        adapters = getattr(self.pipeline, "motion_loras", None)
        return adapters.held() if adapters is not None else frozenset()
