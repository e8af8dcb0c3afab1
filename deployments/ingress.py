"""``Ingress``: the HTTP entry point. Validates, persists the job, dispatches it, answers at once."""

from __future__ import annotations

import logging

from ray import serve

from deployments.config import IngressConfig, JobStoreConfig
from deployments.dispatch import RayVideoDispatcher
from deployments.http.api import create_api
from deployments.http.services import ApiServices
from deployments.stores import open_job_store


@serve.ingress()
class Ingress:
    def __init__(
        self,
        settings: IngressConfig,
        store_config: JobStoreConfig,
        video_generator,
        prompt_expander=None,
        image_analyzer=None,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        store = open_job_store(store_config)
        expand = None
        if prompt_expander is not None:

            async def expand(prompt: str, seed: int) -> dict:
                return await prompt_expander.expand.remote(prompt, seed)

        analyze = None
        if image_analyzer is not None:

            async def analyze(image, prompt):
                return await image_analyzer.analyze.remote(image, prompt)

        self.services = ApiServices(
            store=store,
            video=RayVideoDispatcher(video_generator, store),
            settings=settings,
            expand_prompt=expand,
            analyze_image=analyze,
        )

    def __serve_build_asgi_app__(self):
        return create_api(self.services)
