"""``AsyncClient``: the asyncio twin of ``Client``, on ``httpx.AsyncClient``.

Same methods, same arguments, same retries and errors (both build their requests with
``vividflow.client.calls``); only the waiting is ``await``-ed. ``on_progress`` may be a plain function
or a coroutine function.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
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

AsyncProgressCallback = Callable[[Job], object]


class _DeadlinePassed(Exception):
    """Raised inside ``wait`` when its timeout ends while the event stream is open."""


class AsyncClient:
    """Talks to one VividFlow Serve deployment from asyncio code; see ``Client`` for the arguments.

    Use it as ``async with AsyncClient() as client: ...`` so its connections are closed.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = calls.DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        on_retry: Callable[[RetryNotice], object] | None = None,
    ) -> None:
        self.base_url = calls.resolve_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._headers = calls.default_headers(calls.resolve_api_key(api_key), USER_AGENT)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=self._timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- any endpoint ---------------------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send any request (``data=``, ``files=``, ``json=``) with the retries and error mapping."""
        if kwargs.keys() - {"data", "files", "json"}:
            raise TypeError(f"request() takes data=, files= and json= only, not {sorted(kwargs)}")
        return await self._send(Call(method.upper(), path, **kwargs))

    async def health(self) -> bool:
        try:
            return (await self._http.get(f"{self.base_url}/healthz", headers=self._headers)).status_code == 200
        except httpx.TransportError:
            return False

    # -- submitting -----------------------------------------------------------------------------------

    async def submit_video(
        self,
        image: ImageSource | None = None,
        *,
        idempotency_key: str | None = None,
        extra_fields: Mapping[str, FormValue] | None = None,
        **options: Unpack[VideoOptions],
    ) -> Job:
        """``POST /v1/videos``: queue an image-to-video job (``images`` instead of ``image`` for multi-view)."""
        return calls.parse_job(await self._send(calls.video_call(image, options, extra_fields, idempotency_key)))

    async def submit_background(
        self,
        image: ImageSource,
        *,
        idempotency_key: str | None = None,
        extra_fields: Mapping[str, FormValue] | None = None,
        **options: Unpack[BackgroundOptions],
    ) -> Job:
        """``POST /v1/backgrounds``: queue a background replacement."""
        call = calls.background_call(image, options, extra_fields, idempotency_key)
        return calls.parse_job(await self._send(call))

    async def submit_batch(
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
        return calls.parse_batch(await self._send(calls.batch_call(image, options, extra_fields, idempotency_key)))

    async def submit_edit(
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
        return calls.parse_job(await self._send(call))

    # -- synchronous answers --------------------------------------------------------------------------

    async def plan_video(
        self, image: ImageSource | None = None, duration_s: float | None = None, **layout: Unpack[LayoutOptions]
    ) -> VideoPlan:
        return calls.parse_json(await self._send(calls.plan_call(image, duration_s, layout)), VideoPlan)

    async def plan_edit(self, video: VideoSource) -> EditPlan:
        return calls.parse_json(await self._send(calls.edit_plan_call(video)), EditPlan)

    async def loras(self) -> LoraList:
        return calls.parse_json(await self._send(Call("GET", "/v1/loras")), LoraList)

    async def reload_loras(self) -> LoraList:
        return calls.parse_json(await self._send(Call("POST", "/v1/loras/reload")), LoraList)

    async def preview_mask(self, image: ImageSource, **options: Unpack[CompositionOptions]) -> MaskPreview:
        return calls.parse_mask(await self._send(calls.mask_call(image, options)))

    async def analyze_image(self, image: ImageSource, prompt: str | None = None) -> Analysis:
        return calls.parse_json(await self._send(calls.analyze_call(image, prompt)), Analysis)

    async def expand_prompt(self, prompt: str, seed: int = 0) -> Expansion:
        return calls.parse_json(await self._send(calls.expand_call(prompt, seed)), Expansion)

    async def motion_templates(self) -> MotionTemplates:
        return calls.parse_json(await self._send(Call("GET", "/v1/templates/motion")), MotionTemplates)

    async def scene_templates(self) -> SceneTemplates:
        return calls.parse_json(await self._send(Call("GET", "/v1/templates/scenes")), SceneTemplates)

    # -- jobs -----------------------------------------------------------------------------------------

    async def get_job(self, job: Job | str) -> Job:
        return calls.parse_job(await self._send(Call("GET", calls.job_path(job))))

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of your jobs, newest first; pass ``page.next_cursor`` as ``cursor`` for the next one."""
        return calls.parse_page(await self._send(calls.list_call(status, kind, limit, cursor)))

    async def delete_job(self, job: Job | str) -> None:
        """Cancel the job if unfinished and delete its record, input and result (``404`` from then on)."""
        await self._send(Call("DELETE", calls.job_path(job)))

    async def cancel(self, job: Job | str) -> Job:
        return calls.parse_job(await self._send(Call("POST", calls.job_path(job, "/cancel"))))

    def events(self, job: Job | str) -> AsyncIterator[JobEvent]:
        """``async for event in client.events(job)``: progress events, then the final one."""
        return self._events(job, deadline=None)

    async def wait(
        self,
        job: Job | str,
        *,
        on_progress: AsyncProgressCallback | None = None,
        timeout_s: float | None = None,
        poll_interval_s: float = calls.DEFAULT_POLL_INTERVAL_S,
        use_events: bool = True,
    ) -> Job:
        """Until the job is final: events first, polling when the stream fails (see ``Client.wait``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_reported: tuple[object, ...] | None = None

        async def report(state: Job) -> None:  # only changes: the stream and the polls both repeat states
            nonlocal last_reported
            key = calls.progress_key(state)
            if on_progress is not None and key != last_reported:
                outcome = on_progress(state)
                if inspect.isawaitable(outcome):
                    await outcome
            last_reported = key

        if use_events:
            try:
                async with contextlib.aclosing(self._events(job, deadline)) as stream:
                    async for event in stream:
                        await report(event.job)
                        if event.is_final:
                            return event.job
            except _DeadlinePassed:
                raise WaitTimeoutError(await self.get_job(job), timeout_s or 0.0) from None
            except (EventStreamError, ConnectionFailedError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status == 404:
                    raise
                log.info("event stream of job %s failed (%s); polling instead", calls.job_id_of(job), exc)
        while True:
            state = await self.get_job(job)
            await report(state)
            if state.is_final:
                return state
            if deadline is not None and time.monotonic() + poll_interval_s > deadline:
                raise WaitTimeoutError(state, timeout_s or 0.0)
            await asyncio.sleep(poll_interval_s)

    # -- batches --------------------------------------------------------------------------------------

    async def get_batch(self, batch: Batch | str) -> Batch:
        return calls.parse_batch(await self._send(Call("GET", calls.batch_path(batch))))

    async def cancel_batch(self, batch: Batch | str) -> Batch:
        """Cancel every unfinished job of the batch (idempotent); running ones stop at their next step."""
        return calls.parse_batch(await self._send(Call("POST", calls.batch_path(batch, "/cancel"))))

    async def wait_batch(
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
            state = await self.get_batch(batch)
            key = calls.batch_progress_key(state)
            if on_progress is not None and key != last_reported:
                outcome = on_progress(state)
                if inspect.isawaitable(outcome):
                    await outcome
            last_reported = key
            if state.is_final:
                return state
            if deadline is not None and time.monotonic() + poll_interval_s > deadline:
                raise WaitTimeoutError(state, timeout_s or 0.0)
            await asyncio.sleep(poll_interval_s)

    async def download(self, job: Job | str, path: str | os.PathLike[str]) -> Path:
        """Save the job's result to ``path`` (or ``<id>.<ext>`` inside a folder), atomically."""
        response = await self._send(Call("GET", calls.job_path(job, "/result"), stream=True))
        try:
            target = calls.result_target(path, calls.job_id_of(job), response.headers.get("content-type"))
            partial = calls.partial_path(target)
            try:
                with partial.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
                partial.replace(target)
            except httpx.TransportError as exc:
                raise ConnectionFailedError(self.base_url, calls.describe(exc)) from exc
            finally:
                partial.unlink(missing_ok=True)
        finally:
            await response.aclose()
        return target

    async def download_bytes(self, job: Job | str) -> bytes:
        return (await self._send(Call("GET", calls.job_path(job, "/result")))).content

    # -- sending --------------------------------------------------------------------------------------

    async def _events(self, job: Job | str, deadline: float | None) -> AsyncGenerator[JobEvent, None]:
        read_timeout = calls.EVENTS_READ_TIMEOUT_S
        if deadline is not None:
            read_timeout = max(0.1, min(read_timeout, deadline - time.monotonic() + 1.0))
        response = await self._send(calls.events_call(job, read_timeout))
        try:
            calls.check_event_stream(response)
            parser = EventParser()
            async for line in response.aiter_lines():
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
        finally:
            await response.aclose()
        raise EventStreamError(f"the event stream of job {calls.job_id_of(job)} ended before its final event")

    async def _send(self, call: Call) -> httpx.Response:
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
                response = await self._http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                delay = self.retry.delay_after_error(exc, attempt, time.monotonic() - started, call.creates_job)
                if delay is None:
                    raise ConnectionFailedError(self.base_url, calls.describe(exc)) from exc
                status, reason = None, calls.describe(exc)
            else:
                if response.status_code < 400:
                    return response
                await response.aread()
                await response.aclose()
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
            await asyncio.sleep(delay)
