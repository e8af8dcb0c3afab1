"""The Python client (``vividflow.client``) against the real ingress, and its retry rules against scripted answers.

The in-process app is ``tests.api_harness`` (real routes, job queue and tiny Wan/SDXL pipelines, no Ray).
The client speaks httpx 0.28 while Starlette's TestClient is built on httpx2, so ``InProcessTransport``
carries each request across, streaming the answer: Server-Sent Events arrive as the job runs.
Retries, backoff and the SSE fallback are driven by ``httpx.MockTransport`` with a scripted server.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.api_harness import api_client
from tests.images import encode, gradient_image
from vividflow.client import (
    ApiError,
    AsyncClient,
    Client,
    ConnectionFailedError,
    EventStreamError,
    Job,
    RetryNotice,
    RetryPolicy,
    WaitTimeoutError,
)
from vividflow.client.retry import parse_retry_after
from vividflow.client.sse import EventParser

PHOTO = encode(gradient_image(640, 480), "JPEG")
BASE = "http://vividflow.test"
FAST = RetryPolicy(backoff_initial_s=0.001, jitter=0.0, retry_after_max_s=0.05, max_elapsed_s=5.0)


class InProcessTransport(httpx.BaseTransport):
    """Sends the client's httpx requests through Starlette's TestClient (httpx2), streaming the body back."""

    def __init__(self, app_client) -> None:
        self.app_client = app_client
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        upstream = self.app_client.send(
            self.app_client.build_request(
                request.method, str(request.url), headers=request.headers.multi_items(), content=request.read()
            ),
            stream=True,
        )
        return httpx.Response(upstream.status_code, headers=upstream.headers.multi_items(), stream=_Body(upstream))

    def paths(self) -> list[str]:
        return [f"{request.method} {request.url.path}" for request in self.requests]


class _Body(httpx.SyncByteStream):
    def __init__(self, upstream) -> None:
        self.upstream = upstream

    def __iter__(self):
        yield from self.upstream.iter_raw()

    def close(self) -> None:
        self.upstream.close()


class BrokenPipeline:
    """A video pipeline that fails the way real ones report trouble: with a project error after a step."""

    def __call__(self, request, progress=None, should_cancel=None):
        from pipelines.common.errors import UnsupportedHardwareError

        progress(1, 4)
        raise UnsupportedHardwareError("fp8 needs a GPU with compute capability 8.9; this one has 8.0")


def decode_mp4(data: bytes) -> dict:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return {
            "codec": stream.codec_context.name,
            "fps": float(stream.average_rate),
            "frames": len(frames),
            "size": (frames[0].width, frames[0].height),
        }


def image_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def job_json(status: str = "queued", step: int = 0, total: int = 4, **extra) -> dict:
    """A job object as the API writes it, for scripted servers."""
    progress = 1.0 if status == "succeeded" else step / total
    body = {
        "id": "a" * 32,
        "kind": "video",
        "status": status,
        "progress": progress,
        "step": step,
        "total_steps": total,
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
        "params": {"seed": 1},
        "error": None,
        "result": {"url": f"/v1/jobs/{'a' * 32}/result", "content_type": "video/mp4", "bytes": 3}
        if status == "succeeded"
        else None,
        "cancel_requested": False,
        "attempts": 1,
        "timings_s": {},
    }
    return {**body, **extra}


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
def app_client(tmp_path, wan_pipeline, video_model_config):
    with api_client(tmp_path, wan_pipeline, video_model_config) as client:
        yield client


@pytest.fixture
def transport(app_client) -> InProcessTransport:
    return InProcessTransport(app_client)


@pytest.fixture
def client(transport):
    with Client(BASE, transport=transport, retry=FAST) as client:
        yield client


@pytest.fixture(scope="module")
def sdxl(tiny_models_dir):
    from pipelines.background.sdxl import BackgroundModelConfig, SdxlBackground
    from pipelines.tiny.provision import provision_tiny_models

    config = BackgroundModelConfig(
        path=str(tiny_models_dir / "tiny-sdxl"), tiny_model="tiny-sdxl", device="cpu", dtype="float32"
    )
    provision_tiny_models(config)
    return SdxlBackground.from_config(config)


@pytest.fixture
def background_app(tmp_path, wan_pipeline, video_model_config, sdxl, tiny_models_dir):
    """The app with background replacement and the mask preview deployed (classic segmentation)."""
    from deployments.background_generator import BackgroundGenerator
    from deployments.config import BackgroundGeneratorConfig
    from deployments.segmenter import SegmenterDeployment
    from pipelines.background.sdxl import BackgroundModelConfig
    from pipelines.background.segmentation.chain import SegmentationConfig

    segmenter = SegmenterDeployment(SegmentationConfig())

    def backgrounds(store, store_config, results, queue):
        config = BackgroundGeneratorConfig(model=BackgroundModelConfig(path=str(tiny_models_dir / "tiny-sdxl")))
        generator = BackgroundGenerator(
            config, store_config, queue, segmenter, None, pipeline=sdxl, store=store, results=results
        )
        return generator, segmenter

    with api_client(tmp_path, wan_pipeline, video_model_config, backgrounds=backgrounds) as client:
        yield client


def studio_photo(width: int = 320, height: int = 240) -> bytes:
    """A subject on a plain backdrop, which the classic segmentation stage cuts out."""
    image = np.full((height, width, 3), (236, 236, 240), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    body = ((xx - width / 2) / (width * 0.18)) ** 2 + ((yy - height * 0.62) / (height * 0.38)) ** 2 <= 1
    image[body] = (40, 70, 150)
    return encode(Image.fromarray(image), "PNG")


# -- against the real ingress ---------------------------------------------------------------------------------


def test_video_submit_wait_download(client, transport, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    job = client.submit_video(photo, duration_s=0.5, seed=11, prompt="slow zoom")
    assert isinstance(job, Job) and job.status == "queued" and job.kind == "video"
    assert job.params["seed"] == 11 and job.params["frames"] == 9

    seen: list[Job] = []
    done = client.wait(job, on_progress=seen.append)
    assert done.status == "succeeded" and done.is_final and done.result is not None
    progress = [state.progress for state in seen]
    assert len(seen) >= 2 and progress == sorted(progress) and progress[-1] == 1.0 and progress[0] < 1.0
    assert seen[-1] is done
    # the progress came from the event stream: no polling of the job was needed
    assert f"GET /v1/jobs/{job.id}/events" in transport.paths()
    assert f"GET /v1/jobs/{job.id}" not in transport.paths()

    saved = client.download(done, tmp_path / "out.mp4")
    assert saved == tmp_path / "out.mp4" and not list(tmp_path.glob(".*.part"))
    video = decode_mp4(saved.read_bytes())
    assert video == {"codec": "h264", "fps": 16.0, "frames": 9, "size": (832, 624)}
    assert client.download(done.id, tmp_path) == tmp_path / f"{job.id}.mp4"  # a folder: named after the job
    assert client.download_bytes(done) == saved.read_bytes()

    submit = next(request for request in transport.requests if request.url.path == "/v1/videos")
    assert uuid.UUID(submit.headers["Idempotency-Key"]).version == 4
    assert submit.headers["User-Agent"].startswith("vividflow-python/")
    assert "Authorization" not in submit.headers


def test_plan_video(client):
    plan = client.plan_video(PHOTO, duration_s=3)
    assert plan["input"] == {"width": 640, "height": 480}
    assert plan["output"] == {"width": 832, "height": 624}
    assert (plan["frames"], plan["fps"], plan["duration_s"]) == (49, 16, 3.0)
    assert client.plan_video(PHOTO)["frames"] == 49  # the server's default duration, 3 s


def test_bad_input_is_an_api_error_naming_the_field(client, transport):
    with pytest.raises(ApiError) as caught:
        client.submit_video(PHOTO, template_id="no_such.template")
    error = caught.value
    assert (error.status, error.type, error.field) == (400, "invalid_input", "template_id")
    assert error.is_bad_input and "no_such.template" in error.message
    with pytest.raises(ApiError) as caught:
        client.plan_video(b"not a picture at all")
    assert caught.value.field == "image" and caught.value.status == 400
    sent = len(transport.requests)
    with pytest.raises(TypeError, match="duration"):
        client.submit_video(PHOTO, duration=5)  # type: ignore[call-arg]
    assert len(transport.requests) == sent  # refused before any request


def test_unknown_job_is_404_everywhere(client):
    for call in (client.get_job, client.cancel, client.download_bytes, client.wait):
        with pytest.raises(ApiError) as caught:
            call("0123")
        assert (caught.value.status, caught.value.type) == (404, "job_not_found")


def test_cancel_and_result_before_success(client):
    blocker = client.submit_video(PHOTO, duration_s=0.5)  # keeps the only worker busy
    queued = client.submit_video(PHOTO, duration_s=0.5)
    with pytest.raises(ApiError) as caught:
        client.download_bytes(queued)
    assert caught.value.status == 409 and caught.value.type == "job_state_conflict"
    assert client.cancel(queued).cancel_requested
    assert client.wait(queued).status == "cancelled"
    assert client.wait(blocker).status == "succeeded"


def test_wait_timeout_leaves_the_job_running(client):
    job = client.submit_video(PHOTO, duration_s=0.5, steps=12)
    with pytest.raises(WaitTimeoutError) as caught:
        client.wait(job, timeout_s=0.05)
    assert caught.value.job.id == job.id and not caught.value.job.is_final
    assert client.wait(client.cancel(job)).status == "cancelled"


def test_templates_and_prompt_expansion(client):
    motion = client.motion_templates()
    assert len(motion["categories"]) == 8
    assert sum(len(category["prompts"]) for category in motion["categories"]) == 72
    scenes = client.scene_templates()
    assert len(scenes["templates"]) == 24 and "beach_sunset" in {scene["id"] for scene in scenes["templates"]}
    expansion = client.expand_prompt("a cat turns its head", seed=3)
    assert expansion["expanded"] is False and expansion["reason"] == "disabled"
    assert expansion["prompt"] == "a cat turns its head"


def test_a_service_that_is_not_deployed_is_a_503(transport):
    notices: list[RetryNotice] = []
    policy = RetryPolicy(max_attempts=2, backoff_initial_s=0.001, jitter=0.0)
    client = Client(BASE, transport=transport, retry=policy, on_retry=notices.append)
    with client, pytest.raises(ApiError) as caught:
        client.analyze_image(PHOTO, prompt="at dusk")
    assert caught.value.status == 503 and "image_analyzer" in caught.value.message
    assert [notice.status for notice in notices] == [503]  # retried once, as 503 may mean "starting"


def test_a_failed_job_is_returned_with_its_error(tmp_path, video_model_config):
    with (
        api_client(tmp_path, BrokenPipeline(), video_model_config) as app_client,
        Client(BASE, transport=InProcessTransport(app_client)) as client,
    ):
        done = client.wait(client.submit_video(PHOTO, duration_s=0.5))
    assert done.status == "failed" and done.result is None
    assert done.error is not None and done.error.type == "unsupported_hardware"
    assert "compute capability" in done.error.message


def test_background_job_and_mask_preview(background_app, tmp_path):
    with Client(BASE, transport=InProcessTransport(background_app)) as client:
        job = client.submit_background(studio_photo(), scene_id="white_studio", steps=4, seed=3, feather_px=2)
        assert job.kind == "background" and job.params["scene_id"] == "white_studio"
        seen: list[Job] = []
        done = client.wait(job, on_progress=seen.append)
        assert done.status == "succeeded" and seen[-1].progress == 1.0
        assert done.result is not None and done.result.details["mask"]["stage"] == "classic"
        saved = client.download(done, tmp_path)
        assert saved.suffix == ".png" and image_size(saved) == (320, 240)

        preview = client.preview_mask(studio_photo(), composition="center", feather_px=4)
        assert (preview.stage, preview.status) == ("classic", "ok") and 0 < preview.coverage < 1
        mask = np.asarray(Image.open(io.BytesIO(preview.png)))
        assert mask.shape == (240, 320) and mask[150, 160] > 200 and mask[5, 5] < 30

        with pytest.raises(ApiError) as caught:
            client.submit_background(studio_photo(), prompt="a park", composition="top")  # type: ignore[arg-type]
        assert caught.value.field == "composition"


def test_async_client_end_to_end(app_client, tmp_path):
    async def scenario() -> tuple[Job, list[float], bytes]:
        transport = httpx.ASGITransport(app=app_client.app, raise_app_exceptions=False)
        async with AsyncClient(BASE, transport=transport, retry=FAST) as client:
            plan = await client.plan_video(PHOTO, duration_s=0.5)
            assert plan["frames"] == 9
            job = await client.submit_video(PHOTO, duration_s=0.5, seed=4)
            progress: list[float] = []

            async def on_progress(state: Job) -> None:  # a coroutine callback is awaited
                progress.append(state.progress)

            done = await client.wait(job, on_progress=on_progress)
            saved = await client.download(done, tmp_path / "async.mp4")
            with pytest.raises(ApiError) as caught:
                await client.get_job("0123")
            assert caught.value.status == 404
            return done, progress, saved.read_bytes()

    done, progress, data = asyncio.run(scenario())
    assert done.status == "succeeded" and progress == sorted(progress) and progress[-1] == 1.0
    assert decode_mp4(data)["frames"] == 9


# -- retries and fallbacks against a scripted server -------------------------------------------------------


class ScriptedServer:
    """An ``httpx.MockTransport`` handler answering each request with the next scripted answer for its path."""

    def __init__(self, script: dict[str, list]) -> None:
        self.script = {path: list(answers) for path, answers in script.items()}
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        answers = self.script[self._key(request)]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        # a fresh copy each time: a response object belongs to the one client that read it
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.read())

    def paths(self) -> list[str]:
        return [self._key(request) for request in self.requests]

    @staticmethod
    def _key(request: httpx.Request) -> str:
        return f"{request.method} {request.url.raw_path.decode().partition('?')[0]}"


def overloaded(retry_after: str | None = "1") -> httpx.Response:
    body = {"error": {"type": "overloaded", "message": "8 video jobs are already waiting"}}
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after} if retry_after else {})


def test_429_is_retried_after_retry_after_with_the_same_idempotency_key():
    server = ScriptedServer({"POST /v1/videos": [overloaded(), overloaded(), httpx.Response(202, json=job_json())]})
    notices: list[RetryNotice] = []
    with Client(BASE, transport=httpx.MockTransport(server), retry=FAST, on_retry=notices.append) as client:
        job = client.submit_video(PHOTO, duration_s=1)
        client.submit_video(PHOTO, duration_s=1)  # a new submission: a new key
    assert job.status == "queued" and len(server.requests) == 4
    keys = [request.headers["Idempotency-Key"] for request in server.requests]
    assert keys[0] == keys[1] == keys[2] != keys[3]
    assert all(uuid.UUID(key).version == 4 for key in keys)
    # Retry-After (1 s) was honoured up to the test's cap of 0.05 s, not replaced by the 1 ms backoff
    assert [(notice.status, notice.delay_s) for notice in notices] == [(429, 0.05), (429, 0.05)]
    gaps = np.diff(server.times[:3])
    assert (gaps >= 0.05).all()
    # each retry sends the photo again (read once, so a file object is not half consumed by then)
    assert all(PHOTO in request.read() for request in server.requests[:3])


def test_retrying_is_bounded_in_total_time():
    server = ScriptedServer({"POST /v1/videos": [overloaded("1")]})
    policy = RetryPolicy(retry_after_max_s=0.05, max_elapsed_s=0.12, jitter=0.0)
    started = time.monotonic()
    client = Client(BASE, transport=httpx.MockTransport(server), retry=policy)
    with client, pytest.raises(ApiError) as caught:
        client.submit_video(PHOTO)
    assert caught.value.status == 429 and caught.value.retry_after_s == 1.0 and caught.value.type == "overloaded"
    assert len(server.requests) == 3 and time.monotonic() - started < 1.0  # waits of 0.05 + 0.05, then no more


def test_retry_after_values():
    policy = RetryPolicy(retry_after_max_s=30.0, jitter=0.0)
    assert policy.delay_after_status(429, "3", attempt=1, elapsed_s=0.0) == 3.0
    assert policy.delay_after_status(429, "120", attempt=1, elapsed_s=0.0) == 30.0  # capped
    assert policy.delay_after_status(503, None, attempt=2, elapsed_s=0.0) == 1.0  # no header: backoff
    assert policy.delay_after_status(400, "3", attempt=1, elapsed_s=0.0) is None
    assert policy.delay_after_status(503, None, attempt=1, elapsed_s=0.0, error_type="model_not_found") is None
    assert policy.delay_after_status(429, "3", attempt=6, elapsed_s=0.0) is None  # out of attempts
    assert policy.delay_after_status(429, "3", attempt=1, elapsed_s=58.0) is None  # out of time
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 18.0 < parse_retry_after(later) <= 20.0
    assert parse_retry_after("soon") is None and parse_retry_after("-4") == 0.0


def test_connection_errors_are_retried_with_exponential_backoff():
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    server = ScriptedServer({"GET /v1/jobs/abc": [refused, refused, httpx.Response(200, json=job_json("running", 2))]})
    notices: list[RetryNotice] = []
    policy = RetryPolicy(backoff_initial_s=0.02, backoff_multiplier=2.0, jitter=0.0)
    with Client(BASE, transport=httpx.MockTransport(server), retry=policy, on_retry=notices.append) as client:
        job = client.get_job("abc")
    assert job.status == "running" and job.step == 2 and job.stage == "denoising"
    assert [(notice.status, notice.delay_s) for notice in notices] == [(None, 0.02), (None, 0.04)]
    assert "Connection refused" in notices[0].reason
    gaps = np.diff(server.times)
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04


def test_a_submission_that_may_have_arrived_is_resent_with_its_key():
    broken = httpx.ReadError("connection reset by peer")
    server = ScriptedServer({"POST /v1/videos": [broken, httpx.Response(202, json=job_json())]})
    with Client(BASE, transport=httpx.MockTransport(server), retry=FAST) as client:
        assert client.submit_video(PHOTO).status == "queued"
    assert len(server.requests) == 2
    assert server.requests[0].headers["Idempotency-Key"] == server.requests[1].headers["Idempotency-Key"]
    # for servers that predate Idempotency-Key, resending can be turned off
    server = ScriptedServer({"POST /v1/videos": [broken, httpx.Response(202, json=job_json())]})
    cautious = RetryPolicy(backoff_initial_s=0.001, jitter=0.0, resend_submits=False)
    client = Client(BASE, transport=httpx.MockTransport(server), retry=cautious)
    with client, pytest.raises(ConnectionFailedError, match="connection reset"):
        client.submit_video(PHOTO)
    assert len(server.requests) == 1


class LosesFirstAnswer(InProcessTransport):
    """Delivers the first submission to the real app, then drops its answer, as a broken connection would."""

    def __init__(self, app_client) -> None:
        super().__init__(app_client)
        self.dropped = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and not self.dropped:
            self.dropped = True
            response.read()
            raise httpx.ReadError("connection reset after the server answered")
        return response


def test_a_lost_answer_to_a_submission_never_makes_a_second_job(app_client):
    transport = LosesFirstAnswer(app_client)
    with Client(BASE, transport=transport, retry=FAST) as client:
        job = client.submit_video(PHOTO, duration_s=0.5)
        posts = [request for request in transport.requests if request.method == "POST"]
        assert len(posts) == 2 and posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
        assert [listed.id for listed in client.list_jobs().jobs] == [job.id]


def test_an_unreachable_service_raises_after_the_retries():
    server = ScriptedServer({"GET /v1/templates/motion": [httpx.ConnectError("refused")]})
    with (
        Client(
            BASE, transport=httpx.MockTransport(server), retry=RetryPolicy(max_attempts=3, backoff_initial_s=0.001)
        ) as client,
        pytest.raises(ConnectionFailedError) as caught,
    ):
        client.motion_templates()
    assert len(server.requests) == 3 and caught.value.url == BASE


def sse(*events: tuple[str, dict], comment: bool = True) -> bytes:
    lines = [": keep-alive\n\n"] if comment else []
    lines += [f"event: {name}\ndata: {json.dumps(body)}\n\n" for name, body in events]
    return "".join(lines).encode()


EVENTS = "GET /v1/jobs/" + "a" * 32 + "/events"
JOB = "GET /v1/jobs/" + "a" * 32
POLLED = [httpx.Response(200, json=job_json("running", 2)), httpx.Response(200, json=job_json("running", 3)),
          httpx.Response(200, json=job_json("succeeded", 4))]  # fmt: skip


@pytest.mark.parametrize(
    "events_answer",
    [
        httpx.ReadError("stream reset"),  # the connection fails
        httpx.Response(502, text="<html>Bad Gateway</html>"),  # a proxy that cannot stream
        httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"}),  # not a stream
        # the stream ends after one event, before the final one
        httpx.Response(
            200, content=sse(("progress", job_json("running", 1))), headers={"content-type": "text/event-stream"}
        ),
    ],
    ids=["connection-error", "bad-gateway", "not-an-event-stream", "ends-early"],
)
def test_wait_falls_back_to_polling_when_the_event_stream_fails(events_answer):
    server = ScriptedServer({EVENTS: [events_answer], JOB: POLLED})
    seen: list[Job] = []
    with Client(BASE, transport=httpx.MockTransport(server), retry=FAST) as client:
        done = client.wait("a" * 32, on_progress=seen.append, poll_interval_s=0.01)
    assert done.status == "succeeded"
    assert server.paths().index(JOB) > server.paths().index(EVENTS)  # polled after the stream failed
    assert server.paths().count(JOB) == 3
    steps = [state.step for state in seen]
    assert steps == sorted(steps) and steps[-1] == 4 and seen[-1].progress == 1.0


def test_wait_reads_the_event_stream():
    stream = sse(
        ("progress", job_json("queued")), ("progress", job_json("running", 2)), ("succeeded", job_json("succeeded", 4))
    )
    server = ScriptedServer(
        {EVENTS: [httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})]}
    )
    seen: list[Job] = []
    with Client(BASE, transport=httpx.MockTransport(server)) as client:
        done = client.wait("a" * 32, on_progress=seen.append)
        events = list(client.events("a" * 32))
    assert done.status == "succeeded" and [state.status for state in seen] == ["queued", "running", "succeeded"]
    assert [event.name for event in events] == ["progress", "progress", "succeeded"] and events[-1].is_final
    assert JOB not in server.paths()


def test_events_raise_when_the_stream_ends_early():
    stream = sse(("progress", job_json("running", 1)))
    server = ScriptedServer(
        {EVENTS: [httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})]}
    )
    with Client(BASE, transport=httpx.MockTransport(server)) as client, pytest.raises(EventStreamError):
        list(client.events("a" * 32))


def test_async_client_retries_and_falls_back():
    server = ScriptedServer(
        {
            "POST /v1/videos": [overloaded(), httpx.Response(202, json=job_json())],
            EVENTS: [httpx.Response(502, text="Bad Gateway")],
            JOB: POLLED,
        }
    )

    async def scenario() -> tuple[Job, list[int]]:
        steps: list[int] = []
        async with AsyncClient(BASE, transport=httpx.MockTransport(server), retry=FAST) as client:
            job = await client.submit_video(PHOTO)
            done = await client.wait(job, on_progress=lambda state: steps.append(state.step), poll_interval_s=0.01)
        return done, steps

    done, steps = asyncio.run(scenario())
    assert done.status == "succeeded" and steps == [2, 3, 4]
    submits = [request for request in server.requests if request.method == "POST"]
    assert len(submits) == 2 and submits[0].headers["Idempotency-Key"] == submits[1].headers["Idempotency-Key"]


# -- settings, errors, parsing ------------------------------------------------------------------------------


def test_url_and_api_key_come_from_arguments_or_the_environment(monkeypatch):
    server = ScriptedServer({"GET /v1/jobs/abc": [httpx.Response(200, json=job_json())]})
    monkeypatch.setenv("VIVIDFLOW_URL", "http://from-env:9000/")
    monkeypatch.setenv("VIVIDFLOW_API_KEY", "env-key")
    with Client(transport=httpx.MockTransport(server)) as client:
        client.get_job("abc")
    with Client("http://from-arg:8000", api_key="arg-key", transport=httpx.MockTransport(server)) as client:
        client.get_job("abc")
    first, second = server.requests
    assert str(first.url) == "http://from-env:9000/v1/jobs/abc" and first.headers["Authorization"] == "Bearer env-key"
    assert str(second.url) == "http://from-arg:8000/v1/jobs/abc" and second.headers["Authorization"] == "Bearer arg-key"
    monkeypatch.delenv("VIVIDFLOW_URL")
    assert Client().base_url == "http://127.0.0.1:8000"


def test_job_ids_cannot_reach_other_routes():
    server = ScriptedServer(
        {"GET /v1/jobs/..%2Fvideos": [httpx.Response(404, json={"error": {"type": "job_not_found", "message": "no"}})]}
    )
    with Client(BASE, transport=httpx.MockTransport(server)) as client, pytest.raises(ApiError):
        client.get_job("../videos")
    assert server.requests[0].url.raw_path == b"/v1/jobs/..%2Fvideos"


def test_an_error_that_is_not_the_apis_is_still_an_api_error():
    server = ScriptedServer({"GET /v1/templates/scenes": [httpx.Response(502, text="<html>Bad Gateway</html>")]})
    with Client(BASE, transport=httpx.MockTransport(server)) as client, pytest.raises(ApiError) as caught:
        client.scene_templates()
    assert (caught.value.status, caught.value.type) == (502, "http_error") and "Bad Gateway" in caught.value.message
    assert caught.value.as_dict()["error"]["status"] == 502


def test_jobs_keep_keys_a_newer_server_adds():
    job = Job.from_json(job_json("running", 4, owner="local", batch_id=None, stage="vae_decode"))
    assert job.raw["owner"] == "local" and job.stage == "vae_decode"
    assert Job.from_json(job_json("running", 4)).stage == "decoding"
    assert Job.from_json(job_json("running", 0)).stage == "starting"


def test_event_parser_follows_the_event_stream_rules():
    parser = EventParser()
    lines = [": keep-alive", "", "event: progress", 'data: {"a":', "data:1}", "id: 7", "retry: 10", ""]
    events = [event for event in map(parser.feed, lines) if event is not None]
    assert len(events) == 1
    assert (events[0].name, events[0].data, events[0].id) == ("progress", '{"a":\n1}', "7")
    assert parser.feed("data: plain") is None and parser.feed("").name == "message"


def test_list_pages_and_delete(client):
    ids = [client.submit_video(PHOTO, duration_s=0.5, seed=seed).id for seed in range(3)]
    first = client.list_jobs(limit=2)
    assert [job.id for job in first.jobs] == ids[::-1][:2] and first.next_cursor
    rest = client.list_jobs(limit=2, cursor=first.next_cursor)
    assert [job.id for job in rest.jobs] == ids[:1] and rest.next_cursor is None
    assert client.wait(ids[-1]).status == "succeeded"
    client.delete_job(ids[-1])
    with pytest.raises(ApiError) as caught:
        client.get_job(ids[-1])
    assert caught.value.status == 404
    assert ids[-1] not in [job.id for job in client.list_jobs(limit=100).jobs]
    assert [job.id for job in client.list_jobs(kind="background").jobs] == []
