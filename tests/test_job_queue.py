"""The durable job queue through the HTTP app: persisted before 202, survives a lost ingress or worker."""

import time

import pytest

from deployments.jobs.sqlite_store import SQLiteJobStore
from tests.api_harness import TEST_QUEUE, api_client, final, wait_for
from tests.images import encode, gradient_image

pytestmark = pytest.mark.slow

PHOTO = encode(gradient_image(320, 240), "JPEG")


def _submit(client, **fields):
    data = {key: str(value) for key, value in fields.items()}
    return client.post("/v1/videos", files={"image": ("p.jpg", PHOTO, "image/jpeg")}, data=data)


def test_a_job_outlives_the_ingress_that_accepted_it(tmp_path, wan_pipeline, video_model_config):
    # First ingress: no worker anywhere; it accepts the job and goes away.
    with api_client(tmp_path, wan_pipeline, video_model_config, start_video_worker=False) as client:
        accepted = _submit(client, duration_s=0.5, seed=5)
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]
    # A new ingress and a worker on the same store pick it up from the queue.
    with api_client(tmp_path, wan_pipeline, video_model_config) as client:
        done = wait_for(client, job_id, final)
    assert done["status"] == "succeeded" and done["attempts"] == 1


def test_a_job_whose_worker_vanished_is_requeued_and_finishes(tmp_path, wan_pipeline, video_model_config):
    with api_client(tmp_path, wan_pipeline, video_model_config, start_video_worker=False) as client:
        job_id = _submit(client, duration_s=0.5).json()["id"]
        store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        # a replica claims the job and dies at once: it never heartbeats again
        assert store.claim_next("video", "ghost-replica").id == job_id
        died = time.monotonic()
        requeued = wait_for(client, job_id, lambda job: job["status"] == "queued", timeout_s=30)
        resumed_after = time.monotonic() - died
        assert requeued["attempts"] == 1
        client.video_generator.worker.start()
        done = wait_for(client, job_id, final)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    # the lease is 3 s and the reaper looks every 0.5 s
    assert resumed_after < TEST_QUEUE.lease_s + 3 * TEST_QUEUE.reap_interval_s + 2
    print(f"worker lost -> job back in the queue after {resumed_after:.1f} s (lease {TEST_QUEUE.lease_s} s)")


def test_a_job_that_keeps_losing_workers_fails_with_a_clear_error(tmp_path, wan_pipeline, video_model_config):
    with api_client(tmp_path, wan_pipeline, video_model_config, start_video_worker=False) as client:
        job_id = _submit(client, duration_s=0.5).json()["id"]
        store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        for attempt in range(TEST_QUEUE.max_attempts):
            wait_for(client, job_id, lambda job: job["status"] == "queued", timeout_s=30)
            assert store.claim_next("video", f"ghost-{attempt}").id == job_id
        done = wait_for(client, job_id, final, timeout_s=30)
    assert done["status"] == "failed"
    assert done["error"]["type"] == "worker_lost" and "stopped responding" in done["error"]["message"]


def test_a_full_queue_answers_429_with_retry_after(tmp_path, wan_pipeline, video_model_config):
    queue = TEST_QUEUE.model_copy(update={"max_queued_jobs": 2, "retry_after_s": 17})
    with api_client(tmp_path, wan_pipeline, video_model_config, queue=queue, start_video_worker=False) as client:
        first = _submit(client, duration_s=0.5)
        assert first.status_code == 202
        assert _submit(client, duration_s=0.5).status_code == 202
        refused = _submit(client, duration_s=0.5)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "17"
        assert refused.json()["error"]["type"] == "overloaded"
        # cancelling a queued job frees its place
        client.post(f"/v1/jobs/{first.json()['id']}/cancel")
        assert _submit(client, duration_s=0.5).status_code == 202
