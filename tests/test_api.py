"""The HTTP contract through FastAPI's test client, with a real tiny pipeline and no Ray."""

import json

import pytest

from pipelines.common.media import probe_video
from pipelines.video.plan import output_size
from tests.api_harness import api_client, final, wait_for
from tests.images import encode, gradient_image
from tests.test_images import _png_header_only

pytestmark = pytest.mark.slow

PHOTO = encode(gradient_image(640, 480), "JPEG")


@pytest.fixture
def client(tmp_path, wan_pipeline, video_model_config):
    with api_client(tmp_path, wan_pipeline, video_model_config) as client:
        yield client


def _submit(client, image=PHOTO, **fields):
    data = {key: str(value) for key, value in fields.items()}
    return client.post("/v1/videos", files={"image": ("photo.jpg", image, "image/jpeg")}, data=data)


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("size", [(512, 512), (640, 480), (1280, 720), (1260, 540), (360, 640), (200, 600)])
def test_plan_uses_the_resize_rule(client, size):
    response = client.post(
        "/v1/videos/plan", files={"image": ("a.png", encode(gradient_image(*size)))}, data={"duration_s": "3"}
    )
    assert response.status_code == 200
    body = response.json()
    _, width, height = output_size(*size)
    assert body["input"] == {"width": size[0], "height": size[1]}
    assert body["output"] == {"width": width, "height": height}
    assert (body["frames"], body["fps"], body["duration_s"]) == (49, 16, 3.0)


def test_video_job_end_to_end(client):
    response = _submit(client, duration_s=0.5, seed=11, prompt="slow zoom")
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["kind"] == "video"
    assert job["params"]["seed"] == 11 and job["params"]["frames"] == 9
    assert (job["params"]["width"], job["params"]["height"]) == (832, 624)

    done = wait_for(client, job["id"], final)
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0 and done["step"] == done["total_steps"] == 4
    assert done["result"] == {
        "url": f"/v1/jobs/{job['id']}/result",
        "content_type": "video/mp4",
        "bytes": done["result"]["bytes"],
    }
    assert {"text_encode", "denoise_high_noise", "denoise_low_noise", "vae_decode", "export"} <= set(done["timings_s"])
    for stamp in ("created_at", "started_at", "finished_at"):
        assert done[stamp].endswith("Z")

    result = client.get(done["result"]["url"])
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    info = _probe_bytes(result.content)
    assert (info["codec"], info["fps"], info["frames"], info["width"], info["height"]) == ("h264", 16.0, 9, 832, 624)


def _probe_bytes(data: bytes) -> dict:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        handle.write(data)
        handle.flush()
        return probe_video(handle.name)


def test_seed_is_drawn_and_reported_when_omitted(client):
    job = _submit(client, duration_s=0.5).json()
    assert isinstance(job["params"]["seed"], int) and job["params"]["seed"] >= 0
    client.post(f"/v1/jobs/{job['id']}/cancel")


def test_result_is_409_until_succeeded_and_cancel_is_idempotent(client):
    blocker = _submit(client, duration_s=0.5, steps=4).json()  # occupies the pipeline
    queued = _submit(client, duration_s=0.5).json()
    response = client.get(f"/v1/jobs/{queued['id']}/result")
    assert response.status_code == 409 and "has no result" in response.json()["error"]["message"]

    first = client.post(f"/v1/jobs/{queued['id']}/cancel")
    second = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert first.status_code == second.status_code == 200
    assert wait_for(client, queued["id"], final)["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{queued['id']}/result").status_code == 409
    assert wait_for(client, blocker["id"], final)["status"] == "succeeded"
    # cancelling a job whose result is published is refused, saying why, and changes nothing
    after = client.post(f"/v1/jobs/{blocker['id']}/cancel")
    assert after.status_code == 409 and "already succeeded" in after.json()["error"]["message"]
    assert client.get(f"/v1/jobs/{blocker['id']}").json()["status"] == "succeeded"


def test_cancel_stops_a_running_job_at_the_next_step(client):
    job = _submit(client, duration_s=0.5, steps=12).json()
    wait_for(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 1)
    client.post(f"/v1/jobs/{job['id']}/cancel")
    done = wait_for(client, job["id"], final)
    assert done["status"] == "cancelled"
    assert done["step"] < 12 and done["cancel_requested"] is True
    assert done["result"] is None


