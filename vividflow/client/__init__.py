"""The Python client of the VividFlow Serve HTTP API (v1).

``Client`` is synchronous, ``AsyncClient`` its asyncio twin; both speak only the public HTTP API (an
import-linter contract keeps this package away from the server's code). See docs/client.md.

    from vividflow.client import Client

    with Client("http://127.0.0.1:8000") as client:
        job = client.submit_video("photo.jpg", duration_s=3, prompt="slow push-in")
        job = client.wait(job, on_progress=lambda j: print(f"{j.progress:.0%}"))
        client.download(job, "out.mp4")
"""

from vividflow.client.aio import AsyncClient
from vividflow.client.calls import API_KEY_ENV, DEFAULT_URL, URL_ENV
from vividflow.client.errors import (
    ApiError,
    ConnectionFailedError,
    EventStreamError,
    VividflowError,
    WaitTimeoutError,
)
from vividflow.client.models import (
    Analysis,
    Batch,
    EditPlan,
    Expansion,
    Job,
    JobError,
    JobEvent,
    JobPage,
    JobResult,
    LoraInfo,
    LoraList,
    MaskPreview,
    MotionTemplates,
    SceneTemplates,
    VideoPlan,
)
from vividflow.client.options import (
    BackgroundOptions,
    BatchOptions,
    CompositionOptions,
    EditOptions,
    ImageSource,
    LayoutOptions,
    StoryboardEntry,
    VideoOptions,
    VideoSource,
)
from vividflow.client.retry import RetryNotice, RetryPolicy
from vividflow.client.sync import Client

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_URL",
    "URL_ENV",
    "Analysis",
    "ApiError",
    "AsyncClient",
    "BackgroundOptions",
    "Batch",
    "BatchOptions",
    "Client",
    "CompositionOptions",
    "ConnectionFailedError",
    "EditOptions",
    "EditPlan",
    "EventStreamError",
    "Expansion",
    "ImageSource",
    "Job",
    "JobError",
    "JobEvent",
    "JobPage",
    "JobResult",
    "LayoutOptions",
    "LoraInfo",
    "LoraList",
    "MaskPreview",
    "MotionTemplates",
    "RetryNotice",
    "RetryPolicy",
    "SceneTemplates",
    "StoryboardEntry",
    "VideoOptions",
    "VideoPlan",
    "VideoSource",
    "VividflowError",
    "WaitTimeoutError",
]
