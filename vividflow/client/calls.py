"""The requests of the API as plain data, and the reading of its answers: no I/O here.

Both clients build the same ``Call`` objects and read answers with the same functions; only the sending
(``httpx.Client`` or ``httpx.AsyncClient``, ``time.sleep`` or ``asyncio.sleep``) differs between them.
That keeps the two clients' behaviour identical by construction instead of by care.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlencode

import httpx

from vividflow.client.errors import ApiError, EventStreamError
from vividflow.client.models import EXTENSIONS, Batch, Job, JobPage, MaskPreview
from vividflow.client.options import (
    BackgroundOptions,
    BatchOptions,
    CompositionOptions,
    EditMode,
    EditOptions,
    FormValue,
    ImageSource,
    LayoutOptions,
    Parts,
    VideoOptions,
    VideoSource,
    form_fields,
    image_part,
    multipart,
)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "VIVIDFLOW_URL"
API_KEY_ENV = "VIVIDFLOW_API_KEY"
# Uploads and synchronous model calls (mask preview, analysis) can take a while on a busy CPU profile.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# The event stream sends a keep-alive comment every 15 s; a read timeout well above that means "dead".
EVENTS_READ_TIMEOUT_S = 45.0
DEFAULT_POLL_INTERVAL_S = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One API request, ready to be sent (and sent again, unchanged, by the retry loop)."""

    method: str
    path: str
    data: dict[str, str] | None = None
    files: Parts | None = None  # in order; a field may repeat
    json: Any = None
    creates_job: bool = False
    idempotency_key: str | None = None
    stream: bool = False
    read_timeout_s: float | None = None  # overrides the client's for this call only

    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}


