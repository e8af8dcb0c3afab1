"""``VideoEditor``: the Ray Serve shim that runs text-driven video edits (``edit`` jobs) end to end.

A plain class (Ray is applied in ``deployments.builder``) so tests can drive it directly. Like
``VideoGenerator`` it takes no HTTP requests: its :class:`JobWorker` claims queued edit jobs from the
shared store, decodes the uploaded source (stored beside the job by the ingress), asks the ``Segmenter``
deployment for per-frame masks when ``mode=replace``, runs the VACE pipeline (progress after every step,
cancel at the next), exports the MP4 with the source's sound, and records the result and the final state
itself, fenced to its claim.
"""

from __future__ import annotations

import logging
import time

from deployments.config import EditLimits, JobQueueConfig, JobStoreConfig, VideoEditorConfig
from deployments.jobs.connect import open_job_store, open_results
from deployments.jobs.outcome import call_deployment, publish_result, recorded_outcome
from deployments.jobs.replica import JobReplica
from deployments.jobs.results import ResultFiles
from deployments.jobs.retrying import RetryingStore
from deployments.jobs.store import Job, JobStore
from deployments.jobs.worker import JobWorker
from pipelines.common.media import export_mp4
from pipelines.edit.audio import add_source_audio
from pipelines.edit.masks import subject_masks
from pipelines.edit.request import EditRequest
from pipelines.edit.video_input import decode_video

log = logging.getLogger(__name__)

REQUEST_FIELDS = (
    "prompt",
    "negative_prompt",
    "mode",
    "strength",
    "steps",
    "guidance_scale",
    "guidance_scale_2",
    "seed",
)
REFERENCE_SUFFIX = "reference.png"


class VideoEditor(JobReplica):
    kind = "edit"

    def __init__(
        self,
        config: VideoEditorConfig,
        store_config: JobStoreConfig,
        queue_config: JobQueueConfig | None = None,
        segmenter=None,
        *,
        edits: EditLimits | None = None,
        pipeline=None,
        store: JobStore | None = None,
        results: ResultFiles | None = None,
        start_worker: bool = True,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.config = config
        self.segmenter = segmenter
        self.limits = edits or EditLimits()
        self.store = store or open_job_store(store_config, queue_config)
        self.results = results or open_results(store_config)
        if pipeline is None:
            from pipelines.common.devices import cap_process_gpu_memory
            from pipelines.edit.wan_vace import WanVaceEditor
            from pipelines.tiny.provision import provision_tiny_models

            cap_process_gpu_memory(config.deployment.cuda_memory_fraction)  # before the first CUDA allocation
            started = time.perf_counter()
            provision_tiny_models(config.model)
            pipeline = WanVaceEditor.from_config(config.model)
            log.info("edit pipeline ready in %.1f s", time.perf_counter() - started)
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
            params = job.params
            timings: dict[str, float] = {}
            clock = time.perf_counter()
            source = self.results.path_for(job.id, params["source_suffix"])
            with open(source, "rb") as upload:
                decoded = decode_video(upload, self.limits)
            timings["decode"] = time.perf_counter() - clock
            store.report_progress(job.id, 0, params["steps"], worker=worker)
            details: dict = {"mode": params["mode"], "frames": len(decoded.frames)}
            masks = reference = None
            if params["mode"] == "replace":
                clock = time.perf_counter()
                masks = self._masks(decoded.frames, should_stop)
                timings["segmentation"] = time.perf_counter() - clock
                details["masks"] = masks.ranges()
                details["mask_dilate_px"] = masks.dilate_px
                if params.get("reference_image"):
                    from PIL import Image

                    with Image.open(self.results.path_for(job.id, REFERENCE_SUFFIX)) as stored:
                        reference = stored.convert("RGB")
            else:
                details["control"] = params["control"]
            request = EditRequest(
                frames=decoded.frames,
                masks=None if masks is None else masks.masks,
                reference_image=reference,
                feather_px=self.config.model.mask_feather_px,
                control=params.get("control") or "edges",
                **{key: params[key] for key in REQUEST_FIELDS},
            )
            result = self.pipeline(
                request,
                progress=lambda step, total: store.report_progress(job.id, step, total, worker=worker),
                should_cancel=should_stop,
            )
            timings.update(result.timings_s)
            path = self.results.result_path(job.id, job.attempts, "mp4")
            export = self.config.export
            timings["export"] = export_mp4(result.frames, path, fps=result.fps, crf=export.crf, preset=export.preset)
            details["audio"] = "dropped (keep_audio=false)"
            if params["keep_audio"]:
                seconds = add_source_audio(
                    path, source, start_s=decoded.start_s, duration_s=len(result.frames) / result.fps
                )
                details["audio"] = "none in the source" if seconds is None else "copied (AAC)"
                if seconds is not None:
                    timings["audio"] = seconds
            timings = {name: round(seconds, 4) for name, seconds in timings.items()}
            info = {"path": str(path), "content_type": "video/mp4", "bytes": path.stat().st_size, "details": details}
            publish_result(store, job.id, worker, path, info, timings)

    def _masks(self, frames, should_stop):
        if self.segmenter is None:
            from pipelines.common.errors import ModelNotFoundError

            raise ModelNotFoundError("mode=replace needs the segmenter deployment, and none is configured")
        from PIL import Image

        def segment(index, rgb):
            found = call_deployment(self.segmenter, "segment", Image.fromarray(rgb))
            return found["alpha"], found["stage"]

        model = self.config.model
        return subject_masks(
            frames,
            segment,
            every_n_frames=model.mask_every_n_frames,
            smooth_frames=model.mask_smooth_frames,
            dilate_px=model.mask_dilate_px,
            should_cancel=should_stop,
        )
