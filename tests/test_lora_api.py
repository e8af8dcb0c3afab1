"""`GET /v1/loras`, `POST /v1/loras/reload`, and `lora` / `lora_strength` on video jobs, through the real app."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from deployments.config import IngressConfig, VideoGeneratorConfig, WebhookConfig
from deployments.http.api import create_api
from deployments.http.lora_routes import lora_catalog_for
from deployments.http.services import ApiServices
from deployments.jobs.results import ResultFiles
from deployments.jobs.sqlite_store import SQLiteJobStore
from deployments.video_generator import VideoGenerator, job_loras
from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig
from tests.api_harness import TEST_QUEUE, final, wait_for
from tests.images import encode, gradient_image
from tests.lora_fixtures import entry, library_copy, write_manifest
from tests.offline_dns import offline_resolve

IMAGE = {"image": ("photo.png", encode(gradient_image(96, 64), "PNG"), "image/png")}
SHORT = {"duration_s": "1"}


@contextmanager
def lora_app(tmp_path, tiny_wan_path, *, pipeline=None, library=True):
    folder = library_copy(tmp_path / "loras", [entry("broken", file="absent.safetensors")])
    loras = MotionLoraLibraryConfig(path=str(folder)) if library else None
    model = VideoModelConfig(path=str(tiny_wan_path), device="cpu", dtype="float32", loras=loras)
    store = SQLiteJobStore(str(tmp_path / "jobs.sqlite3"))
    results = ResultFiles(str(tmp_path / "results"))
    video = VideoGenerator(
        VideoGeneratorConfig(model=model),
        None,
        TEST_QUEUE,
        pipeline=pipeline or object(),
        store=store,
        results=results,
        start_worker=pipeline is not None,
    )
    services = ApiServices(
        store=store,
        results=results,
        settings=IngressConfig(webhooks=WebhookConfig(signing_secret_file=str(tmp_path / "secret"))),
        queue=TEST_QUEUE,
        loras=lora_catalog_for(model),
        resolve_host=offline_resolve,
    )
    try:
        with TestClient(create_api(services), raise_server_exceptions=False) as client:
            client.folder, client.video = folder, video
            yield client
    finally:
        video.worker.stop(120)


def test_the_library_is_listed_with_a_status_per_entry(tmp_path, tiny_wan_path):
    with lora_app(tmp_path, tiny_wan_path) as client:
        answer = client.get("/v1/loras")
    assert answer.status_code == 200
    loras = {item["id"]: item for item in answer.json()["loras"]}
    assert set(loras) == {"tiny-orbit", "tiny-dolly", "broken"}
    assert loras["tiny-orbit"]["status"] == "ready" and loras["tiny-orbit"]["reason"] is None
    assert loras["tiny-orbit"]["default_strength"] == {"high_noise": 1.0, "low_noise": 0.75}
    assert loras["tiny-dolly"]["experts"] == ["high_noise", "low_noise"]
    assert loras["broken"]["status"] == "unavailable" and "does not exist" in loras["broken"]["reason"]


def test_a_video_job_records_the_lora_its_strength_and_the_scales(tmp_path, tiny_wan_path):
    with lora_app(tmp_path, tiny_wan_path) as client:
        answer = client.post("/v1/videos", files=IMAGE, data={**SHORT, "lora": "tiny-orbit", "lora_strength": "1.5"})
        plain = client.post("/v1/videos", files=IMAGE, data=SHORT)
    assert answer.status_code == 202, answer.text
    params = answer.json()["params"]
    assert (params["lora"], params["lora_strength"]) == ("tiny-orbit", 1.5)
    assert params["lora_scales"] == {"high_noise": 1.5, "low_noise": 1.125}
    assert job_loras(params) == [("tiny-orbit", 1.5)]
    assert plain.status_code == 202
    assert (plain.json()["params"]["lora"], plain.json()["params"]["lora_strength"]) == (None, None)
    assert job_loras(plain.json()["params"]) == []


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"lora": "nope"}, "lora", "unknown LoRA"),
        ({"lora": "broken"}, "lora", "unavailable"),
        ({"lora": "tiny-orbit", "lora_strength": "nan"}, "lora_strength", "finite"),
        ({"lora": "tiny-orbit", "lora_strength": "-0.5"}, "lora_strength", "greater than or equal"),
        ({"lora": "tiny-orbit", "lora_strength": "2.5"}, "lora_strength", "less than or equal"),
        ({"lora_strength": "1"}, "lora_strength", "needs `lora`"),
        ({"lora": "x" * 101}, "lora", "at most"),
    ],
)
def test_bad_lora_fields_are_a_400_naming_the_field(tmp_path, tiny_wan_path, fields, field, words):
    with lora_app(tmp_path, tiny_wan_path) as client:
        answer = client.post("/v1/videos", files=IMAGE, data={**SHORT, **fields})
        listed = client.get("/v1/jobs").json()
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and words in error["message"], error
    assert listed["jobs"] == []  # nothing queued


def test_without_a_library_lora_is_refused_and_the_listing_is_empty(tmp_path, tiny_wan_path):
    with lora_app(tmp_path, tiny_wan_path, library=False) as client:
        assert client.get("/v1/loras").json() == {"loras": [], "error": None}
        answer = client.post("/v1/videos", files=IMAGE, data={**SHORT, "lora": "tiny-orbit"})
        reload = client.post("/v1/loras/reload")
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "lora"
    assert reload.status_code == 503


def test_reload_reads_an_added_entry_and_bad_files_never_hide_the_others(tmp_path, tiny_wan_path):
    with lora_app(tmp_path, tiny_wan_path) as client:
        (client.folder / "corrupt.safetensors").write_bytes(b"\xff" * 64)
        write_manifest(
            client.folder,
            [
                entry("tiny-orbit", file="tiny-orbit.safetensors"),
                entry("corrupt", file="corrupt.safetensors"),
            ],
        )
        answer = client.post("/v1/loras/reload")
        accepted = client.post("/v1/videos", files=IMAGE, data={**SHORT, "lora": "tiny-orbit"})
        refused = client.post("/v1/videos", files=IMAGE, data={**SHORT, "lora": "corrupt"})
    assert answer.status_code == 200
    statuses = {item["id"]: item["status"] for item in answer.json()["loras"]}
    assert statuses == {"tiny-orbit": "ready", "corrupt": "unavailable"}
    assert accepted.status_code == 202
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "lora_unavailable"


def test_strength_bounds_are_in_the_openapi_document(tmp_path, tiny_wan_path):
    with lora_app(tmp_path, tiny_wan_path) as client:
        document = client.get("/openapi.json").json()
    form = document["components"]["schemas"]
    video_form = next(schema for name, schema in form.items() if "lora_strength" in schema.get("properties", {}))
    strength = video_form["properties"]["lora_strength"]
    assert (strength["minimum"], strength["maximum"]) == (0.0, 2.0)
    assert "/v1/loras" in document["paths"] and "/v1/loras/reload" in document["paths"]
    assert not math.isnan(strength["maximum"])


@pytest.mark.slow
def test_a_job_with_a_lora_renders_and_the_replica_then_holds_it(tmp_path, tiny_wan_path, video_model_config):
    from pipelines.video.wan_i2v import WanImageToVideo

    library = library_copy(tmp_path / "pipeline-loras")
    config = video_model_config.model_copy(update={"loras": MotionLoraLibraryConfig(path=str(library))})
    pipeline = WanImageToVideo.from_config(config)
    with lora_app(tmp_path, tiny_wan_path, pipeline=pipeline) as client:
        job = client.post(
            "/v1/videos", files=IMAGE, data={"lora": "tiny-dolly", "duration_s": "0.5", "seed": "3"}
        ).json()
        done = wait_for(client, job["id"], final)
        held = client.video.held_loras()
        timings = client.video.store.get(job["id"]).timings
    assert done["status"] == "succeeded", done
    assert held == {"tiny-dolly"}
    assert timings["lora_switch"] >= 0
