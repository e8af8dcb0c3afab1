"""Tenants take turns at claim time, and rate buckets are shared through the store (both backends)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from deployments.jobs.store import JobStore
from tests.test_job_store import open_store, redis_url  # noqa: F401 - fixtures: both backends


@pytest.fixture
def store(open_store) -> JobStore:  # noqa: F811 - the imported fixture
    return open_store()


def _claim_owners(store: JobStore, count: int) -> list[str]:
    owners = []
    for _ in range(count):
        job = store.claim_next("video", "w")
        owners.append(job.owner if job else None)
        time.sleep(0.002)  # distinct claim times
    return owners


def test_one_tenants_backlog_does_not_starve_anothers_job(store: JobStore) -> None:
    hundred = [store.create("video", {"n": n}, owner="bulk").id for n in range(100)]
    single = store.create("video", {}, owner="small").id
    first, second = store.claim_next("video", "w"), store.claim_next("video", "w")
    assert first.id == hundred[0]
    assert second.id == single  # not behind the other 99
    assert store.claim_next("video", "w").id == hundred[1]  # and the backlog keeps its own order


def test_three_tenants_round_robin(store: JobStore) -> None:
    for owner in ("a", "b", "c"):
        for _ in range(3):
            store.create("video", {}, owner=owner)
    assert _claim_owners(store, 9) == ["a", "b", "c"] * 3
    assert store.claim_next("video", "w") is None


def test_a_requeued_job_goes_back_to_the_head_of_its_tenants_queue(store: JobStore) -> None:
    a1, a2 = store.create("video", {}, owner="a"), store.create("video", {}, owner="a")
    assert store.claim_next("video", "w").id == a1.id
    time.sleep(0.01)
    assert ("requeued", a1.id) in store.reap_stale(0.0, 3)
    assert store.claim_next("video", "w").id == a1.id
    assert store.claim_next("video", "w").id == a2.id


def test_kinds_have_their_own_turns(store: JobStore) -> None:
    store.create("background", {}, owner="a")
    store.create("video", {}, owner="a")
    store.create("video", {}, owner="b")
    assert store.claim_next("background", "w").owner == "a"
    assert store.claim_next("video", "w").owner == "a"  # a background claim does not cost a's video turn


def test_queued_jobs_of_a_tenant(store: JobStore) -> None:
    for kind in ("video", "video", "background"):
        store.create(kind, {}, owner="a")
    store.create("video", {}, owner="b")
    assert store.queued_jobs_of("a") == 3 and store.queued_jobs_of("b") == 1 and store.queued_jobs_of("z") == 0
    store.claim_next("background", "w")
    assert store.queued_jobs_of("a") == 2


def test_token_bucket(open_store: Callable[..., JobStore]) -> None:  # noqa: F811
    first, second = open_store(), open_store()  # two ingress replicas, one bucket
    now = time.time()
    assert [first.take_token("t:a", 2.0, 3, now=now) for _ in range(2)] == [0.0, 0.0]
    assert second.take_token("t:a", 2.0, 3, now=now) == 0.0
    wait = first.take_token("t:a", 2.0, 3, now=now)
    assert wait == pytest.approx(0.5, abs=1e-6)  # one token every half second
    assert second.take_token("t:b", 2.0, 3, now=now) == 0.0  # another tenant's bucket is full
    assert second.take_token("t:a", 2.0, 3, now=now + 0.5) == 0.0
    assert first.take_token("t:a", 2.0, 3, now=now + 0.5) == pytest.approx(0.5, abs=1e-6)


def test_a_worker_prefers_jobs_for_the_lora_it_holds(store: JobStore) -> None:
    orbit = store.create("video", {"lora": "orbit"}, owner="a")
    dolly = store.create("video", {"lora": "dolly"}, owner="a")
    plain = store.create("video", {}, owner="a")
    assert store.claim_next("video", "w", prefer_loras=frozenset({"dolly"})).id == dolly.id
    assert store.claim_next("video", "w", prefer_loras=frozenset()).id == plain.id  # no switch needed
    assert store.claim_next("video", "w", prefer_loras=frozenset({"dolly"})).id == orbit.id  # only one left
    assert store.claim_next("video", "w") is None
