"""Listing, deleting, retention, idempotency keys and the webhook delivery list, on both job stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from deployments.errors import JobNotFoundError
from deployments.jobs.redis_store import RedisJobStore
from deployments.jobs.store import Idempotency, IdempotencyConflict, JobStore
from tests.test_job_store import open_store, redis_url  # noqa: F401 - fixtures: both backends


@pytest.fixture
def stores(open_store) -> Callable[..., JobStore]:  # noqa: F811 - the imported fixture
    """Opens a store (SQLite or Redis, one test each) with the given options."""
    return open_store


RESULT = {"path": "/srv/results/x.0.mp4", "content_type": "video/mp4", "bytes": 1}


def _finish(store: JobStore, kind: str = "video") -> str:
    job = store.claim_next(kind, "w")
    assert job is not None
    assert store.succeed(job.id, RESULT, {}, worker="w")
    return job.id


def test_list_is_newest_first_per_owner_with_filters_and_pages(stores: Callable[..., JobStore]) -> None:
    store = stores()
    ids = []
    for index in range(7):
        owner = "acme" if index % 2 == 0 else "globex"
        ids.append(store.create("video" if index < 5 else "background", {"n": index}, owner=owner).id)
        time.sleep(0.002)
    acme = [ids[i] for i in (6, 4, 2, 0)]
    assert [job.id for job in store.list_jobs("acme", limit=10)] == acme
    assert [job.id for job in store.list_jobs(None, limit=10)] == ids[::-1]
    assert [job.id for job in store.list_jobs("acme", kind="background")] == [ids[6]]
    assert store.list_jobs("nobody") == []

    # pages of 3 cover everything exactly once, in order
    seen, before = [], None
    while True:
        page = store.list_jobs(None, limit=3, before=before)
        if not page:
            break
        seen += [job.id for job in page]
        before = (page[-1].created_at, page[-1].id)
    assert seen == ids[::-1]

    finished = _finish(store)  # the oldest queued video: ids[0]
    assert finished == ids[0]
    assert [job.id for job in store.list_jobs("acme", status="succeeded")] == [ids[0]]
    assert [job.id for job in store.list_jobs("acme", status="queued", kind="video")] == [ids[4], ids[2]]


def test_delete_removes_the_record_everywhere(stores: Callable[..., JobStore]) -> None:
    store = stores()
    key = Idempotency("k-1", "fp")
    job = store.create("video", {}, owner="acme", idempotency=key)
    deleted = store.delete(job.id)
    assert deleted.id == job.id and deleted.owner == "acme"
    with pytest.raises(JobNotFoundError):
        store.get(job.id)
    with pytest.raises(JobNotFoundError):
        store.delete(job.id)
    assert store.list_jobs("acme") == [] and store.list_jobs(None) == []
    assert store.claim_next("video", "w") is None  # gone from the queue too
    assert store.queue_depth("video") == 0
    # the key is free again: a new job, not a replay of the deleted one
    again = store.create("video", {}, owner="acme", idempotency=key)
    assert again.id != job.id and not again.replayed


def test_a_worker_of_a_deleted_job_is_told_to_stop(stores: Callable[..., JobStore]) -> None:
    store = stores()
    job = store.create("video", {})
    assert store.claim_next("video", "w") is not None
    store.delete(job.id)
    assert store.should_stop(job.id, "w")
    assert not store.succeed(job.id, RESULT, {}, worker="w")
    store.report_progress(job.id, 1, 4, worker="w")
    assert not store.heartbeat(job.id, "w")
    with pytest.raises(JobNotFoundError):  # no write re-created it
        store.get(job.id)


def test_idempotency_key_returns_the_first_job(stores: Callable[..., JobStore]) -> None:
    store = stores()
    first = store.create("video", {"seed": 1}, owner="acme", idempotency=Idempotency("order-7", "aaa"))
    assert not first.replayed
    again = store.create("video", {"seed": 2}, owner="acme", idempotency=Idempotency("order-7", "aaa"))
    assert again.replayed and again.id == first.id and again.params == {"seed": 1}
    with pytest.raises(IdempotencyConflict) as conflict:
        store.create("video", {}, owner="acme", idempotency=Idempotency("order-7", "bbb"))
    assert conflict.value.job_id == first.id
    other_tenant = store.create("video", {}, owner="globex", idempotency=Idempotency("order-7", "bbb"))
    assert other_tenant.id != first.id and not other_tenant.replayed
    assert len(store.list_jobs(None)) == 2


def test_racing_requests_with_one_key_create_one_job(stores: Callable[..., JobStore]) -> None:
    stores = [stores() for _ in range(6)]
    ids: list[str] = []
    barrier = threading.Barrier(len(stores))

    def submit(store: JobStore) -> None:
        barrier.wait()
        ids.append(store.create("video", {}, owner="acme", idempotency=Idempotency("same", "fp")).id)

    threads = [threading.Thread(target=submit, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 6 and len(set(ids)) == 1
    assert [job.id for job in stores[0].list_jobs(None)] == ids[:1]


def test_ended_jobs_expire_after_the_retention(stores: Callable[..., JobStore]) -> None:
    store = stores(retention_s=1)
    queued = store.create("video", {})  # created first: it stays queued (claim takes the oldest)
    store.create("video", {})
    # claim_next takes the oldest, which is `queued`; end it and keep the second one waiting instead
    finished = _finish(store)
    assert finished == queued.id
    job = store.get(finished)
    assert job.expires_at == pytest.approx(job.finished_at + 1, abs=1e-3)
    assert job.public()["expires_at"].endswith("Z")
    waiting = store.list_jobs(None, status="queued")[0]
    assert waiting.expires_at is None and waiting.public()["expires_at"] is None

    assert store.sweep_expired() == []  # nothing is old enough yet
    if isinstance(store, RedisJobStore):
        time.sleep(1.3)  # the hash expires by its TTL; the sweep drops the index entries it left
        swept = store.sweep_expired(now=time.time() + 1)
    else:
        swept = store.sweep_expired(now=time.time() + 2)
    assert swept == [finished]
    with pytest.raises(JobNotFoundError):
        store.get(finished)
    assert [j.id for j in store.list_jobs(None)] == [waiting.id]  # unfinished jobs never expire
    assert store.existing([finished, waiting.id]) == {waiting.id}


def test_webhook_deliveries_are_taken_once_ended_and_leased(stores: Callable[..., JobStore]) -> None:
    store = stores()
    hooked = store.create("video", {}, webhook_url="https://hooks.example/x")
    store.create("video", {})  # no webhook: never on the list
    assert hooked.webhook["status"] == "pending" and hooked.public()["webhook"]["url"] == "https://hooks.example/x"
    assert store.take_due_webhooks(time.time(), lease_s=30) == []  # not ended yet
    _finish(store)
    taken = store.take_due_webhooks(time.time() + 5, lease_s=30)
    assert [job.id for job in taken] == [hooked.id]
    assert store.take_due_webhooks(time.time() + 10, lease_s=30) == []  # leased to the first taker
    state = dict(taken[0].webhook, attempts=1, last_status_code=500, last_error="HTTP 500")
    store.update_webhook(hooked.id, state, due_at=time.time() + 60)
    assert store.take_due_webhooks(time.time() + 30, lease_s=30) == []
    assert [job.id for job in store.take_due_webhooks(time.time() + 61, lease_s=30)] == [hooked.id]
    store.update_webhook(hooked.id, dict(state, status="delivered", attempts=2), due_at=None)
    assert store.take_due_webhooks(time.time() + 10_000, lease_s=30) == []
    assert store.get(hooked.id).webhook["status"] == "delivered"
    store.delete(hooked.id)
    store.update_webhook(hooked.id, state, due_at=time.time())  # a late report re-creates nothing
    with pytest.raises(JobNotFoundError):
        store.get(hooked.id)