def test_events_stream_progress_then_the_final_state(client):
    job = _submit(client, duration_s=0.5, steps=4).json()
    events = []
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    names = [name for name, _ in events]
    assert names[-1] == "succeeded" and set(names[:-1]) <= {"progress"}
    progress = [body["progress"] for _, body in events]
    assert progress == sorted(progress) and progress[-1] == 1.0


BAD_REQUESTS = {
    "not an image": (400, {"image": ("a.txt", b"hello there", "text/plain")}, {}, "not an image"),
    "truncated png": (400, {"image": ("a.png", encode(gradient_image(64, 48))[:150])}, {}, "truncated"),
    "1x1 image": (400, {"image": ("a.png", encode(gradient_image(1, 1)))}, {}, "at least"),
    "40+ megapixels": (413, {"image": ("a.png", _png_header_only(8000, 6000))}, {}, "megapixels"),
    "empty upload": (400, {"image": ("a.png", b"")}, {}, "empty"),
    "missing image": (400, {}, {"duration_s": "1"}, "missing"),
    "duration too long": (400, {"image": ("a.jpg", PHOTO)}, {"duration_s": "31"}, "duration_s"),
    "too few steps": (400, {"image": ("a.jpg", PHOTO)}, {"steps": "2"}, "steps"),
    "non-numeric steps": (400, {"image": ("a.jpg", PHOTO)}, {"steps": "many"}, "whole number"),
    "nan guidance": (400, {"image": ("a.jpg", PHOTO)}, {"guidance_scale": "nan"}, "finite"),
    "negative seed": (400, {"image": ("a.jpg", PHOTO)}, {"seed": "-4"}, "seed"),
    "unknown field": (400, {"image": ("a.jpg", PHOTO)}, {"fps": "30"}, "unknown field fps"),
    "prompt too long": (400, {"image": ("a.jpg", PHOTO)}, {"prompt": "x" * 2001}, "2000"),
    "image as text": (400, {}, {"image": "not a file"}, "file upload"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_video_requests_get_a_4xx_that_says_what_to_fix(client, case):
    status, files, data, needle = BAD_REQUESTS[case]
    response = client.post("/v1/videos", files=files or None, data=data)
    if not files and not data:
        response = client.post("/v1/videos", data={})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"]
    assert "Traceback" not in response.text
    # nothing was queued for a refused request
    assert client.get("/v1/jobs/does-not-exist").status_code == 404


def test_json_body_instead_of_a_form_is_refused(client):
    response = client.post("/v1/videos", json={"duration_s": 1})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_unknown_job_and_route(client):
    for method, path in [("get", "/v1/jobs/0123"), ("get", "/v1/jobs/0123/result"), ("post", "/v1/jobs/0123/cancel")]:
        response = getattr(client, method)(path)
        assert response.status_code == 404 and response.json()["error"]["type"] == "job_not_found"
    assert client.get("/v1/jobs/0123/events").status_code == 404
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404 and "no route" in response.json()["error"]["message"]


def test_a_failing_render_ends_failed_not_running(tmp_path, video_model_config):
    class BrokenPipeline:
        def __call__(self, request, progress=None, should_cancel=None):
            progress(1, 4)
            # A bug, not a device fault: device faults re-queue the job instead (tests/test_device_failures.py).
            raise RuntimeError("decoder: sizes of tensors must match, got 12 and 13 at /src/vae.py:212")

    with api_client(tmp_path, BrokenPipeline(), video_model_config) as client:
        job = _submit(client, duration_s=0.5).json()
        done = wait_for(client, job["id"], final)
    assert done["status"] == "failed"
    assert done["error"]["type"] == "internal_error"
    assert "vae.py" not in done["error"]["message"] and job["id"] in done["error"]["message"]


def test_template_id_selects_a_prompt_and_the_user_prompt_extends_it(client):
    from pipelines.video.motion_templates import get_motion_template

    template = get_motion_template("portrait_subtle.soft_smile")
    job = _submit(client, duration_s=0.5, template_id=template.id, prompt="golden hour light").json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert job["params"]["prompt"] == f"{template.prompt}, golden hour light"
    assert job["params"]["template_id"] == template.id and job["params"]["user_prompt"] == "golden hour light"
    response = _submit(client, template_id="no_such.template")
    assert response.status_code == 400 and response.json()["error"]["field"] == "template_id"


def test_template_listings(client):
    motion = client.get("/v1/templates/motion").json()
    assert len(motion["categories"]) == 8
    scenes = client.get("/v1/templates/scenes").json()
    assert len(scenes["templates"]) == 24


def test_prompt_expansion_is_disabled_without_an_expander(client):
    response = client.post("/v1/prompts/expand", json={"prompt": "a cat turns its head", "seed": 3})
    assert response.status_code == 200
    assert response.json()["expanded"] is False and response.json()["reason"] == "disabled"
    assert response.json()["prompt"] == "a cat turns its head"
    bad = client.post("/v1/prompts/expand", json={"prompt": "x", "temperature": 2})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_input"
    empty = client.post("/v1/prompts/expand", json={"prompt": "   "})
    assert empty.status_code == 400 and empty.json()["error"]["field"] == "prompt"


def test_video_job_records_both_prompts_when_expanding(tmp_path, wan_pipeline, video_model_config):
    async def expand(prompt: str, seed: int) -> dict:
        text = f"{prompt}, the camera glides forward as leaves drift past"
        return {"prompt": text, "original": prompt, "expanded": True, "reason": None, "seconds": 0.01}

    with api_client(tmp_path, wan_pipeline, video_model_config, expand_prompt=expand) as client:
        job = _submit(client, duration_s=0.5, prompt="a fox in the snow", expand_prompt="true").json()
        client.post(f"/v1/jobs/{job['id']}/cancel")
    params = job["params"]
    assert params["original_prompt"] == "a fox in the snow"
    assert params["prompt"] == "a fox in the snow, the camera glides forward as leaves drift past"
    assert params["prompt_expansion"] == {"expanded": True, "reason": None}


def test_video_job_keeps_the_prompt_when_the_expander_is_down(tmp_path, wan_pipeline, video_model_config):
    async def broken(prompt: str, seed: int) -> dict:
        raise ConnectionError("replica gone")

    with api_client(tmp_path, wan_pipeline, video_model_config, expand_prompt=broken) as client:
        job = _submit(client, duration_s=0.5, prompt="waves roll in", expand_prompt="yes").json()
        client.post(f"/v1/jobs/{job['id']}/cancel")
    assert job["params"]["prompt"] == job["params"]["original_prompt"] == "waves roll in"
    assert job["params"]["prompt_expansion"] == {"expanded": False, "reason": "unavailable"}


def test_analyze_is_503_when_no_analyzer_is_deployed(client):
    response = client.post("/v1/analyze", files={"image": ("a.jpg", PHOTO, "image/jpeg")})
    assert response.status_code == 503 and "image_analyzer" in response.json()["error"]["message"]


def test_analyze_through_the_in_process_analyzer(tmp_path, wan_pipeline, video_model_config):
    from deployments.image_analyzer import ImageAnalyzerDeployment
    from pipelines.background.clip_analysis import AnalyzerConfig

    analyzer = ImageAnalyzerDeployment(
        AnalyzerConfig(checkpoint=str(tmp_path / "clip"), tiny_model="tiny-open-clip", device="cpu")
    )
    with api_client(tmp_path, wan_pipeline, video_model_config, analyze_image=analyzer.analyze) as client:
        response = client.post(
            "/v1/analyze", files={"image": ("a.jpg", PHOTO, "image/jpeg")}, data={"prompt": "at sunset"}
        )
        bad = client.post("/v1/analyze", files={"image": ("a.jpg", b"nope", "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["scores"]) == {"person", "animal", "object", "nature", "building"}
    assert abs(sum(body["scores"].values()) - 1.0) < 1e-4
    assert body["subject"] == max(body["scores"], key=body["scores"].get)
    assert body["enriched_prompt"].startswith("at sunset")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "image"


def test_a_full_deployment_queue_becomes_429_not_500(tmp_path, wan_pipeline, video_model_config):
    from ray.serve.exceptions import BackPressureError

    async def busy(prompt: str, seed: int) -> dict:
        raise BackPressureError(num_queued_requests=8, max_queued_requests=8)

    # expansion swallows outages by design; the analyzer does not, so it shows the mapping
    async def busy_analyzer(image, prompt):
        raise BackPressureError(num_queued_requests=8, max_queued_requests=8)

    with api_client(tmp_path, wan_pipeline, video_model_config, expand_prompt=busy, analyze_image=busy_analyzer) as c:
        response = c.post("/v1/analyze", files={"image": ("a.jpg", PHOTO, "image/jpeg")})
        expanded = c.post("/v1/prompts/expand", json={"prompt": "waves"}).json()
    assert response.status_code == 429 and response.headers["retry-after"] == "5"
    assert response.json()["error"]["type"] == "overloaded"
    assert expanded["expanded"] is False and expanded["reason"] == "unavailable"
