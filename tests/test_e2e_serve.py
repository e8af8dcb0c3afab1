"""End to end through a real local Ray Serve app over HTTP, started the way a user starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from deployments.jobs.sqlite_store import SQLiteJobStore
from pipelines.common.media import probe_video
from tests.images import encode, gradient_image

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def serve(tmp_path_factory, tiny_models_dir):
    workdir = tmp_path_factory.mktemp("serve")
    document = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    port = _free_port()
    document["http_options"]["port"] = port
    args = document["applications"][0]["args"]
    args["job_store"] = {"sqlite_path": str(workdir / "jobs.sqlite3"), "results_dir": str(workdir / "results")}
    # short leases so a killed replica's job comes back within the test's patience
    args["jobs"] = {"heartbeat_interval_s": 1.0, "lease_s": 8.0, "reap_interval_s": 1.0, "max_attempts": 2}
    config = workdir / "e2e.yaml"
    config.write_text(yaml.safe_dump(document))
    log = open(workdir / "serve.log", "w")  # noqa: SIM115 - closed in teardown
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "serve"), "run", "--address", "local", str(config)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve run exited early:\n{(workdir / 'serve.log').read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 300:
                raise AssertionError(f"no healthy response in 300 s:\n{(workdir / 'serve.log').read_text()[-4000:]}")
            time.sleep(1)
        print(f"serve run -> first healthy response in {time.monotonic() - started:.1f} s")
        yield SimpleNamespace(url=url, store=SQLiteJobStore(workdir / "jobs.sqlite3"))
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_submit_poll_download_over_http(serve, tmp_path):
    serve_url = serve.url
    photo = encode(gradient_image(1280, 720), "JPEG")
    started = time.monotonic()
    response = httpx.post(
        f"{serve_url}/v1/videos",
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        data={"duration_s": "1", "seed": "3", "prompt": "the camera pushes in slowly"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    while job["status"] in ("queued", "running"):
        assert time.monotonic() - started < 300, job
        time.sleep(0.5)
        job = httpx.get(f"{serve_url}/v1/jobs/{job['id']}", timeout=10).json()
    assert job["status"] == "succeeded", job
    print(f"1-second video end to end over HTTP: {time.monotonic() - started:.1f} s")
    video = httpx.get(f"{serve_url}{job['result']['url']}", timeout=30)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = tmp_path / "out.mp4"
    path.write_bytes(video.content)
    info = probe_video(path)
    assert (info["codec"], info["pix_fmt"], info["fps"]) == ("h264", "yuv420p", 16.0)
    assert (info["frames"], info["width"], info["height"]) == (17, 832, 480)


def test_an_edit_job_over_http_through_the_deployed_editor(serve, tmp_path):
    """A style edit of an uploaded clip (with sound) through the real VideoEditor replica and its queue."""
    from tests.edit_videos import video_bytes

    clip = video_bytes(width=96, height=64, frames=6, fps=16, audio_s=0.4)
    started = time.monotonic()
    response = httpx.post(
        f"{serve.url}/v1/edits",
        files={"video": ("clip.mp4", clip, "video/mp4")},
        data={"prompt": "a car, in the style of an oil painting", "mode": "style", "seed": "5"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "edit"
    while job["status"] in ("queued", "running"):
        assert time.monotonic() - started < 300, job
        time.sleep(0.5)
        job = httpx.get(f"{serve.url}/v1/jobs/{job['id']}", timeout=10).json()
    assert job["status"] == "succeeded", job
    print(f"style edit of a 6-frame clip end to end over HTTP: {time.monotonic() - started:.1f} s")
    video = httpx.get(f"{serve.url}{job['result']['url']}", timeout=30)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = tmp_path / "edit.mp4"
    path.write_bytes(video.content)
    info = probe_video(path)
    assert (info["codec"], info["fps"], info["frames"]) == ("h264", 16.0, job["params"]["frames"])
    assert job["result"]["details"]["audio"] == "copied (AAC)"


def test_bad_input_over_http_is_a_4xx_with_a_message(serve):
    serve_url = serve.url
    response = httpx.post(f"{serve_url}/v1/videos", files={"image": ("x.png", b"\x89PNG\r\n\x1a\n-broken")}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "image"
    assert httpx.get(f"{serve_url}/v1/jobs/feed", timeout=10).status_code == 404


def test_prompt_expansion_over_http_through_the_deployed_expander(serve):
    serve_url = serve.url
    response = httpx.post(
        f"{serve_url}/v1/prompts/expand", json={"prompt": "a dog runs on the beach", "seed": 4}, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["original"] == "a dog runs on the beach"
    # tiny random weights write gibberish, which the check refuses; a real model's answer passes it
    assert body["expanded"] or body["reason"] not in ("disabled", "unavailable", "timeout")
    again = httpx.post(f"{serve_url}/v1/prompts/expand", json={"prompt": "a dog runs on the beach", "seed": 4}).json()
    assert again["prompt"] == body["prompt"] and again["expanded"] == body["expanded"]


def _submit_video(url: str, **fields) -> dict:
    photo = encode(gradient_image(640, 480), "JPEG")
    data = {key: str(value) for key, value in fields.items()}
    response = httpx.post(f"{url}/v1/videos", files={"image": ("p.jpg", photo, "image/jpeg")}, data=data, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def _wait(url: str, job_id: str, predicate, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=5).json()
            if predicate(job):
                return job
        except (httpx.HTTPError, ValueError):
            pass  # the ingress may be restarting
        assert time.monotonic() < deadline, f"timed out waiting on job {job_id}"
        time.sleep(0.25)


def test_a_client_generated_from_the_served_document_runs_a_video_job(serve, tmp_path):
    """openapi-python-client, fed the document this app serves, submits, polls and downloads a video."""
    from tests.test_generated_client import exercise_video_job

    document = httpx.get(f"{serve.url}/openapi.json", timeout=30).json()
    exercise_video_job(document, serve.url, tmp_path, "ray_serve")


def test_killing_the_video_replica_mid_job_requeues_the_job(serve):
    job = _submit_video(serve.url, duration_s=1, seed=8)
    _wait(serve.url, job["id"], lambda j: j["status"] == "running" and j["step"] >= 1)
    worker = serve.store.get(job["id"]).worker  # "video@host:pid:suffix"
    pid = int(worker.split(":")[1])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    requeued = _wait(serve.url, job["id"], lambda j: j["status"] != "running" or j["attempts"] > 1, timeout_s=120)
    back = time.monotonic() - killed
    done = _wait(serve.url, job["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    total = time.monotonic() - killed
    print(
        f"video replica killed mid-job: job left 'running' after {back:.1f} s ({requeued['status']}), "
        f"reached {done['status']} {total:.1f} s after the kill"
    )
    assert done["status"] == "succeeded" and done["attempts"] == 2


def test_killing_the_ingress_replica_loses_no_job(serve):
    job = _submit_video(serve.url, duration_s=0.5, seed=9)
    found = subprocess.run(["pgrep", "-f", "ServeReplica:vividflow:Ingress"], capture_output=True, text=True)
    pids = [int(pid) for pid in found.stdout.split()]
    assert pids, "no ingress replica process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + 120
    while True:
        try:
            if httpx.get(f"{serve.url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the ingress did not come back"
        time.sleep(0.25)
    answered = time.monotonic() - killed
    done = _wait(serve.url, job["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    print(
        f"ingress replica killed: API answered again after {answered:.1f} s; "
        f"the job reached {done['status']} {time.monotonic() - killed:.1f} s after the kill"
    )
    assert done["status"] == "succeeded" and done["attempts"] == 1


def test_background_job_and_mask_preview_over_http(serve):
    from tests.test_backgrounds_api import studio_photo

    files = {"image": ("studio.png", studio_photo(), "image/png")}
    preview = httpx.post(f"{serve.url}/v1/backgrounds/mask", files=files, data={"feather_px": "3"}, timeout=60)
    assert preview.status_code == 200 and preview.headers["x-mask-stage"] == "classic"
    started = time.monotonic()
    response = httpx.post(
        f"{serve.url}/v1/backgrounds", files=files, data={"scene_id": "beach_sunset", "steps": "4"}, timeout=60
    )
    assert response.status_code == 202, response.text
    done = _wait(serve.url, response.json()["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    print(f"background job end to end over HTTP: {time.monotonic() - started:.1f} s")
    assert done["status"] == "succeeded", done
    assert done["result"]["details"]["mask"]["stage"] == "classic"
    assert done["result"]["details"]["analysis"] is not None  # the ImageAnalyzer enriched the prompt
    png = httpx.get(f"{serve.url}{done['result']['url']}", timeout=30)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_metrics_and_analysis_over_http(serve):
    photo = encode(gradient_image(320, 240), "JPEG")
    analysis = httpx.post(f"{serve.url}/v1/analyze", files={"image": ("a.jpg", photo, "image/jpeg")}, timeout=60)
    assert analysis.status_code == 200 and len(analysis.json()["scores"]) == 5
