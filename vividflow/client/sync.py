"""``Client``: the synchronous client of the VividFlow Serve HTTP API (v1), on ``httpx``."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack

import httpx

from vividflow.client import calls
from vividflow.client.calls import Call
from vividflow.client.errors import ApiError, ConnectionFailedError, EventStreamError, WaitTimeoutError
from vividflow.client.models import (
    Analysis,
    Batch,
    EditPlan,
    Expansion,
    Job,
    JobEvent,
    JobPage,
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
    EditMode,
    EditOptions,
    FormValue,
    ImageSource,
    LayoutOptions,
    VideoOptions,
    VideoSource,
)
from vividflow.client.retry import RetryNotice, RetryPolicy, parse_retry_after
from vividflow.client.sse import EventParser, job_event
from vividflow.version import USER_AGENT

log = logging.getLogger("vividflow")

ProgressCallback = Callable[[Job], object]


class _DeadlinePassed(Exception):
    """Raised inside ``wait`` when its timeout ends while the event stream is open."""


class Client:
    """Talks to one VividFlow Serve deployment.

    ``base_url`` defaults to ``VIVIDFLOW_URL`` (else ``http://127.0.0.1:8000``), ``api_key`` to
    ``VIVIDFLOW_API_KEY``. Pass ``transport`` (any ``httpx.BaseTransport``: a mock, an in-process app) or
    a ready ``http_client`` to control how requests travel; an injected ``http_client`` is not closed by
    ``close()``, and its own timeout applies. ``on_retry`` is told about every retry before its wait.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = calls.DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        on_retry: Callable[[RetryNotice], object] | None = None,
    ) -> None:
        self.base_url = calls.resolve_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._headers = calls.default_headers(calls.resolve_api_key(api_key), USER_AGENT)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=self._timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- any endpoint ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send any request (``data=``, ``files=``, ``json=``) with the retries and error mapping.

        For endpoints this client has no method for yet; an error status raises ``ApiError``.
        """
        if kwargs.keys() - {"data", "files", "json"}:
            raise TypeError(f"request() takes data=, files= and json= only, not {sorted(kwargs)}")
        return self._send(Call(method.upper(), path, **kwargs))

    def health(self) -> bool:
        """True when the service answers ``GET /healthz`` with 200 (no retries: this is a probe)."""
        try:
            return self._http.get(f"{self.base_url}/healthz", headers=self._headers).status_code == 200
        except httpx.TransportError:
            return False

    # -- submitting -----------------------------------------------------------------------------------

    def submit_video(
        self,
        image: ImageSource | None = None,
        *,
        idempotency_key: str | None = None,
        extra_fields: Mapping[str, FormValue] | None = None,
        **options: Unpack[VideoOptions],
    ) -> Job:
        """``POST /v1/videos``: queue an image-to-video job; returns the queued job (its ``params`` hold the seed).

        ``image`` is the photo; for a multi-view video leave it out and pass ``images`` (2-8 pictures) instead.
        ``last_image`` makes the video end on that picture; ``storyboard`` is a list of
        ``{"prompt", "duration_s"}`` (sent as JSON). The pictures are sent as file parts.
        """
        return calls.parse_job(self._send(calls.video_call(image, options, extra_fields, idempotency_key)))

    def submit_background(
        self,
        image: ImageSource,
        *,
        idempotency_key: str | None = None,
        extra_fields: Mapping[str, FormValue] | None = None,
        **options: Unpack[BackgroundOptions],
    ) -> Job:
        """``POST /v1/backgrounds``: queue a background replacement: ``scene_id`` and/or ``prompt`` (SDXL), your own
        ``background_image`` (a path, bytes or file, placed by ``fit``/``position``) or ``background_color``, or
        ``output="cutout"`` for the subject alone as an RGBA PNG."""
        return calls.parse_job(self._send(calls.background_call(image, options, extra_fields, idempotency_key)))

    def submit_batch(
        self,
        image: ImageSource | None = None,
        *,
        idempotency_key: str | None = None,
        extra_fields: Mapping[str, FormValue] | None = None,
        **options: Unpack[BatchOptions],
    ) -> Batch:
        """``POST /v1/batches``: ``variations`` (1-8) videos of one request, each an ordinary video job.

        They differ by seed (``seeds``, else ``seed``, ``seed`` + 1, ..., else drawn) and optionally by prompt
        (``prompts``); the other options are those of ``submit_video``. The batch is created whole or not at all.
        """
        return calls.parse_batch(self._send(calls.batch_call(image, options, extra_fields, idempotency_key)))

    def submit_edit(
        self,
        video: VideoSource,
        *,
        prompt: str,
        mode: EditMode,
        idempotency_key: str | None = None,
        extra_fields: Mapping[str, FormValue] | None = None,
        **options: Unpack[EditOptions],
    ) -> Job:
        """``POST /v1/edits``: queue an edit of ``video`` (a path, bytes or file): ``mode="style"`` restyles every
        pixel under the source's structure, ``"replace"`` regenerates the subject (``reference_image``: its look).
        Returns the queued job of kind ``edit``; its result is an MP4."""
        call = calls.edit_call(video, prompt, mode, options, extra_fields, idempotency_key)
        return calls.parse_job(self._send(call))

    # -- synchronous answers --------------------------------------------------------------------------

    def plan_video(
        self, image: ImageSource | None = None, duration_s: float | None = None, **layout: Unpack[LayoutOptions]
    ) -> VideoPlan:
        """``POST /v1/videos/plan``: the output size, frames and segments a video would have (``layout``: the
        ``images``, ``last_image``, ``transition_s`` and ``storyboard`` of ``submit_video``)."""
        return calls.parse_json(self._send(calls.plan_call(image, duration_s, layout)), VideoPlan)

    def plan_edit(self, video: VideoSource) -> EditPlan:
        """``POST /v1/edits/plan``: the source video as decoded, and the edit's output size, frames and fps."""
        return calls.parse_json(self._send(calls.edit_plan_call(video)), EditPlan)

    def loras(self) -> LoraList:
        """``GET /v1/loras``: the motion LoRA library, each entry ``ready`` or ``unavailable`` with a reason."""
        return calls.parse_json(self._send(Call("GET", "/v1/loras")), LoraList)

    def reload_loras(self) -> LoraList:
        """``POST /v1/loras/reload``: have the service read its LoRA library again now (an admin key's call)."""
        return calls.parse_json(self._send(Call("POST", "/v1/loras/reload")), LoraList)

    def preview_mask(self, image: ImageSource, **options: Unpack[CompositionOptions]) -> MaskPreview:
        """``POST /v1/backgrounds/mask``: the matte a background job with these options would blend."""
        return calls.parse_mask(self._send(calls.mask_call(image, options)))

    def analyze_image(self, image: ImageSource, prompt: str | None = None) -> Analysis:
        """``POST /v1/analyze``: subject class with scores, warm/cool, bright/dark, and the enriched prompt."""
        return calls.parse_json(self._send(calls.analyze_call(image, prompt)), Analysis)

    def expand_prompt(self, prompt: str, seed: int = 0) -> Expansion:
        """``POST /v1/prompts/expand``: the expanded prompt, or the original with ``expanded: false`` and why."""
        return calls.parse_json(self._send(calls.expand_call(prompt, seed)), Expansion)

    def motion_templates(self) -> MotionTemplates:
        return calls.parse_json(self._send(Call("GET", "/v1/templates/motion")), MotionTemplates)

    def scene_templates(self) -> SceneTemplates:
        return calls.parse_json(self._send(Call("GET", "/v1/templates/scenes")), SceneTemplates)

    # -- jobs -----------------------------------------------------------------------------------------

    def get_job(self, job: Job | str) -> Job:
        return calls.parse_job(self._send(Call("GET", calls.job_path(job))))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of your jobs, newest first; pass ``page.next_cursor`` as ``cursor`` for the next one."""
        return calls.parse_page(self._send(calls.list_call(status, kind, limit, cursor)))

    def delete_job(self, job: Job | str) -> None:
        """Cancel the job if unfinished and delete its record, input and result (``404`` from then on)."""
        self._send(Call("DELETE", calls.job_path(job)))

    def cancel(self, job: Job | str) -> Job:
        """Ask the job to stop (idempotent); a running job stops at its next step. ``409`` once it has succeeded."""
        return calls.parse_job(self._send(Call("POST", calls.job_path(job, "/cancel"))))

    def events(self, job: Job | str) -> Iterator[JobEvent]:
        """The job's Server-Sent Events: ``progress`` events, then one ``succeeded``/``failed``/``cancelled``.

        Raises ``EventStreamError`` if the stream breaks or ends before the final event.
        """
        return self._events(job, deadline=None)

    def wait(
        self,
        job: Job | str,
        *,
        on_progress: ProgressCallback | None = None,
        timeout_s: float | None = None,
        poll_interval_s: float = calls.DEFAULT_POLL_INTERVAL_S,
        use_events: bool = True,
    ) -> Job:
        """Block until the job is final and return it (a failed or cancelled job is returned, not raised).

        Progress comes from the event stream; if the stream cannot be opened or breaks, ``wait`` polls
        ``GET /v1/jobs/{id}`` every ``poll_interval_s`` instead. ``on_progress`` gets each new state,
        the final one included. ``timeout_s`` raises ``WaitTimeoutError`` (the job keeps running).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_reported: tuple[object, ...] | None = None

        def report(state: Job) -> None:  # only changes: the stream and the polls both repeat states
            nonlocal last_reported
            key = calls.progress_key(state)
            if on_progress is not None and key != last_reported:
                on_progress(state)
            last_reported = key

        if use_events:
            try:
                with contextlib.closing(self._events(job, deadline)) as stream:
                    for event in stream:
                        report(event.job)
                        if event.is_final:
                            return event.job
            except _DeadlinePassed:
                raise WaitTimeoutError(self.get_job(job), timeout_s or 0.0) from None
            except (EventStreamError, ConnectionFailedError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status == 404:
                    raise
                log.info("event stream of job %s failed (%s); polling instead", calls.job_id_of(job), exc)
        while True:
            state = self.get_job(job)
            report(state)
            if state.is_final:
                return state
            if deadline is not None and time.monotonic() + poll_interval_s > deadline:
                raise WaitTimeoutError(state, timeout_s or 0.0)
            time.sleep(poll_interval_s)

    # -- batches --------------------------------------------------------------------------------------

    def get_batch(self, batch: Batch | str) -> Batch:
        return calls.parse_batch(self._send(Call("GET", calls.batch_path(batch))))

    def cancel_batch(self, batch: Batch | str) -> Batch:
        """Cancel every unfinished job of the batch (idempotent); running ones stop at their next step."""
        return calls.parse_batch(self._send(Call("POST", calls.batch_path(batch, "/cancel"))))

    def wait_batch(
        self,
        batch: Batch | str,
        *,
        on_progress: Callable[[Batch], object] | None = None,
        timeout_s: float | None = None,
        poll_interval_s: float = calls.DEFAULT_POLL_INTERVAL_S,
    ) -> Batch:
        """Poll ``GET /v1/batches/{id}`` until every job has ended and return the batch (failed jobs included).

        ``on_progress`` gets each changed state, the final one included; ``timeout_s`` raises
        ``WaitTimeoutError`` with the last state as ``.job`` (a ``Batch``; the jobs keep running).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_reported: tuple[object, ...] | None = None
        while True:
            state = self.get_batch(batch)
            key = calls.batch_progress_key(state)
            if on_progress is not None and key != last_reported:
                on_progress(state)
            last_reported = key
            if state.is_final:
                return state
            if deadline is not None and time.monotonic() + poll_interval_s > deadline:
                raise WaitTimeoutError(state, timeout_s or 0.0)
            time.sleep(poll_interval_s)

    def download(self, job: Job | str, path: str | os.PathLike[str]) -> Path:
        """Save the job's result (MP4 or PNG) to ``path`` (or ``<id>.<ext>`` inside a folder); returns the file.

        Written to a temporary name and renamed, so a broken download never leaves a truncated file.
        """
        response = self._send(Call("GET", calls.job_path(job, "/result"), stream=True))
        with contextlib.closing(response):
            target = calls.result_target(path, calls.job_id_of(job), response.headers.get("content-type"))
            partial = calls.partial_path(target)
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                partial.replace(target)
            except httpx.TransportError as exc:
                raise ConnectionFailedError(self.base_url, calls.describe(exc)) from exc
            finally:
                partial.unlink(missing_ok=True)
        return target

    def download_bytes(self, job: Job | str) -> bytes:
        """The job's result (MP4 or PNG) in memory."""
        return self._send(Call("GET", calls.job_path(job, "/result"))).content

    # -- sending --------------------------------------------------------------------------------------

    def _events(self, job: Job | str, deadline: float | None) -> Generator[JobEvent, None, None]:
        read_timeout = calls.EVENTS_READ_TIMEOUT_S
        if deadline is not None:
            read_timeout = max(0.1, min(read_timeout, deadline - time.monotonic() + 1.0))
        response = self._send(calls.events_call(job, read_timeout))
        with contextlib.closing(response):
            calls.check_event_stream(response)
            parser = EventParser()
            try:
                for line in response.iter_lines():
                    if deadline is not None and time.monotonic() > deadline:
                        raise _DeadlinePassed
                    event = parser.feed(line)
                    if event is None:
                        continue
                    parsed = job_event(event)
                    yield parsed
                    if parsed.is_final:
                        return
            except httpx.TransportError as exc:
                raise EventStreamError(f"the event stream broke: {calls.describe(exc)}") from exc
        raise EventStreamError(f"the event stream of job {calls.job_id_of(job)} ended before its final event")

    def _send(self, call: Call) -> httpx.Response:
        """Send ``call``, retrying as ``self.retry`` allows; an error status raises ``ApiError``."""
        started, attempt = time.monotonic(), 0
        timeout = calls.request_timeout(call, self._timeout)
        while True:
            attempt += 1
            request = self._http.build_request(
                call.method,
                self.base_url + call.path,
                data=call.data,
                files=call.files,
                json=call.json,
                headers={**self._headers, **call.headers()},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                delay = self.retry.delay_after_error(exc, attempt, time.monotonic() - started, call.creates_job)
                if delay is None:
                    raise ConnectionFailedError(self.base_url, calls.describe(exc)) from exc
                status, reason = None, calls.describe(exc)
            else:
                if response.status_code < 400:
                    return response
                response.read()
                response.close()
                retry_after = response.headers.get("Retry-After")
                error = ApiError.from_response(response, parse_retry_after(retry_after))
                elapsed = time.monotonic() - started
                delay = self.retry.delay_after_status(response.status_code, retry_after, attempt, elapsed, error.type)
                if delay is None:
                    raise error
                status, reason = response.status_code, error.message
            if self.on_retry is not None:
                self.on_retry(RetryNotice(call.method, call.path, attempt, delay, status, reason))
            log.debug("retrying %s %s in %.2f s after %s", call.method, call.path, delay, reason)
            time.sleep(delay)
