"""What the API answers with, as typed objects.

The job is a dataclass because callers branch on it (``is_final``, ``stage``); every other answer is a
``TypedDict`` over the JSON itself, so a script can dump it unchanged and a type checker still knows the
keys. The API documents its objects as open (new keys may appear), so parsing keeps unknown keys in
``Job.raw`` instead of failing: ``owner``, ``batch_id`` or ``segment`` from a newer server survive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
FINAL_EVENTS = FINAL_STATUSES  # the SSE stream names its last event after the final status
EXTENSIONS = {"video/mp4": ".mp4", "image/png": ".png"}
# What a running job is doing once its denoising steps are done, by kind (the API has no stage field yet).
_AFTER_STEPS = {"video": "decoding", "edit": "decoding", "background": "compositing"}


@dataclass(frozen=True)
class JobError:
    type: str
    message: str


@dataclass(frozen=True)
class JobResult:
    url: str
    content_type: str
    bytes: int | None = None
    details: dict[str, Any] | None = None

    @property
    def extension(self) -> str:
        """The file extension the result should be saved with (``.mp4``, ``.png``)."""
        return EXTENSIONS.get(self.content_type, ".bin")


@dataclass(frozen=True)
class Job:
    """One job as ``GET /v1/jobs/{id}`` describes it; ``raw`` is the JSON object itself, unknown keys included."""

    id: str
    kind: str  # "video", "background" or "edit"; a plain str, so a newer server's kind still parses
    status: JobStatus
    progress: float
    step: int
    total_steps: int
    params: dict[str, Any]
    error: JobError | None
    result: JobResult | None
    cancel_requested: bool
    attempts: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    timings_s: dict[str, float]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        error, result = body.get("error"), body.get("result")
        return cls(
            id=str(body["id"]),
            kind=str(body["kind"]),
            status=body["status"],
            progress=float(body.get("progress") or 0.0),
            step=int(body.get("step") or 0),
            total_steps=int(body.get("total_steps") or 0),
            params=dict(body.get("params") or {}),
            error=JobError(str(error.get("type", "error")), str(error.get("message", ""))) if error else None,
            result=JobResult(
                url=result["url"],
                content_type=result["content_type"],
                bytes=result.get("bytes"),
                details=result.get("details"),
            )
            if result
            else None,
            cancel_requested=bool(body.get("cancel_requested", False)),
            attempts=int(body.get("attempts") or 0),
            created_at=body.get("created_at"),
            started_at=body.get("started_at"),
            finished_at=body.get("finished_at"),
            timings_s=dict(body.get("timings_s") or {}),
            raw=body,
        )

    @property
    def is_final(self) -> bool:
        """Succeeded, failed or cancelled: nothing about the job will change any more."""
        return self.status in FINAL_STATUSES

    @property
    def stage(self) -> str:
        """A short word for what the job is doing, for progress displays.

        The API reports steps, not stages, so this is inferred from the status and the step; a ``stage`` key
        from a newer server wins.
        """
        explicit = self.raw.get("stage")
        if isinstance(explicit, str) and explicit:
            return explicit
        if self.status != "running":
            return self.status
        if self.cancel_requested:
            return "cancelling"
        if self.total_steps and self.step >= self.total_steps:
            return _AFTER_STEPS.get(self.kind, "finishing")
        return "denoising" if self.step else "starting"


@dataclass(frozen=True)
class JobEvent:
    """One Server-Sent Event of ``GET /v1/jobs/{id}/events``: ``progress``, or the final status."""

    name: str
    job: Job

    @property
    def is_final(self) -> bool:
        return self.name in FINAL_EVENTS


@dataclass(frozen=True)
class MaskPreview:
    """The matte a background job would blend (greyscale PNG, white = kept) and how it was made."""

    png: bytes
    stage: str | None  # the segmentation stage: birefnet, u2net, classic, ellipse
    status: str | None  # ok, empty or full
    coverage: float | None  # share of pixels kept, 0-1


class Size(TypedDict):
    width: int
    height: int


class Crop(TypedDict):
    left: int
    top: int
    right: int
    bottom: int


class PlannedSegment(TypedDict):
    index: int
    frames: int
    kept_frames: int
    prompt: str | None  # a storyboard stretch's prompt; None otherwise
    colour_matched: bool


class PlannedPicture(TypedDict):
    input: Size
    crop: Crop
    output: Size


class VideoPlan(TypedDict, total=False):
    # always present: input, crop, output, frames, fps, duration_s, segments
    input: Size
    crop: Crop
    output: Size
    frames: int
    fps: int
    duration_s: float
    segments: list[PlannedSegment]  # the renders a long or storyboard video is chained from
    last_image: PlannedPicture | None  # with last_image
    views: list[PlannedPicture] | None  # with images
    transition_s: float | None  # with images


class EditSource(TypedDict):
    width: int
    height: int
    duration_s: float
    fps: float
    frames: int
    container: str
    codec: str
    rotation: int
    has_audio: bool


class EditPlan(TypedDict):
    input: EditSource
    crop: Crop
    output: Size
    frames: int
    fps: int
    duration_s: float


class LoraStrengths(TypedDict):
    high_noise: float
    low_noise: float


class LoraInfo(TypedDict):
    id: str
    name: str
    description: str
    license: str
    trigger_words: list[str]
    experts: list[str]
    default_strength: LoraStrengths
    status: Literal["ready", "unavailable"]
    reason: str | None


class LoraList(TypedDict):
    loras: list[LoraInfo]
    error: str | None  # set when the library's manifest itself cannot be read


class Analysis(TypedDict):
    subject: str
    scores: dict[str, float]
    warm: bool
    bright: bool
    lighting: str
    atmosphere: str
    enriched_prompt: str


class Expansion(TypedDict):
    prompt: str
    original: str
    expanded: bool
    reason: str | None
    seconds: float


class MotionTemplate(TypedDict):
    id: str
    prompt: str


class MotionCategory(TypedDict):
    id: str
    name: str
    when_to_use: str
    prompts: list[MotionTemplate]


class MotionTemplates(TypedDict):
    categories: list[MotionCategory]


class SceneTemplate(TypedDict):
    id: str
    name: str
    category: str
    prompt: str
    negative_prompt: str
    guidance_scale: float


class SceneTemplates(TypedDict):
    categories: list[str]
    templates: list[SceneTemplate]


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /v1/jobs``: newest first; ``next_cursor`` fetches the next page (None: the last)."""

    jobs: list[Job]
    next_cursor: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> JobPage:
        return cls(jobs=[Job.from_json(job) for job in body["jobs"]], next_cursor=body.get("next_cursor"))


@dataclass(frozen=True)
class Batch:
    """``GET /v1/batches/{id}``: N video jobs made together, in the order of the variations.

    ``status`` is ``queued`` until a job starts, ``running`` until every job has ended, then ``succeeded``
    (all did), ``failed`` (one or more failed) or ``cancelled`` (one or more cancelled, none failed).
    """

    id: str
    status: JobStatus
    progress: float  # the mean of the jobs' progress; an ended job counts 1
    counts: dict[str, int]
    owner: str | None
    created_at: str | None
    jobs: list[Job]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Batch:
        return cls(
            id=str(body["id"]),
            status=body["status"],
            progress=float(body.get("progress") or 0.0),
            counts={str(k): int(v) for k, v in (body.get("counts") or {}).items()},
            owner=body.get("owner"),
            created_at=body.get("created_at"),
            jobs=[Job.from_json(job) for job in body["jobs"]],
            raw=body,
        )

    @property
    def is_final(self) -> bool:
        """Every job has ended; nothing about the batch will change any more."""
        return self.status in FINAL_STATUSES
