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
        description="Background jobs: which segmentation stage made the mask, and why earlier ones failed. Edit "
        "jobs: the mode, the control (`style`) or the masks used per frame range (`replace`), and the audio.",
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
    kind: Literal["video", "background", "edit"]
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
    segment: int | None = Field(
        default=None,
        description="Videos rendered as chained segments (longer than 5 s, storyboards, multi-view): the segment "
        "rendering now, from 1; `step`/`total_steps` count every segment's steps. Null for one-render jobs.",
    )
    total_segments: int | None = Field(default=None, description="How many segments the video has; null: one.")
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


class PlannedSegment(BaseModel):
    index: int
    frames: int = Field(description="Frames rendered, the seam frame included (4k+1, at most 81).")
    kept_frames: int = Field(description="Frames it adds to the video: the first frame of a later segment is the seam.")
    prompt: str | None = Field(description="Its storyboard prompt; null without a storyboard.")
    colour_matched: bool = Field(description="Matched to the source image (segments of a chain not pinned at the end).")


class PlannedPicture(BaseModel):
    input: Size
    crop: Crop = Field(description="The centred box kept: the output's aspect ratio.")
    output: Size


class VideoPlan(BaseModel):
    input: Size
    crop: Crop = Field(description="The box of the input that is kept (centre crop for extreme aspect ratios).")
    output: Size
    frames: int = Field(description="Frames of the whole video.")
    fps: int
    duration_s: float
    segments: list[PlannedSegment] = Field(description="The renders the video is made of, in order.")
    last_image: PlannedPicture | None = Field(default=None, description="With `last_image`: how it is fitted.")
    views: list[PlannedPicture] | None = Field(default=None, description="With `images`: how each view is fitted.")
    transition_s: float | None = Field(default=None, description="With `images`: seconds per transition.")


class BatchCounts(BaseModel):
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class Batch(BaseModel):
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] = Field(
        description="`queued` while no job has started, `running` until every job has ended; then `succeeded` "
        "(all succeeded), `failed` (at least one failed) or `cancelled` (at least one cancelled, none failed)."
    )
    progress: float = Field(ge=0, le=1, description="The mean of its jobs' progress (an ended job counts 1).")
    counts: BatchCounts
    owner: str
    created_at: str
    jobs: list[Job] = Field(description="In the order of the variations.")


class EditSource(BaseModel):
    width: int = Field(description="As displayed: rotation metadata applied.")
    height: int
    duration_s: float
    fps: float = Field(description="Decoded frames per second (variable frame rates are resampled to 16).")
    frames: int
    container: str
    codec: str
    rotation: int = Field(description="Degrees (counter-clockwise) the frames were turned to display upright.")
    has_audio: bool


class EditPlan(BaseModel):
    input: EditSource
    crop: Crop = Field(description="The box of each frame that is kept (centre crop for extreme aspect ratios).")
    output: Size
    frames: int = Field(description="At 16 fps, trimmed to 4k+1.")
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
