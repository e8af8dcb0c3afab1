"""A Python client generated from the served OpenAPI document (openapi-python-client) runs a video job end to end.

The client is generated offline into a temporary folder and imported from there. It submits a video job
(multipart, with a PNG), polls the job until it has succeeded and downloads the MP4: here against the
in-process app (``tests.api_harness``, real tiny pipeline, no Ray), and in ``tests/test_e2e_serve.py``
against the real Ray Serve app (``exercise_video_job`` is shared).
"""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import sys
import time
import typing
from pathlib import Path
from types import ModuleType

import av
import httpx
import pytest

from tests.api_harness import api_client
from tests.images import encode, gradient_image

pytestmark = pytest.mark.slow

GENERATOR_CONFIG = """\
post_hooks: []
content_type_overrides:
  video/mp4: application/octet-stream
  image/png: application/octet-stream
"""
FINAL = ("succeeded", "failed", "cancelled")


def generate_client(document: dict, workdir: Path, package: str) -> ModuleType:
    spec = workdir / "openapi.json"
    spec.write_text(json.dumps(document))
    config = workdir / "generator.yaml"
    config.write_text(f"package_name_override: {package}\n{GENERATOR_CONFIG}")
    output = workdir / "generated"
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec), "--meta", "none"]
    command += ["--output-path", str(output / package), "--config", str(config)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=workdir)
    assert done.returncode == 0, f"openapi-python-client failed:\n{done.stdout}\n{done.stderr}"
    print(f"client generated in {time.monotonic() - started:.1f} s; generator output:\n{done.stdout.strip()}")
    sys.path.insert(0, str(output))
    importlib.invalidate_caches()
    return importlib.import_module(package)


def endpoints(package: ModuleType) -> dict[tuple[str, str], ModuleType]:
    """(method, path) -> the generated module for that operation, whatever its operationId made of its name."""
    found = {}
    for source in sorted(Path(package.__file__).parent.glob("api/*/*.py")):
        match = re.search(r'"method":\s*"(\w+)",\s*"url":\s*"([^"]+)"', source.read_text())
        if match:
            module = importlib.import_module(f"{package.__name__}.api.{source.parent.name}.{source.stem}")
            found[(match.group(1).upper(), match.group(2))] = module
    return found


def as_dict(parsed) -> dict:
    assert parsed is not None, "the client did not parse the response into the documented model"
    assert hasattr(parsed, "to_dict"), f"the response parsed into {type(parsed).__name__}, not a model"
    return parsed.to_dict()


def test_a_generated_client_submits_polls_and_downloads_a_video(tmp_path, wan_pipeline, video_model_config):
    with api_client(tmp_path / "app", wan_pipeline, video_model_config) as client:
        document = client.get("/openapi.json").json()
        exercise_video_job(document, str(client.base_url), tmp_path, "in_process", transport_client=client)


def exercise_video_job(document: dict, base_url: str, tmp_path: Path, name: str, *, transport_client=None) -> None:
    """Generate a client from ``document`` and run one 0.5 s video job through it against ``base_url``."""
    package = generate_client(document, tmp_path, f"vividflow_client_{name}")
    try:
        operations = endpoints(package)
        for key in [("POST", "/v1/videos"), ("GET", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs/{job_id}/result")]:
            assert key in operations, f"{key} is not in the generated client: {sorted(operations)}"
        create, get_job = operations[("POST", "/v1/videos")], operations[("GET", "/v1/jobs/{job_id}")]
        get_result = operations[("GET", "/v1/jobs/{job_id}/result")]

        client = package.Client(base_url=base_url, raise_on_unexpected_status=True, timeout=httpx.Timeout(60.0))
        if transport_client is not None:
            client.set_httpx_client(transport_client)

        # The form model the document declares, with the image as a file part.
        body_type = typing.get_type_hints(create.sync_detailed)["body"]
        file_type = importlib.import_module(f"{package.__name__}.types").File
        png = encode(gradient_image(640, 480), "PNG")
        body = body_type(
            image=file_type(payload=io.BytesIO(png), file_name="photo.png", mime_type="image/png"),
            duration_s=0.5,
            seed=7,
            prompt="the camera pushes in slowly",
        )
        started = time.monotonic()
        submitted = create.sync_detailed(client=client, body=body)
        assert submitted.status_code == 202, submitted.content[:2000]
        job = as_dict(submitted.parsed)
        assert job["status"] == "queued" and job["kind"] == "video", job
        assert submitted.headers["location"] == f"/v1/jobs/{job['id']}"

        while job["status"] not in FINAL:
            assert time.monotonic() - started < 300, job
            time.sleep(0.25)
            polled = get_job.sync_detailed(client=client, job_id=job["id"])
            assert polled.status_code == 200, polled.content[:2000]
            job = as_dict(polled.parsed)
        assert job["status"] == "succeeded", job
        assert job["result"]["url"] == f"/v1/jobs/{job['id']}/result"
        elapsed = time.monotonic() - started
        print(f"{name}: a 0.5 s video through the generated client in {elapsed:.1f} s")

        downloaded = get_result.sync_detailed(client=client, job_id=job["id"])
        assert downloaded.status_code == 200
        assert downloaded.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(downloaded.content)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.average_rate == 16
            assert sum(1 for _ in container.decode(stream)) == 9

        # The error body parses into the document's error model too.
        missing = get_job.sync_detailed(client=client, job_id="0123456789abcdef")
        assert missing.status_code == 404
        error = as_dict(missing.parsed)["error"]
        assert error["type"] == "job_not_found" and isinstance(error["message"], str), error
    finally:
        if str(tmp_path / "generated") in sys.path:
            sys.path.remove(str(tmp_path / "generated"))
        for name in [name for name in sys.modules if name.split(".")[0] == package.__name__]:
            del sys.modules[name]
