"""The client's batch, edit, LoRA and video-layout calls against the real ingress (tests.api_harness, no Ray).

Most tests use an app with no job worker running: submissions are real (inputs stored, records created,
202 answers), nothing renders, so each test stays fast. The one batch that must finish renders with the
tiny Wan pipeline the other client tests use.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from deployments.config import VideoEditorConfig
from deployments.segmenter import SegmenterDeployment
from deployments.video_editor import VideoEditor
from pipelines.background.segmentation.chain import SegmentationConfig
from pipelines.edit.config import EditModelConfig
from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig
from tests.api_harness import api_client
from tests.edit_videos import video_bytes
from tests.images import encode, gradient_image
from tests.lora_fixtures import tiny_library
from tests.test_client import BASE, FAST, PHOTO, InProcessTransport, decode_mp4
from vividflow.client import ApiError, AsyncClient, Batch, Client, Job, WaitTimeoutError

SIDE = encode(gradient_image(400, 300), "PNG")  # another view / last frame, a different size from PHOTO
CLIP = video_bytes(width=96, height=64, frames=32, fps=16)


class NoRender:
    """No worker runs in the quiet app, so nothing may ever call this."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("these tests never render")


@pytest.fixture(scope="module")
def lora_model(tiny_wan_path) -> VideoModelConfig:
    library = MotionLoraLibraryConfig(path=str(tiny_library()))
    return VideoModelConfig(path=str(tiny_wan_path), device="cpu", dtype="float32", loras=library)


def no_render_editor(store, store_config, results, queue) -> VideoEditor:
    return VideoEditor(
        VideoEditorConfig(model=EditModelConfig(path="/nonexistent/vace")),
        store_config,
        queue,
        SegmenterDeployment(SegmentationConfig()),
        pipeline=NoRender(),
        store=store,
        results=results,
        start_worker=False,
    )


@pytest.fixture
def quiet_app(tmp_path, lora_model):
    """Every route of this file deployed (LoRA library, editor), no job worker started."""
    with api_client(tmp_path, NoRender(), lora_model, editor=no_render_editor, start_video_worker=False) as client:
        yield client


@pytest.fixture
def quiet(quiet_app):
    transport = InProcessTransport(quiet_app)
    with Client(BASE, transport=transport, retry=FAST) as client:
        client.transport = transport
        yield client


def parts_named(request: httpx.Request, name: str) -> int:
    return request.read().count(f'name="{name}"; filename='.encode())


# -- video layouts ---------------------------------------------------------------------------------------------


def test_multi_view_sends_one_part_per_picture_and_the_storyboard_as_json(quiet, tmp_path):
    side = tmp_path / "side.png"
    side.write_bytes(SIDE)
    storyboard = [{"prompt": "turn left"}, {"prompt": "turn right", "duration_s": 1.5}]
    plan = quiet.plan_video(images=[PHOTO, side, PHOTO], transition_s=1.0, storyboard=storyboard)
    assert len(plan["views"]) == 3 and plan["transition_s"] == 1.0 and plan["duration_s"] == 2.5
    assert [segment["prompt"] for segment in plan["segments"]] == ["turn left", "turn right"]
    assert plan["views"][1]["input"] == {"width": 400, "height": 300}

    job = quiet.submit_video(images=[PHOTO, side, PHOTO], transition_s=1.0, storyboard=storyboard, seed=3)
    assert job.status == "queued" and job.params["views"] == 3 and job.params["transition_s"] == 1.0
    assert job.params["storyboard"] == [
        {"prompt": "turn left", "duration_s": 1.0},
        {"prompt": "turn right", "duration_s": 1.5},
    ]
    sent = quiet.transport.requests[-1]
    assert parts_named(sent, "images") == 3 and parts_named(sent, "image") == 0
    assert json.dumps(storyboard).encode() in sent.read()  # the list went as its JSON text


def test_last_image_long_videos_and_the_deployments_maximum(quiet):
    plan = quiet.plan_video(PHOTO, duration_s=12, last_image=SIDE)
    assert plan["last_image"]["input"] == {"width": 400, "height": 300}
    assert len(plan["segments"]) == 3 and plan["duration_s"] == 12
    job = quiet.submit_video(PHOTO, duration_s=12, last_image=SIDE)
    assert job.params["last_image"] is True and job.params["segments"] == 3
    assert parts_named(quiet.transport.requests[-1], "last_image") == 1
    # 45 s is within the document's 60 but beyond this deployment's maximum (30 s by default)
    with pytest.raises(ApiError) as caught:
        quiet.submit_video(PHOTO, duration_s=45)
    assert caught.value.status == 400 and caught.value.field == "duration_s"


