"""What the routes need, injected once when the app is built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from deployments.config import IngressConfig
from deployments.dispatch import VideoDispatcher
from deployments.job_store import JobStore


@dataclass
class ApiServices:
    store: JobStore
    video: VideoDispatcher
    settings: IngressConfig
    # (prompt, seed) -> expansion dict; None when no PromptExpander is deployed
    expand_prompt: Callable[[str, int], Awaitable[dict]] | None = None
    # (image, prompt) -> analysis dict; None when no ImageAnalyzer is deployed
    analyze_image: Callable[[object, str | None], Awaitable[dict]] | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.settings.max_upload_mb * 1_000_000)

    @property
    def max_pixels(self) -> int:
        return int(self.settings.max_image_megapixels * 1_000_000)
