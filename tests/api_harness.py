"""The ingress app wired to an in-process VideoGenerator: the whole HTTP contract without Ray."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from deployments.config import IngressConfig, JobStoreConfig, VideoGeneratorConfig
from deployments.dispatch import InProcessVideoDispatcher
from deployments.http.api import create_api
from deployments.http.services import ApiServices
from deployments.results import ResultFiles
from deployments.sqlite_job_store import SQLiteJobStore
from deployments.video_generator import VideoGenerator


@contextmanager
def api_client(tmp_path: Path, pipeline, model_config, expand_prompt=None, analyze_image=None, **ingress_settings):
    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "jobs.sqlite3"), results_dir=str(tmp_path / "results"))
    store = SQLiteJobStore(store_config.sqlite_path)
    generator = VideoGenerator(
        VideoGeneratorConfig(model=model_config),
        store_config,
        pipeline=pipeline,
        store=store,
        results=ResultFiles(store_config.results_dir),
    )
    services = ApiServices(
        store=store,
        video=InProcessVideoDispatcher(generator, store),
        settings=IngressConfig(**ingress_settings),
        expand_prompt=expand_prompt,
        analyze_image=analyze_image,
    )
    with TestClient(create_api(services), raise_server_exceptions=False) as client:
        yield client


def wait_for(client: TestClient, job_id: str, predicate, timeout_s: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job did not reach the expected state in {timeout_s} s: {job}")
        time.sleep(0.05)


def final(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")
