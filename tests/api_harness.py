"""The ingress app wired to in-process model shims: the whole HTTP contract and job queue without Ray."""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from deployments.config import IngressConfig, JobQueueConfig, JobStoreConfig, VideoGeneratorConfig, WebhookConfig
from deployments.http.api import create_api
from deployments.http.lora_routes import lora_catalog_for
from deployments.http.services import ApiServices
from deployments.jobs.results import ResultFiles
from deployments.jobs.sqlite_store import SQLiteJobStore
from deployments.video_generator import VideoGenerator
from tests.offline_dns import offline_resolve

# Fast polling and short leases so queue behaviour shows up within a test's patience.
TEST_QUEUE = JobQueueConfig(poll_interval_s=0.05, heartbeat_interval_s=0.2, lease_s=3.0, reap_interval_s=0.5)


@contextmanager
def api_client(
    tmp_path: Path,
    pipeline,
    model_config,
    *,
    expand_prompt=None,
    analyze_image=None,
    backgrounds=None,
    editor=None,
    queue: JobQueueConfig = TEST_QUEUE,
    start_video_worker: bool = True,
    **ingress_settings,
):
    """``backgrounds``: a callable (store, store_config, results, queue) -> (BackgroundGenerator, segmenter)."""
    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "jobs.sqlite3"), results_dir=str(tmp_path / "results"))
    store = SQLiteJobStore(store_config.sqlite_path, retention_s=queue.retention_s)
    ingress_settings.setdefault("webhooks", WebhookConfig(signing_secret_file=str(tmp_path / "webhook-secret")))
    results = ResultFiles(store_config.results_dir)
    with ExitStack() as cleanup:
        video = VideoGenerator(
            VideoGeneratorConfig(model=model_config),
            store_config,
            queue,
            pipeline=pipeline,
            store=store,
            results=results,
            start_worker=start_video_worker,
        )
        cleanup.callback(video.worker.stop, 120)
        kinds, mask_subject = {"video"}, None
        if backgrounds is not None:
            generator, segmenter = backgrounds(store, store_config, results, queue)
            cleanup.callback(generator.worker.stop, 120)
            kinds.add("background")
            mask_subject = segmenter.mask
        if editor is not None:  # a callable (store, store_config, results, queue) -> VideoEditor
            video_editor = editor(store, store_config, results, queue)
            cleanup.callback(video_editor.worker.stop, 120)
            kinds.add("edit")
            if mask_subject is None and video_editor.segmenter is not None:
                mask_subject = video_editor.segmenter.mask
        services = ApiServices(
            store=store,
            results=results,
            settings=IngressConfig(**ingress_settings),
            queue=queue,
            job_kinds=frozenset(kinds),
            expand_prompt=expand_prompt,
            analyze_image=analyze_image,
            mask_subject=mask_subject,
            loras=lora_catalog_for(model_config),  # as the Ingress builds it
            resolve_host=offline_resolve,
        )
        client = cleanup.enter_context(TestClient(create_api(services), raise_server_exceptions=False))
        client.video_generator = video
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
