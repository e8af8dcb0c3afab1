"""Video editing over HTTP (in-process harness, no Ray): plan, bad input, and an edit job end to end."""

from __future__ import annotations

import gc

import av
import numpy as np
import pytest

from deployments.config import VideoEditorConfig
from deployments.segmenter import SegmenterDeployment
from deployments.video_editor import VideoEditor
from pipelines.background.segmentation.chain import SegmentationConfig
from pipelines.edit.config import EditModelConfig
from pipelines.video.config import VideoModelConfig
from tests import edit_videos as clips
from tests.api_harness import api_client, final, wait_for


class NoRender:
    def __call__(self, *args, **kwargs):
        raise AssertionError("bad input must never reach a pipeline")


def _editor(pipeline, model_config):
    segmenter = SegmenterDeployment(SegmentationConfig())

    def make(store, store_config, results, queue):
        return VideoEditor(
            VideoEditorConfig(model=model_config),
            store_config,
            queue,
            segmenter,
            pipeline=pipeline,
            store=store,
            results=results,
        )

    return make, segmenter


@pytest.fixture
def quick_client(tmp_path):
    make, segmenter = _editor(NoRender(), EditModelConfig(path=str(tmp_path / "none")))
    with api_client(
        tmp_path, NoRender(), VideoModelConfig(path=str(tmp_path / "no-wan")), editor=make, start_video_worker=False
    ) as client:
        client.results_dir = tmp_path / "results"
        yield client


def _post(client, path, video: bytes, name="clip.mp4", **fields):
    data = {key: str(value) for key, value in fields.items()}
    return client.post(path, files={"video": (name, video, "application/octet-stream")}, data=data)


def test_plan_reports_source_and_output(quick_client):
    answer = _post(quick_client, "/v1/edits/plan", clips.video_bytes(width=96, height=64, frames=32, fps=16))
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["input"] | {"duration_s": round(plan["input"]["duration_s"], 1)} == {
        "width": 96, "height": 64, "duration_s": 2.0, "fps": 16.0, "frames": 32, "container": "mp4",
        "codec": "h264", "rotation": 0, "has_audio": False,
    }  # fmt: skip
    assert plan["output"] == {"width": 832, "height": 560} and plan["frames"] == 29 and plan["fps"] == 16


BAD_INPUTS = [
    ("not a video", lambda: b"\x00garbage" * 200, {}, 400, "invalid_input"),
    ("audio only", clips.audio_only_bytes, {}, 400, "invalid_input"),
    ("zero frames", lambda: clips.video_bytes(frames=2, fps=16), {}, 400, "invalid_input"),
    ("corrupted", lambda: clips.corrupted_half_way(clips.video_bytes(frames=48)), {}, 400, "invalid_input"),
    ("too long", lambda: clips.video_bytes(frames=176, fps=16, width=32, height=32), {}, 413, "input_too_large"),
    ("codec", lambda: clips.unknown_codec_mkv(clips.video_bytes(fmt="matroska")), {}, 400, "invalid_input"),
    ("image as video", clips.png_bytes, {}, 400, "invalid_input"),
    ("unknown mode", lambda: clips.video_bytes(frames=16, fps=16), {"mode": "cartoonify"}, 400, "invalid_input"),
]


@pytest.mark.parametrize(("name", "make", "fields", "status", "kind"), BAD_INPUTS)
def test_bad_input_is_a_clear_4xx_and_leaves_nothing_behind(quick_client, name, make, fields, status, kind):
    answer = _post(quick_client, "/v1/edits", make(), **({"prompt": "a cat", "mode": "style"} | fields))
    assert answer.status_code == status, (name, answer.text)
    body = answer.json()["error"]
    assert body["type"] == kind and body["message"] and "Traceback" not in body["message"]
    assert quick_client.get("/v1/jobs").json()["jobs"] == []  # no job, stuck or otherwise
    assert not any(quick_client.results_dir.iterdir())  # no stored input either
    gc.collect()
    assert not [obj for obj in gc.get_objects() if isinstance(obj, av.container.Container)]  # no open decoder


def test_replace_on_a_video_with_no_subject_is_mask_unusable(quick_client):
    # a plain grey clip: the classic stage finds no subject, only the last-resort ellipse answers
    with av.open(str(quick_client.results_dir.parent / "flat.mp4"), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(16):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    flat = (quick_client.results_dir.parent / "flat.mp4").read_bytes()
    answer = _post(quick_client, "/v1/edits", flat, prompt="a snow leopard", mode="replace")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["type"] == "mask_unusable"
    assert quick_client.get("/v1/jobs").json()["jobs"] == []


def test_mode_fields_are_refused_where_they_have_no_effect(quick_client):
    clip = clips.video_bytes(frames=16, fps=16)
    answer = _post(quick_client, "/v1/edits", clip, prompt="a cat", mode="replace", control="edges")
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "control"


@pytest.mark.slow
def test_an_edit_job_end_to_end_with_audio(tmp_path, tiny_models_dir):
    from pipelines.edit.wan_vace import WanVaceEditor
    from pipelines.tiny.provision import provision_tiny_models
    from pipelines.tiny.wan_vace import TINY_WAN_VACE

    config = EditModelConfig(path=str(tiny_models_dir / TINY_WAN_VACE), tiny_model=TINY_WAN_VACE, device="cpu",
                             dtype="float32")  # fmt: skip
    provision_tiny_models(config)
    make, _ = _editor(WanVaceEditor.from_config(config), config)
    with api_client(
        tmp_path, NoRender(), VideoModelConfig(path=str(tmp_path / "no-wan")), editor=make, start_video_worker=False
    ) as client:
        clip = clips.video_bytes(width=96, height=64, frames=6, fps=16, audio_s=0.4)
        answer = _post(client, "/v1/edits", clip, prompt="a car, van gogh style", mode="style", seed=3)
        assert answer.status_code == 202, answer.text
        job = wait_for(client, answer.json()["id"], final, timeout_s=300)
        assert job["status"] == "succeeded", job
        assert job["kind"] == "edit" and job["params"]["seed"] == 3 and job["params"]["frames"] == 5
        assert job["result"]["details"]["audio"] == "copied (AAC)"
        assert job["step"] == job["total_steps"] == 4
        assert client.get("/v1/jobs", params={"kind": "edit"}).json()["jobs"][0]["id"] == job["id"]
        video = client.get(f"/v1/jobs/{job['id']}/result")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        path = tmp_path / "out.mp4"
        path.write_bytes(video.content)
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert container.streams.audio[0].codec_context.name == "aac"
        assert len(frames) == 5 and frames[0].shape == (560, 832, 3)
