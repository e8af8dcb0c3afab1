"""Batches and segment progress in the job store, on both backends (SQLite and a private redis-server)."""

from __future__ import annotations

import uuid

import pytest

from deployments.jobs.store import Idempotency, IdempotencyConflict, JobStore
from tests.test_job_store import open_store, redis_url, store  # noqa: F401, F811  (fixtures)


def _ids(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


def test_a_batch_is_created_whole_in_order_and_queued(store: JobStore) -> None:  # noqa: F811 (the imported fixture)
    batch = uuid.uuid4().hex
    ids = _ids(4)
    jobs = store.create_batch("video", [(job_id, {"seed": n}) for n, job_id in enumerate(ids)], batch, owner="acme")
    assert [job.id for job in jobs] == ids
    fetched = store.batch_jobs(batch)
    assert [job.id for job in fetched] == ids
    assert [job.params["seed"] for job in fetched] == [0, 1, 2, 3]
    assert {job.batch_id for job in fetched} == {batch}
    assert {job.owner for job in fetched} == {"acme"}
    assert {job.status for job in fetched} == {"queued"}
    assert store.queue_depth("video") == 4
    assert store.batch_jobs(uuid.uuid4().hex) == []


def test_a_failed_batch_leaves_no_job_behind(store: JobStore) -> None:  # noqa: F811 (the imported fixture)
    batch = uuid.uuid4().hex
    good = _ids(2)
    with pytest.raises(ValueError):  # the third id is malformed: nothing of the batch may exist afterwards
        store.create_batch("video", [(good[0], {}), (good[1], {}), ("not-an-id", {})], batch)
    assert store.batch_jobs(batch) == []
    assert store.existing(good) == set()
    assert store.queue_depth("video") == 0


def test_batch_jobs_interleave_with_another_tenants_work(store: JobStore) -> None:  # noqa: F811 (the imported fixture)
    batch = uuid.uuid4().hex
    store.create_batch("video", [(job_id, {}) for job_id in _ids(3)], batch, owner="acme")
    other = store.create("video", {}, owner="globex")  # submitted after the whole batch
    claimed = [store.claim_next("video", "w") for _ in range(4)]
    order = [job.owner for job in claimed]
    # the other tenant's job does not wait for the batch to drain
    assert order.index("globex") <= 1, order
    assert other.id in {job.id for job in claimed}


def test_batch_idempotency_replays_the_batch_and_refuses_another_request(store: JobStore) -> None:  # noqa: F811 (the imported fixture)
    key = Idempotency("batch-key-1", "fingerprint-a")
    batch = uuid.uuid4().hex
    first = store.create_batch("video", [(job_id, {}) for job_id in _ids(2)], batch, idempotency=key)
    again = store.create_batch("video", [(job_id, {}) for job_id in _ids(2)], uuid.uuid4().hex, idempotency=key)
    assert [job.id for job in again] == [job.id for job in first]
    assert all(job.replayed for job in again)
    assert store.queue_depth("video") == 2
    with pytest.raises(IdempotencyConflict):
        store.create_batch(
            "video", [(job_id, {}) for job_id in _ids(2)], uuid.uuid4().hex, idempotency=Idempotency(key.key, "b")
        )


def test_segment_progress_is_recorded_for_the_running_worker_only(store: JobStore) -> None:  # noqa: F811 (the imported fixture)
    job = store.create("video", {})
    assert store.get(job.id).public()["segment"] is None
    claimed = store.claim_next("video", "w1")
    store.report_segment(claimed.id, 2, 4, worker="w1")
    store.report_segment(claimed.id, 3, 4, worker="someone-else")  # fenced: not this worker's job
    public = store.get(job.id).public()
    assert (public["segment"], public["total_segments"]) == (2, 4)
