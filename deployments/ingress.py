"""``Ingress``: the HTTP entry point. Validates, persists the job in the shared queue, answers at once.

It holds handles to the model deployments so the application graph deploys them; video and
background jobs reach those replicas through the job store's queue, not through these handles.
"""

from __future__ import annotations

import logging

from ray import serve

from deployments.config import EditLimits, IngressConfig, JobQueueConfig, JobStoreConfig
from deployments.http.api import create_api
from deployments.http.lora_routes import lora_catalog_for
from deployments.http.services import ApiServices
from deployments.jobs.connect import open_job_store, open_results
from pipelines.video.config import VideoModelConfig


@serve.ingress()
class Ingress:
    def __init__(
        self,
        settings: IngressConfig,
        store_config: JobStoreConfig,
        queue_config: JobQueueConfig,
        workers: dict,
        prompt_expander=None,
        image_analyzer=None,
        segmenter=None,
        video_model: VideoModelConfig | None = None,
        edits: EditLimits | None = None,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.workers = workers  # {"video": handle, "background": handle}
        expand = analyze = mask = None
        if prompt_expander is not None:

            async def expand(prompt: str, seed: int) -> dict:
                return await prompt_expander.expand.remote(prompt, seed)

        if image_analyzer is not None:

            async def analyze(image, prompt):
                return await image_analyzer.analyze.remote(image, prompt)

        if segmenter is not None:

            async def mask(image, composition, focus, feather_px):
                return await segmenter.mask.remote(image, composition, focus, feather_px)

        self.services = ApiServices(
            store=open_job_store(store_config, queue_config),
            results=open_results(store_config),
            settings=settings,
            queue=queue_config,
            job_kinds=frozenset(workers),
            expand_prompt=expand,
            analyze_image=analyze,
            mask_subject=mask,
            loras=lora_catalog_for(video_model),  # the same library the video replicas read
            edits=edits or EditLimits(),
        )

    def __serve_build_asgi_app__(self):
        return create_api(self.services)
