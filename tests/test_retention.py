"""The retention sweep: expired jobs lose their record and files; files no job owns are deleted once old."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from deployments.config import JobQueueConfig
from deployments.jobs.redis_store import RedisJobStore
from deployments.jobs.results import ResultFiles
from deployments.jobs.sqlite_store import SQLiteJobStore
from deployments.jobs.sweeper import sweep_once
from tests.test_job_store import redis_url  # noqa: F401 - a private redis-server

QUEUE = JobQueueConfig(retention_s=1, orphan_grace_s=60)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteJobStore(tmp_path / "jobs.sqlite3", retention_s=QUEUE.retention_s)
    url = request.getfixturevalue("redis_url")
    return RedisJobStore(url, key_prefix=f"sweep-{uuid.uuid4().hex[:8]}:", retention_s=QUEUE.retention_s)


def _age(path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_sweep_deletes_expired_jobs_and_old_orphans_only(store, tmp_path):
    results = ResultFiles(tmp_path / "results")
    done = store.create("video", {})
    results.save_input(done.id, b"png")
    claim = store.claim_next("video", "w")
    result = results.result_path(done.id, claim.attempts, "mp4")
    result.write_bytes(b"mp4")
    assert store.succeed(done.id, {"path": str(result), "content_type": "video/mp4", "bytes": 3}, {}, worker="w")
    waiting = store.create("video", {})
    results.save_input(waiting.id, b"png")
    _age(results.input_path(waiting.id), 7200)  # old, but its job is alive: kept

    old_orphan, young_orphan = uuid.uuid4().hex, uuid.uuid4().hex
    results.path_for(old_orphan, "0.mp4").write_bytes(b"left by a killed worker")
    (results.root / f".{old_orphan}.0.mp4.abc.partial").write_bytes(b"half")
    for path in results.files_of(old_orphan):
        _age(path, 7200)
    results.save_input(young_orphan, b"a submission still being stored")
    (results.root / "notes.txt").write_text("not ours")
    _age(results.root / "notes.txt", 7200)

    first = sweep_once(store, results, QUEUE)
    assert (first.expired_jobs, first.orphans_deleted) == (0, 2)  # nothing expired yet
    if isinstance(store, RedisJobStore):
        time.sleep(1.2)  # Redis expires the record by its TTL
    report = sweep_once(store, results, QUEUE, now=time.time() + 5)
    assert report.expired_jobs == 1 and report.files_deleted == 2
    names = sorted(path.name for path in results.root.iterdir())
    assert names == sorted(["notes.txt", f"{waiting.id}.input.png", f"{young_orphan}.input.png"])
    assert [job.id for job in store.list_jobs(None)] == [waiting.id]
