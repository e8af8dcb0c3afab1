"""What the routes need, injected once when the app is built."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from deployments.config import EditLimits, IngressConfig, JobQueueConfig
from deployments.jobs.results import ResultFiles
from deployments.jobs.store import JobStore
from pipelines.video.lora_library import LoraCatalog


@dataclass
class ApiServices:
    store: JobStore
    results: ResultFiles
    settings: IngressConfig
    queue: JobQueueConfig = field(default_factory=JobQueueConfig)
    # job kinds some model deployment works on; others are refused with 503
    job_kinds: frozenset[str] = frozenset({"video"})
    # (prompt, seed) -> expansion dict; None when no PromptExpander is deployed
    expand_prompt: Callable[[str, int], Awaitable[dict]] | None = None
    # (image, prompt) -> analysis dict; None when no ImageAnalyzer is deployed
    analyze_image: Callable[[object, str | None], Awaitable[dict]] | None = None
    # (image, composition, focus, feather_px) -> SubjectMask; None when no Segmenter is deployed
    mask_subject: Callable[[object, str, str, int], Awaitable[object]] | None = None
    # the motion LoRA library the video replicas serve (pipelines.video.lora_library.LoraCatalog); None: none
    loras: LoraCatalog | None = None
    # what an uploaded video may be (`edits:` in the app config): POST /v1/edits and /v1/edits/plan
    edits: EditLimits = field(default_factory=EditLimits)
    # reap jobs whose worker stopped heartbeating, from this ingress too (workers may all be gone)
    reap_jobs: bool = True
    # how webhook hosts are resolved (getaddrinfo's signature); tests pass one that never leaves the machine
    resolve_host: Callable = socket.getaddrinfo

    @property
    def max_upload_bytes(self) -> int:
        return int(self.settings.max_upload_mb * 1_000_000)

    @property
    def max_pixels(self) -> int:
        return int(self.settings.max_image_megapixels * 1_000_000)