def test_a_storyboard_as_json_text_is_sent_unchanged(quiet):
    text = '[{"prompt": "dolly in", "duration_s": 1}]'
    assert quiet.plan_video(PHOTO, storyboard=text)["segments"][0]["prompt"] == "dolly in"
    with pytest.raises(ApiError) as caught:
        quiet.plan_video(PHOTO, storyboard="[{")
    assert caught.value.field == "storyboard"


def test_pictures_are_checked_before_any_request(quiet):
    with pytest.raises(TypeError, match="list of pictures"):
        quiet.submit_video(images="a.png")  # a path where a list belongs
    with pytest.raises(TypeError, match="give the photo"):
        quiet.submit_video(duration_s=1)
    with pytest.raises(TypeError, match="unknown option"):
        quiet.submit_video(PHOTO, reference_image=SIDE)  # an edit's option
    assert quiet.transport.requests == []


# -- LoRAs -----------------------------------------------------------------------------------------------------


def test_loras_are_listed_and_used_by_video_jobs(quiet):
    library = quiet.loras()
    entries = {entry["id"]: entry for entry in library["loras"]}
    assert set(entries) == {"tiny-orbit", "tiny-dolly"} and library["error"] is None
    assert {entry["status"] for entry in entries.values()} == {"ready"}
    assert entries["tiny-orbit"]["default_strength"] == {"high_noise": 1.0, "low_noise": 0.75}
    assert quiet.reload_loras()["loras"] == library["loras"]  # auth is off here: no admin key needed

    job = quiet.submit_video(PHOTO, duration_s=1, lora="tiny-orbit", lora_strength=1.5)
    assert job.params["lora_scales"] == {"high_noise": 1.5, "low_noise": 1.125}
    with pytest.raises(ApiError) as caught:
        quiet.submit_video(PHOTO, lora="no-such-lora")
    assert caught.value.status == 400 and caught.value.field == "lora"


# -- batches ---------------------------------------------------------------------------------------------------


def test_a_batch_is_submitted_read_and_cancelled(quiet):
    batch = quiet.submit_batch(PHOTO, variations=3, seed=10, duration_s=0.5, prompt="slow zoom")
    assert isinstance(batch, Batch) and batch.status == "queued" and len(batch.jobs) == 3
    assert [job.params["seed"] for job in batch.jobs] == [10, 11, 12]
    assert {job.raw["batch_id"] for job in batch.jobs} == {batch.id}
    assert quiet.get_batch(batch).jobs == batch.jobs  # Job equality ignores raw: same fields
    cancelled = quiet.cancel_batch(batch.id)
    assert cancelled.status == "cancelled" and cancelled.counts["cancelled"] == 3 and cancelled.is_final
    assert quiet.wait_batch(batch).status == "cancelled"  # final already: one poll
    with pytest.raises(ApiError) as caught:
        quiet.get_batch("0" * 32)
    assert caught.value.status == 404


def test_batch_lists_go_as_json_and_are_checked_by_the_server(quiet):
    batch = quiet.submit_batch(PHOTO, seeds=[5, 9], prompts=["a cat turns", "a cat jumps"], duration_s=0.5)
    assert [job.params["seed"] for job in batch.jobs] == [5, 9]
    assert [job.params["user_prompt"] for job in batch.jobs] == ["a cat turns", "a cat jumps"]
    with pytest.raises(ApiError) as caught:
        quiet.submit_batch(PHOTO, variations=3, seeds=[1, 2])
    assert caught.value.status == 400 and caught.value.field == "seeds"
    again = quiet.submit_batch(PHOTO, seeds=[5, 9], duration_s=0.5, idempotency_key="batch-key-1")
    replay = quiet.submit_batch(PHOTO, seeds=[5, 9], duration_s=0.5, idempotency_key="batch-key-1")
    assert replay.id == again.id and [j.id for j in replay.jobs] == [j.id for j in again.jobs]


def test_wait_batch_times_out_with_the_last_state(quiet):
    batch = quiet.submit_batch(PHOTO, variations=1, duration_s=0.5)
    seen: list[Batch] = []
    with pytest.raises(WaitTimeoutError) as caught:
        quiet.wait_batch(batch, timeout_s=0.2, poll_interval_s=0.05, on_progress=seen.append)
    assert caught.value.job.id == batch.id and caught.value.job.status == "queued"
    assert len(seen) == 1  # the state never changed, so it was reported once
    assert f"batch {batch.id} is still queued" in str(caught.value)


