"""``BackgroundGenerator``: the Ray Serve shim that runs background-replacement jobs end to end.

Segmentation and image analysis run in their own deployments (smaller GPU fractions, their own
scaling); this replica's :class:`JobWorker` claims a queued background job, asks them for the
subject matte and the prompt enrichment, synthesises the background with SDXL (progress after
every step, cancel at the next), composites, and records the PNG and the final state itself.
A job with the caller's own background (a picture or a colour) or ``output=cutout`` skips the
analysis and SDXL: segmentation, then fitting and compositing (or the RGBA cut-out) only.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from deployments.config import BackgroundGeneratorConfig, JobQueueConfig, JobStoreConfig
from deployments.jobs.connect import open_job_store, open_results
from deployments.jobs.outcome import call_deployment, publish_result, recorded_outcome
from deployments.jobs.replica import JobReplica
from deployments.jobs.results import ResultFiles
from deployments.jobs.retrying import RetryingStore
from deployments.jobs.store import Job, JobStore
from deployments.jobs.worker import JobWorker
from pipelines.background.background_choice import UPLOAD_SUFFIX, BackgroundChoice, own_background
from pipelines.background.compositor import composite_onto_background, cutout_rgba, fit_background
from pipelines.background.job import BackgroundJobRequest
from pipelines.background.subject_mask import SubjectMask
from pipelines.common.files import write_atomically
from pipelines.common.images import encode_png

log = logging.getLogger(__name__)

REQUEST_FIELDS = (
    "prompt",
    "negative_prompt",
    "composition",
    "focus",
    "feather_px",
    "steps",
    "guidance_scale",
    "seed",
    "scene_id",
    "enrich_prompt",
)


class BackgroundGenerator(JobReplica):
    kind = "background"

    def __init__(
        self,
        config: BackgroundGeneratorConfig,
        store_config: JobStoreConfig,
        queue_config: JobQueueConfig | None,
        segmenter,
        image_analyzer=None,
        *,
        pipeline=None,
        store: JobStore | None = None,
        results: ResultFiles | None = None,
        start_worker: bool = True,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.config = config
        self.segmenter = segmenter
        self.image_analyzer = image_analyzer
        self.store = store or open_job_store(store_config, queue_config)
        self.results = results or open_results(store_config)
        if pipeline is None:
            from pipelines.background.sdxl import SdxlBackground
            from pipelines.common.devices import cap_process_gpu_memory
            from pipelines.tiny.provision import provision_tiny_models

            cap_process_gpu_memory(config.deployment.cuda_memory_fraction)  # before the first CUDA allocation
            started = time.perf_counter()
            provision_tiny_models(config.model)
            pipeline = SdxlBackground.from_config(config.model)
            log.info("background pipeline ready in %.1f s", time.perf_counter() - started)
        self.pipeline = pipeline
        self.queue = queue_config or JobQueueConfig()
        self.unhealthy: str | None = None
        self.worker = JobWorker(self.store, self.kind, self.run_job, self.queue)
        if start_worker:
            self.worker.start()

    def run_job(self, job: Job, worker: str) -> None:
        store = RetryingStore(self.store, self.queue.store_retry_window_s)
        with recorded_outcome(
            store, job.id, worker, max_attempts=self.queue.max_attempts, on_device_failure=self._leave_service
        ):
            request = self._request_of(job)
            # A generated background reports its SDXL steps; the others have one stage after segmentation.
            store.report_progress(job.id, 0, request.steps if request.background.generated else 1, worker=worker)
            self._render(store, job.id, job.attempts, worker, request)

    def _request_of(self, job: Job) -> BackgroundJobRequest:
        params = job.params
        if "background" in params:
            choice = BackgroundChoice.from_record(params["background"])
        else:  # queued before own backgrounds existed: always generated
            choice = BackgroundChoice(source="scene" if params.get("scene_id") else "prompt")
        background_image = None
        if choice.source == "image":
            from PIL import Image

            with Image.open(self.results.path_for(job.id, UPLOAD_SUFFIX)) as stored:
                background_image = stored.convert("RGB")
        fields = {key: params[key] for key in REQUEST_FIELDS if key in params}
        return BackgroundJobRequest(
            image=self.results.load_input(job.id), background=choice, background_image=background_image, **fields
        )

    def _render(self, store: RetryingStore, job_id: str, attempt: int, worker: str, request) -> None:
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        mask: SubjectMask = call_deployment(
            self.segmenter, "mask", request.image, request.composition, request.focus, request.feather_px
        )
        timings["segmentation"] = time.perf_counter() - clock
        mask.require_usable()

        choice: BackgroundChoice = request.background
        width, height = request.image.size
        details: dict = {"mask": mask.summary(), "background": choice.record()}
        backdrop = None
        if choice.generated:
            backdrop = self._generate(store, job_id, worker, request, timings, details)
        elif choice.source == "image":
            details["background_size"] = dict(zip(("width", "height"), request.background_image.size, strict=True))
        elif choice.source == "color":
            details["background_size"] = {"width": width, "height": height}

        clock = time.perf_counter()
        if choice.output == "cutout":
            picture = cutout_rgba(
                np.asarray(request.image),
                mask.alpha,
                blend_space=self.config.blend_space,
                working_megapixels=self.config.working_megapixels,
            )
        else:
            if backdrop is None:
                own = np.asarray(request.background_image) if request.background_image is not None else None
                backdrop = own_background(choice, width, height, own)
            picture = self._composite(request, backdrop, mask.alpha)
        timings["composite"] = time.perf_counter() - clock
        path, size = self._save(job_id, attempt, picture)
        info = {"path": str(path), "content_type": "image/png", "bytes": size, "details": details}
        timings = {name: round(seconds, 4) for name, seconds in timings.items()}
        publish_result(store, job_id, worker, path, info, timings)

    def _generate(
        self, store: RetryingStore, job_id: str, worker: str, request, timings: dict, details: dict
    ) -> np.ndarray:
        """The SDXL background at the photo's aspect ratio (after the optional prompt enrichment)."""
        from pipelines.background.sdxl import BackgroundRequest

        prompt, analysis = request.prompt, None
        if request.enrich_prompt and self.image_analyzer is not None:
            clock = time.perf_counter()
            analysis = call_deployment(self.image_analyzer, "analyze", request.image, request.prompt)
            prompt = analysis["enriched_prompt"]
            timings["analysis"] = time.perf_counter() - clock

        synthesis = BackgroundRequest(
            prompt=prompt,
            width=request.image.width,
            height=request.image.height,
            negative_prompt=request.negative_prompt,
            steps=request.steps,
            guidance_scale=request.guidance_scale,
            seed=request.seed,
        )
        result = self.pipeline(
            synthesis,
            progress=lambda step, total: store.report_progress(job_id, step, total, worker=worker),
            should_cancel=lambda: store.should_stop(job_id, worker),  # fenced to this claim
        )
        timings.update(result.timings_s)
        details |= {
            "prompt_used": prompt,
            "background_size": {"width": result.image.width, "height": result.image.height},
            "analysis": {key: analysis[key] for key in ("subject", "warm", "bright")} if analysis else None,
        }
        return np.asarray(result.image)

    def _composite(self, request: BackgroundJobRequest, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        foreground = np.asarray(request.image)
        backdrop = fit_background(background, foreground.shape[1], foreground.shape[0])
        return composite_onto_background(
            foreground,
            backdrop,
            alpha,
            blend_space=self.config.blend_space,
            working_megapixels=self.config.working_megapixels,
        )

    def _save(self, job_id: str, attempt: int, picture: np.ndarray):
        from PIL import Image

        data = encode_png(Image.fromarray(picture))  # RGB, or RGBA for a cut-out
        return write_atomically(self.results.result_path(job_id, attempt, "png"), data), len(data)