def resolve_base_url(url: str | None) -> str:
    """The argument, else ``VIVIDFLOW_URL``, else the local default; without a trailing slash."""
    return (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get(API_KEY_ENV) or None


def default_headers(api_key: str | None, user_agent: str) -> dict[str, str]:
    # The server has no authentication yet (DESIGN.md §7 plans Bearer keys); sending the key is harmless.
    headers = {"User-Agent": user_agent, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def job_id_of(job: Job | str) -> str:
    return job.id if isinstance(job, Job) else str(job)


def job_path(job: Job | str, suffix: str = "") -> str:
    # Quoted: an id is the caller's text, and must not be able to walk to another route ("../videos").
    return f"/v1/jobs/{quote(job_id_of(job), safe='')}{suffix}"


def _submission(
    path: str,
    fields: dict[str, str],
    files: Parts,
    idempotency_key: str | None,
) -> Call:
    # One key per submission, kept by the Call: every retry of this submission sends the same key.
    return Call(
        "POST",
        path,
        data=fields,
        files=files,
        creates_job=True,
        idempotency_key=idempotency_key or str(uuid.uuid4()),
    )


def _video_form(
    image: ImageSource | None,
    options: VideoOptions | BatchOptions | LayoutOptions,
    allowed: type,
    extra_fields: Mapping[str, FormValue] | None = None,
) -> tuple[dict[str, str], Parts]:
    """The fields and parts of a video-shaped form: ``image`` (unless ``images`` is sent), then the others."""
    if image is None and not options.get("images"):
        raise TypeError("give the photo (`image`), or `images` (2-8 views) for a multi-view video")
    fields, parts = multipart(options, allowed, extra_fields)
    return fields, ([("image", image_part(image))] if image is not None else []) + parts


def video_call(
    image: ImageSource | None,
    options: VideoOptions,
    extra_fields: Mapping[str, FormValue] | None = None,
    idempotency_key: str | None = None,
) -> Call:
    fields, parts = _video_form(image, options, VideoOptions, extra_fields)
    return _submission("/v1/videos", fields, parts, idempotency_key)


def batch_call(
    image: ImageSource | None,
    options: BatchOptions,
    extra_fields: Mapping[str, FormValue] | None = None,
    idempotency_key: str | None = None,
) -> Call:
    fields, parts = _video_form(image, options, BatchOptions, extra_fields)
    return _submission("/v1/batches", fields, parts, idempotency_key)


def background_call(
    image: ImageSource,
    options: BackgroundOptions,
    extra_fields: Mapping[str, FormValue] | None = None,
    idempotency_key: str | None = None,
) -> Call:
    fields, parts = multipart(options, BackgroundOptions, extra_fields)  # background_image: a second file part
    return _submission("/v1/backgrounds", fields, [("image", image_part(image)), *parts], idempotency_key)


def edit_call(
    video: VideoSource,
    prompt: str,
    mode: EditMode,
    options: EditOptions,
    extra_fields: Mapping[str, FormValue] | None = None,
    idempotency_key: str | None = None,
) -> Call:
    fields, parts = multipart(options, EditOptions, extra_fields)  # reference_image: a second file part
    fields = {"prompt": prompt, "mode": mode, **fields}
    return _submission("/v1/edits", fields, [("video", image_part(video)), *parts], idempotency_key)


def edit_plan_call(video: VideoSource) -> Call:
    return Call("POST", "/v1/edits/plan", files=[("video", image_part(video))])


def plan_call(image: ImageSource | None, duration_s: float | None, layout: LayoutOptions | None = None) -> Call:
    options = {**(layout or {}), "duration_s": duration_s}
    fields, parts = _video_form(image, options, VideoOptions)  # type: ignore[arg-type]
    return Call("POST", "/v1/videos/plan", data=fields, files=parts)


def mask_call(image: ImageSource, options: CompositionOptions) -> Call:
    fields = form_fields(options, CompositionOptions)
    return Call("POST", "/v1/backgrounds/mask", data=fields, files=[("image", image_part(image))])


def analyze_call(image: ImageSource, prompt: str | None) -> Call:
    fields = {"prompt": prompt} if prompt else {}
    return Call("POST", "/v1/analyze", data=fields, files=[("image", image_part(image))])


def expand_call(prompt: str, seed: int) -> Call:
    return Call("POST", "/v1/prompts/expand", json={"prompt": prompt, "seed": seed})


def batch_id_of(batch: Batch | str) -> str:
    return batch.id if isinstance(batch, Batch) else str(batch)


def batch_path(batch: Batch | str, suffix: str = "") -> str:
    return f"/v1/batches/{quote(batch_id_of(batch), safe='')}{suffix}"


def parse_batch(response: httpx.Response) -> Batch:
    body = parse_json(response, dict)
    try:
        return Batch.from_json(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(
            response.status_code, "invalid_response", f"the answer is not a batch: {str(body)[:120]}"
        ) from exc


def batch_progress_key(batch: Batch) -> tuple[object, ...]:
    return (batch.status, batch.progress, *(progress_key(job) for job in batch.jobs))


def events_call(job: Job | str, read_timeout_s: float = EVENTS_READ_TIMEOUT_S) -> Call:
    return Call("GET", job_path(job, "/events"), stream=True, read_timeout_s=read_timeout_s)


def request_timeout(call: Call, client_timeout: httpx.Timeout) -> httpx.Timeout | None:
    """The timeout to send ``call`` with; None keeps the HTTP client's own (an injected client's choice)."""
    if call.read_timeout_s is None:
        return None
    return httpx.Timeout(
        client_timeout.connect, read=call.read_timeout_s, write=client_timeout.write, pool=client_timeout.pool
    )


def describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def parse_json(response: httpx.Response, shape: type[T]) -> T:
    """The JSON body, typed as ``shape`` (a ``TypedDict``: the API's document is the contract, not re-checked)."""
    try:
        return cast(T, response.json())
    except ValueError as exc:
        message = f"the answer is not JSON: {response.text[:120]!r}"
        raise ApiError(response.status_code, "invalid_response", message) from exc


def parse_job(response: httpx.Response) -> Job:
    body = parse_json(response, dict)
    try:
        return Job.from_json(body)
    except (KeyError, TypeError, ValueError) as exc:
        message = f"the answer is not a job: {str(body)[:120]}"
        raise ApiError(response.status_code, "invalid_response", message) from exc


def list_call(status: str | None, kind: str | None, limit: int | None, cursor: str | None) -> Call:
    query = {
        name: value
        for name, value in (("status", status), ("kind", kind), ("limit", limit), ("cursor", cursor))
        if value is not None
    }
    return Call("GET", "/v1/jobs" + (f"?{urlencode(query)}" if query else ""))


def parse_page(response: httpx.Response) -> JobPage:
    body = parse_json(response, dict)
    try:
        return JobPage.from_json(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(
            response.status_code, "invalid_response", f"the answer is not a job list: {str(body)[:120]}"
        ) from exc


def parse_mask(response: httpx.Response) -> MaskPreview:
    coverage = response.headers.get("X-Mask-Coverage")
    return MaskPreview(
        png=response.content,
        stage=response.headers.get("X-Mask-Stage"),
        status=response.headers.get("X-Mask-Status"),
        coverage=float(coverage) if coverage else None,
    )


def check_event_stream(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise EventStreamError(f"expected an event stream, got {content_type or 'no content type'}")


def result_target(path: str | os.PathLike[str], job_id: str, content_type: str | None) -> Path:
    """Where to save a result: ``path`` itself, or ``<job id>.<ext>`` inside it when it is a folder."""
    target = Path(path)
    if target.is_dir():
        extension = EXTENSIONS.get((content_type or "").split(";")[0].strip(), ".bin")
        target = target / f"{job_id}{extension}"
    return target


def partial_path(target: Path) -> Path:
    """The file a download is written to before it is renamed into place: a failed download leaves no file."""
    return target.with_name(f".{target.name}.part")


def progress_key(job: Job) -> tuple[object, ...]:
    """What a progress display cares about; two snapshots with the same key need not both be reported."""
    return (job.status, job.step, job.total_steps, job.progress, job.cancel_requested)
