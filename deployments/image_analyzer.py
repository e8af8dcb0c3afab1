"""``ImageAnalyzer`` deployment: the Ray Serve shim around one CLIP image analyzer.

A plain class (Ray is applied in ``deployments.builder``) so tests can drive it directly. The model
and its class text embeddings load once, when the replica starts; every request then only encodes
its image. torch is imported by the pipeline, only when no analyzer is injected.
"""

from __future__ import annotations

import asyncio
import logging
import time

from PIL import Image

from pipelines.background.clip_analysis import AnalyzerConfig

log = logging.getLogger(__name__)


class ImageAnalyzerDeployment:
    def __init__(self, config: AnalyzerConfig, *, analyzer=None, gpu_memory_fraction: float | None = None) -> None:
        self.config = config
        if analyzer is None:
            from pipelines.background.clip_analysis import ImageAnalyzer
            from pipelines.common.devices import cap_process_gpu_memory
            from pipelines.tiny.provision import provision_tiny_models

            cap_process_gpu_memory(gpu_memory_fraction)  # DeploymentOptions.cuda_memory_fraction, from the builder
            started = time.perf_counter()
            provision_tiny_models(config)
            analyzer = ImageAnalyzer.from_config(config)
            log.info("image analyzer ready in %.1f s", time.perf_counter() - started)
        self.analyzer = analyzer

    async def analyze(self, image: Image.Image, prompt: str | None = None) -> dict:
        """The analysis as the HTTP body; the forward pass runs off the event loop so health checks keep answering."""
        result = await asyncio.to_thread(self.analyzer.analyze, image, prompt)
        return result.to_dict()

    def check_health(self) -> None:
        # The model is loaded in the constructor and holds no connections: a live replica is a healthy one.
        return None
