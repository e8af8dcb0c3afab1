"""The app the corpus is sent to: every feature deployed in process, stand-ins that never render, no worker.

Like the contract tests' harness (tests/test_openapi_contract.py), but built here so that what could hide a
leftover is off: no reaper or retention sweep runs (the sweep deletes orphaned files, which is exactly what a
case must be able to see), and the upload limit is 1 MB so oversized bodies stay cheap to send.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from deployments.config import AuthConfig, EditLimits, IngressConfig, TenantLimits, WebhookConfig
from deployments.http.api import create_api
from deployments.http.auth import key_sha256
from deployments.http.services import ApiServices
from deployments.jobs.results import ResultFiles
from deployments.jobs.sqlite_store import SQLiteJobStore
from deployments.segmenter import SegmenterDeployment
from pipelines.background.segmentation.chain import SegmentationConfig
from tests.api_harness import TEST_QUEUE
from tests.offline_dns import offline_resolve

MAX_UPLOAD_MB = 1.0
# Two tenants with API keys (auth on, as in production): the corpus's own, and one whose jobs it must not reach.
KEYS = {"corpus": "corpus-key-0123456789", "other": "other-key-0123456789", "ops": "ops-admin-key-0123456789"}
ROLES = {"corpus": "user", "other": "user", "ops": "admin"}
# High enough that the corpus never meets the rate limit or the queue quota (those have their own tests).
LIMITS = TenantLimits(max_queued_jobs=10_000, requests_per_s=100_000, burst=100_000, max_event_streams=64)
# Loopback is refused as a webhook target unless allowed; this one address is, so the case list can show both.
ALLOWED_WEBHOOK_HOSTS = ["127.0.0.1"]


async def _analyze(image, prompt):
    # The keys ImageAnalyzerDeployment.analyze returns; the values do not matter to bad-input cases.
    return {
        "subject": "person",
        "scores": {"person": 0.9, "animal": 0.025, "object": 0.025, "nature": 0.025, "building": 0.025},
        "warm": True,
        "bright": True,
        "lighting": "soft light",
        "atmosphere": "calm",
        "enriched_prompt": prompt or "soft light, calm",
    }


async def _expand(prompt, seed):
    return {"prompt": f"{prompt}, slowly", "original": prompt, "expanded": True, "reason": None, "seconds": 0.0}


class Harness:
    """The TestClient, the store and the results folder of one app, and how to count what it keeps."""

    def __init__(self, client: TestClient, store: SQLiteJobStore, results: ResultFiles) -> None:
        self.client, self.app, self.store, self.results = client, client.app, store, results

    def job_ids(self) -> set[str]:
        return {job.id for job in self.store.list_jobs(None, limit=100_000)}

    def files(self) -> set[str]:
        return {path.name for path in self.results.root.iterdir()}


@contextmanager
def corpus_app(tmp_path: Path):
    store = SQLiteJobStore(str(tmp_path / "jobs.sqlite3"), retention_s=TEST_QUEUE.retention_s)
    results = ResultFiles(tmp_path / "results")
    keys_file = tmp_path / "api-keys.yaml"
    keys_file.write_text(
        "".join(
            f"- {{tenant: {tenant}, key_sha256: {key_sha256(key)}, role: {ROLES[tenant]}}}\n"
            for tenant, key in KEYS.items()
        )
    )
    settings = IngressConfig(
        max_upload_mb=MAX_UPLOAD_MB,
        auth=AuthConfig(mode="api_keys", keys_file=str(keys_file)),
        limits=LIMITS,
        webhooks=WebhookConfig(
            signing_secret_file=str(tmp_path / "webhook-secret"), allowed_hosts=ALLOWED_WEBHOOK_HOSTS
        ),
    )
    segmenter = SegmenterDeployment(SegmentationConfig())  # classic segmentation: no model files
    services = ApiServices(
        store=store,
        results=results,
        settings=settings,
        queue=TEST_QUEUE,
        job_kinds=frozenset({"video", "background", "edit"}),
        edits=EditLimits(max_input_mb=MAX_UPLOAD_MB),
        expand_prompt=_expand,
        analyze_image=_analyze,
        mask_subject=segmenter.mask,
        reap_jobs=False,
        resolve_host=offline_resolve,
    )
    with TestClient(create_api(services), raise_server_exceptions=False) as client:
        yield Harness(client, store, results)


class LiveServer:
    """The same app behind a real uvicorn on a free loopback port (a thread here), for bodies sent slowly."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.host, self.port = self.socket.getsockname()
        # lifespan off: the TestClient around the same app runs it
        config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.socket.close()