@pytest.mark.slow  # two tiny renders, ~13 s on a CPU
def test_a_batch_renders_to_the_end(tmp_path, wan_pipeline, video_model_config):
    with (
        api_client(tmp_path, wan_pipeline, video_model_config) as app,
        Client(BASE, transport=InProcessTransport(app), retry=FAST) as client,
    ):
        batch = client.submit_batch(PHOTO, variations=2, seed=3, duration_s=0.5)
        progress: list[float] = []
        done = client.wait_batch(batch, poll_interval_s=0.1, on_progress=lambda b: progress.append(b.progress))
        assert done.status == "succeeded" and done.counts["succeeded"] == 2
        videos = [decode_mp4(client.download_bytes(job)) for job in done.jobs]
    assert [video["frames"] for video in videos] == [9, 9]
    assert progress == sorted(progress) and progress[-1] == 1.0


# -- edits -----------------------------------------------------------------------------------------------------


def test_plan_edit_and_submit_edit(quiet, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CLIP)
    plan = quiet.plan_edit(clip)
    assert plan["input"]["width"] == 96 and plan["input"]["frames"] == 32
    assert plan["output"] == {"width": 832, "height": 560} and plan["frames"] == 29

    job = quiet.submit_edit(clip, prompt="van gogh style", mode="style", seed=3, strength=0.5, keep_audio=False)
    assert isinstance(job, Job) and job.kind == "edit" and job.status == "queued"
    assert (job.params["seed"], job.params["strength"], job.params["keep_audio"]) == (3, 0.5, False)
    assert job.params["control"] == "edges" and job.params["frames"] == 29

    replace = quiet.submit_edit(CLIP, prompt="a red ball", mode="replace", reference_image=SIDE)
    assert replace.params["reference_image"] is True and replace.params["mode"] == "replace"
    assert parts_named(quiet.transport.requests[-1], "reference_image") == 1


def test_edit_mistakes_are_refused_naming_the_field(quiet):
    with pytest.raises(ApiError) as caught:
        quiet.submit_edit(CLIP, prompt="a cat", mode="style", reference_image=SIDE)
    assert caught.value.status == 400 and caught.value.field == "reference_image"
    with pytest.raises(ApiError) as caught:
        quiet.submit_edit(CLIP, prompt="a cat", mode="replace", control="edges")
    assert caught.value.field == "control"
    with pytest.raises(ApiError) as caught:
        quiet.plan_edit(PHOTO)  # a still image is not a video
    assert caught.value.status == 400 and caught.value.is_bad_input
    with pytest.raises(TypeError, match="unknown option"):
        quiet.submit_edit(CLIP, prompt="a cat", mode="style", frames=9)


# -- asyncio ---------------------------------------------------------------------------------------------------


def test_the_async_client_has_the_same_calls(quiet_app):
    async def scenario() -> dict:
        transport = httpx.ASGITransport(app=quiet_app.app, raise_app_exceptions=False)
        async with AsyncClient(BASE, transport=transport, retry=FAST) as client:
            batch = await client.submit_batch(PHOTO, variations=2, seed=1, duration_s=0.5)
            got = await client.get_batch(batch)
            cancelled = await client.cancel_batch(batch)
            seen: list[str] = []

            async def on_progress(state: Batch) -> None:
                seen.append(state.status)

            waited = await client.wait_batch(batch, on_progress=on_progress)
            plan = await client.plan_edit(CLIP)
            edit = await client.submit_edit(CLIP, prompt="a cat", mode="style", seed=2)
            views = await client.plan_video(images=[PHOTO, SIDE])
            loras = await client.loras()
            return {
                "seeds": [job.params["seed"] for job in got.jobs],
                "cancelled": cancelled.status,
                "waited": (waited.status, seen),
                "plan": plan["frames"],
                "edit": (edit.kind, edit.params["seed"]),
                "views": len(views["views"]),
                "loras": sorted(entry["id"] for entry in loras["loras"]),
            }

    assert asyncio.run(scenario()) == {
        "seeds": [1, 2],
        "cancelled": "cancelled",
        "waited": ("cancelled", ["cancelled"]),
        "plan": 29,
        "edit": ("edit", 2),
        "views": 2,
        "loras": ["tiny-dolly", "tiny-orbit"],
    }
