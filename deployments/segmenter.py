"""``Segmenter`` deployment: the Ray Serve shim around one segmentation chain.

A plain class (Ray is applied in ``deployments.builder``) so tests can drive it directly. The ONNX
sessions load once, in the constructor; onnxruntime is imported by the pipeline, only when no
segmenter is injected and a model stage is configured. Both methods run the chain off the event
loop so health checks keep answering while a 1024² BiRefNet pass runs.
"""

from __future__ import annotations

import asyncio
import logging
import time

from PIL import Image

from deployments import metrics
from pipelines.background.segmentation.chain import SegmentationConfig

log = logging.getLogger(__name__)


class SegmenterDeployment:
    def __init__(self, config: SegmentationConfig, *, segmenter=None, gpu_memory_fraction: float | None = None) -> None:
        self.config = config
        if segmenter is None:
            from pipelines.background.segmentation.chain import Segmenter
            from pipelines.common.devices import cap_process_gpu_memory
            from pipelines.tiny.provision import provision_tiny_models

            cap_process_gpu_memory(gpu_memory_fraction)  # DeploymentOptions.cuda_memory_fraction, from the builder
            started = time.perf_counter()
            provision_tiny_models(config)
            segmenter = Segmenter.from_config(config)
            log.info("segmenter ready in %.1f s", time.perf_counter() - started)
        self.segmenter = segmenter

    async def segment(self, image: Image.Image) -> dict:
        """The subject matte, the stage that produced it and every stage's verdict."""
        result = await asyncio.to_thread(self.segmenter.segment, image)
        return {"alpha": result.alpha, "stage": result.stage, "attempts": result.attempts, "cartoon": result.cartoon}

    async def mask(self, image: Image.Image, composition: str, focus: str, feather_px: int):
        """The matte after the composition controls (``SubjectMask``): the mask preview and background jobs use it."""
        from pipelines.background.subject_mask import subject_mask

        mask = await asyncio.to_thread(subject_mask, self.segmenter, image, composition, focus, feather_px)
        metrics.segmentation_stage(mask.stage)
        return mask

    def check_health(self) -> None:
        # Sessions are loaded in the constructor and hold no connections: a live replica is a healthy one.
        return None
