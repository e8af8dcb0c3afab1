"""Response bodies as the OpenAPI document describes them.

The routes build their answers as dicts (the job object comes from ``Job.public()``); these models only
document them. tests/test_openapi_contract.py checks real answers against the served document, so a
field added to an answer and not here fails a test.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.background.scene_templates import SceneTemplate
from pipelines.video.motion_templates import MotionCategory


class _Open(BaseModel):
    # Clients must tolerate new keys; the document says so instead of forbidding them.
    model_config = ConfigDict(extra="allow")


class JobError(_Open):
    type: str = Field(description="Stable machine-readable kind, e.g. `worker_lost`, `mask_unusable`, `cancelled`.")
    message: str = Field(description="What happened, written for the caller; never a traceback.")


class JobResult(_Open):
    url: str = Field(description="Where to download the result: `/v1/jobs/{id}/result`.")
    content_type: Literal["video/mp4", "image/png"]
    bytes: int | None = Field(description="Size of the file.")
    details: dict[str, Any] | None = Field(
        default=None,
        description="Background jobs: which segmentation stage made the mask, and why earlier ones failed.",
    )


class WebhookDelivery(_Open):
    url: str
    status: Literal["pending", "delivered", "failed"] = Field(
        description="`pending` until the final state was delivered (a 2xx answer) or given up on."
    )
    attempts: int = Field(ge=0)
    last_attempt_at: str | None
    last_status_code: int | None = Field(description="The receiver's HTTP status on the last attempt.")
    last_error: str | None
    delivered_at: str | None
    id: str | None = Field(description="The `webhook-id` every attempt carries (the same for all of them).")


class Job(_Open):
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    kind: Literal["video", "background"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    created_at: str = Field(description="ISO 8601, UTC.")
    started_at: str | None
    finished_at: str | None
    params: dict[str, Any] = Field(description="The resolved parameters, including the seed and output size.")
    error: JobError | None
    result: JobResult | None
    cancel_requested: bool
    attempts: int = Field(ge=0, description="How many times a worker claimed it (re-queued after lost workers).")
    timings_s: dict[str, float] = Field(description="Seconds per stage, once the job has run.")
    owner: str = Field(description="The tenant that submitted it (never a key).")
    batch_id: str | None = Field(description="The batch it belongs to, if any.")
    expires_at: str | None = Field(
        description="ISO 8601, UTC: when the record, input and result are deleted (jobs.retention_s after it "
        "ended); null while it has not ended."
    )
    webhook: WebhookDelivery | None = Field(description="Delivery of the final state to `webhook_url`, if given.")


class JobList(BaseModel):
    jobs: list[Job] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Size(BaseModel):
    width: int
    height: int


class Crop(BaseModel):
    left: int
    top: int
    right: int
    bottom: int


class VideoPlan(BaseModel):
    input: Size
    crop: Crop = Field(description="The box of the input that is kept (centre crop for extreme aspect ratios).")
    output: Size
    frames: int
    fps: int
    duration_s: float


class Analysis(BaseModel):
    subject: str
    scores: dict[str, float]
    warm: bool
    bright: bool
    lighting: str
    atmosphere: str
    enriched_prompt: str


class Expansion(BaseModel):
    prompt: str = Field(description="What to render with: the expansion, or the original when not expanded.")
    original: str
    expanded: bool
    reason: str | None = Field(description="Why the original was kept (`disabled`, `timeout`, `unavailable`, ...).")
    seconds: float


class MotionTemplates(BaseModel):
    categories: list[MotionCategory]


class SceneTemplates(BaseModel):
    categories: list[str]
    templates: list[SceneTemplate]


class Health(BaseModel):
    status: Literal["ok"]
