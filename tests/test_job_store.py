"""The JobStore contract, run against every backend: SQLite on a temp file and Redis on a private redis-server."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from deployments.errors import JobNotFoundError, ServiceNotReadyError
from deployments.job_store import FINAL_STATUSES, JobStore
from deployments.redis_job_store import RedisJobStore
from deployments.sqlite_job_store import SQLiteJobStore

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RESULT = {"path": "/srv/results/clip.mp4", "content_type": "video/mp4", "bytes": 12345}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server for the whole session: in memory only, loopback only."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed: apt-get install redis-server")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            if server.poll() is not None:
                output = server.stdout.read().decode(errors="replace") if server.stdout else ""
                raise RuntimeError(f"redis-server exited with {server.returncode}:\n{output}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], JobStore]]:
    """Opens a new store instance on the same file / URL + key prefix each time it is called."""
    opened: list[RedisJobStore] = []
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite3"

        def factory() -> JobStore:
            return SQLiteJobStore(path)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test:{uuid.uuid4().hex[:12]}:"  # one server for the session: tests must not see each other's jobs

        def factory() -> JobStore:
            store = RedisJobStore(url, key_prefix=prefix)
            opened.append(store)
            return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], JobStore]) -> JobStore:
    return open_store()


def _running(store: JobStore, total_steps: int = 10) -> str:
    job = store.create("video", {"prompt": "a cat"})
    assert store.start(job.id, "worker-1", total_steps)
    return job.id


def test_create_is_queued_and_durable(open_store: Callable[[], JobStore]) -> None:
    params = {"prompt": "ein Känguru 🦘", "num_frames": 17, "nested": {"seed": 7, "list": [1, 2.5, None]}}
    job = open_store().create("video", params)
    assert job.status == "queued" and not job.is_final

    reread = open_store().get(job.id)  # a second instance, as another replica would open it
    assert reread.status == "queued"
    assert reread.kind == "video"
    assert reread.params == params
    assert reread.created_at == job.created_at
    assert (reread.progress, reread.step, reread.total_steps) == (0.0, 0, 0)
    assert reread.started_at is None and reread.finished_at is None
    assert reread.error is None and reread.result is None and reread.worker is None
    assert reread.cancel_requested is False
    assert reread.timings == {}


def test_get_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        store.get("does-not-exist")
    assert caught.value.field == "job_id"
    assert "does-not-exist" in caught.value.message


def test_updates_to_unknown_job_create_nothing(store: JobStore) -> None:
    assert not store.start("ghost", "w", 5)
    store.report_progress("ghost", 1, 5)
    assert not store.succeed("ghost", RESULT, {})
    assert not store.fail("ghost", "x", "y")
    assert not store.mark_cancelled("ghost")
    assert not store.is_cancel_requested("ghost")
    with pytest.raises(JobNotFoundError):
        store.get("ghost")


def test_start_only_from_queued(store: JobStore) -> None:
    job = store.create("video", {})
    assert store.start(job.id, "worker-1", 8)
    running = store.get(job.id)
    assert running.status == "running"
    assert running.worker == "worker-1" and running.total_steps == 8
    assert running.started_at is not None and running.started_at >= running.created_at
    assert not store.start(job.id, "worker-2", 8)  # a second replica must not take it over
    assert store.get(job.id).worker == "worker-1"

    store.fail(job.id, "boom", "broken")
    assert not store.start(job.id, "worker-3", 8)
    assert store.get(job.id).status == "failed"


def test_start_refused_when_cancel_requested(store: JobStore) -> None:
    job = store.create("video", {})
    store.request_cancel(job.id)
    assert not store.start(job.id, "worker-1", 8)
    assert store.get(job.id).status == "cancelled"


def test_progress_recorded_only_while_running(store: JobStore) -> None:
    job = store.create("video", {})
    store.report_progress(job.id, 3, 10)
    assert store.get(job.id).step == 0  # not running yet

    store.start(job.id, "worker-1", 10)
    store.report_progress(job.id, 3, 12)
    running = store.get(job.id)
    assert (running.step, running.total_steps) == (3, 12)
    assert running.progress == pytest.approx(0.25)
    store.report_progress(job.id, 0, 0)
    assert store.get(job.id).progress == 0.0


def test_succeed_only_from_running(store: JobStore) -> None:
    job = store.create("video", {})
    assert not store.succeed(job.id, RESULT, {"total": 1.0})
    assert store.get(job.id).status == "queued"

    store.start(job.id, "worker-1", 10)
    store.report_progress(job.id, 4, 10)
    assert store.succeed(job.id, RESULT, {"denoise": 1.5, "export": 0.25})
    done = store.get(job.id)
    assert done.status == "succeeded" and done.is_final
    assert done.progress == 1.0 and done.step == 10
    assert done.result == RESULT
    assert done.timings == {"denoise": 1.5, "export": 0.25}
    assert done.finished_at is not None and done.finished_at >= done.started_at

    assert not store.succeed(job.id, {**RESULT, "path": "/other.mp4"}, {})
    assert store.get(job.id).result == RESULT


def test_fail_from_queued_or_running_but_not_after_success(store: JobStore) -> None:
    queued = store.create("video", {})
    assert store.fail(queued.id, "invalid_input", "bad image")
    failed = store.get(queued.id)
    assert failed.status == "failed"
    assert failed.error == {"type": "invalid_input", "message": "bad image"}
    assert failed.finished_at is not None
    assert not store.fail(queued.id, "other", "second failure")
    assert store.get(queued.id).error == {"type": "invalid_input", "message": "bad image"}

    running = _running(store)
    assert store.fail(running, "internal_error", "oom")
    assert store.get(running).status == "failed"

    succeeded = _running(store)
    store.succeed(succeeded, RESULT, {})
    assert not store.fail(succeeded, "late", "worker timed out")
    after = store.get(succeeded)
    assert after.status == "succeeded" and after.error is None


def test_request_cancel_on_queued_cancels_at_once(store: JobStore) -> None:
    job = store.create("video", {})
    cancelled = store.request_cancel(job.id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancel_requested is True
    assert cancelled.finished_at is not None
    assert store.is_cancel_requested(job.id)


def test_request_cancel_on_running_only_flags_it(store: JobStore) -> None:
    job_id = _running(store)
    assert not store.is_cancel_requested(job_id)
    flagged = store.request_cancel(job_id)
    assert flagged.status == "running"
    assert flagged.cancel_requested is True and flagged.finished_at is None
    assert store.is_cancel_requested(job_id)

    store.report_progress(job_id, 2, 10)  # the worker is still reporting until its next check
    assert store.get(job_id).step == 2
    assert store.mark_cancelled(job_id)
    assert store.get(job_id).status == "cancelled"


@pytest.mark.parametrize("ending", ["succeeded", "failed", "cancelled"])
def test_request_cancel_on_finished_job_changes_nothing(store: JobStore, ending: str) -> None:
    job_id = _running(store)
    if ending == "succeeded":
        store.succeed(job_id, RESULT, {})
    elif ending == "failed":
        store.fail(job_id, "boom", "broken")
    else:
        store.mark_cancelled(job_id)
    before = store.get(job_id)
    for _ in range(2):  # idempotent
        assert store.request_cancel(job_id) == before
    assert store.get(job_id) == before


def test_request_cancel_is_idempotent_on_queued_and_running(store: JobStore) -> None:
    queued = store.create("video", {})
    first = store.request_cancel(queued.id)
    assert store.request_cancel(queued.id) == first

    running = _running(store)
    flagged = store.request_cancel(running)
    assert store.request_cancel(running) == flagged


def test_mark_cancelled(store: JobStore) -> None:
    queued = store.create("video", {})
    assert store.mark_cancelled(queued.id)
    assert store.get(queued.id).status == "cancelled"
    assert store.get(queued.id).cancel_requested is True
    assert not store.mark_cancelled(queued.id)

    running = _running(store)
    assert store.mark_cancelled(running)
    assert store.get(running).finished_at is not None

    succeeded = _running(store)
    store.succeed(succeeded, RESULT, {})
    assert not store.mark_cancelled(succeeded)
    assert store.get(succeeded).status == "succeeded"


def test_public_view(store: JobStore) -> None:
    job = store.create("video", {"prompt": "waves"})
    queued = store.get(job.id).public()
    assert queued["status"] == "queued" and queued["progress"] == 0.0
    assert ISO_Z.match(queued["created_at"])
    assert queued["started_at"] is None and queued["finished_at"] is None
    assert queued["result"] is None and queued["error"] is None
    assert queued["params"] == {"prompt": "waves"}

    store.start(job.id, "worker-1", 3)
    store.report_progress(job.id, 1, 3)
    running = store.get(job.id).public()
    assert running["status"] == "running"
    assert running["progress"] == pytest.approx(0.3333)
    assert ISO_Z.match(running["started_at"])
    assert running["result"] is None
    assert "worker" not in running

    store.succeed(job.id, RESULT, {"total": 2.0})
    done = store.get(job.id).public()
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["step"] == 3
    assert ISO_Z.match(done["finished_at"])
    assert done["result"] == {"url": f"/v1/jobs/{job.id}/result", "content_type": "video/mp4", "bytes": 12345}
    assert done["timings_s"] == {"total": 2.0}
    assert "/srv/results" not in repr(done)  # no file paths in the HTTP view

    failed = store.create("video", {})
    store.fail(failed.id, "invalid_input", "bad")
    view = store.get(failed.id).public()
    assert view["result"] is None
    assert view["error"] == {"type": "invalid_input", "message": "bad"}


def _race(calls: list[Callable[[], bool]]) -> list[int]:
    """Run the calls at once, one thread each; the indexes of those that returned True."""
    barrier = threading.Barrier(len(calls))
    wins: list[int] = []
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            if calls[index]():
                wins.append(index)
        except BaseException as exc:  # re-raised below: an exception in a thread would pass silently
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return wins


def test_racing_final_transitions_have_one_winner(store: JobStore) -> None:
    enders: list[tuple[str, Callable[[str], bool]]] = [
        ("succeeded", lambda job_id: store.succeed(job_id, RESULT, {})),
        ("failed", lambda job_id: store.fail(job_id, "lost", "worker died")),
        ("cancelled", lambda job_id: store.mark_cancelled(job_id)),
    ]
    for _ in range(5):
        job_id = _running(store)
        racers = [enders[i % len(enders)] for i in range(8)]
        wins = _race([lambda end=end, job_id=job_id: end(job_id) for _, end in racers])
        assert len(wins) == 1
        assert store.get(job_id).status == racers[wins[0]][0]


def test_late_writers_never_reopen_a_finished_job(store: JobStore) -> None:
    """Workers, reapers and cancel requests hammering one job: once final, it stays exactly as it ended."""
    job_id = _running(store, total_steps=100)
    barrier = threading.Barrier(8)
    observed_final: list[tuple] = []
    errors: list[BaseException] = []

    def snapshot() -> tuple:
        job = store.get(job_id)
        return job.status, job.step, job.finished_at, job.result, job.error

    def writer(index: int) -> None:
        try:
            barrier.wait()
            for step in range(30):
                action = (index + step) % 6
                if action == 0:
                    store.report_progress(job_id, step, 100)
                elif action == 1:
                    store.start(job_id, f"worker-{index}", 100)
                elif action == 2:
                    store.request_cancel(job_id)
                elif action == 3 and step > 10:
                    store.succeed(job_id, RESULT, {})
                elif action == 4 and step > 10:
                    store.fail(job_id, "lost", "worker died")
                elif action == 5 and step > 10:
                    store.mark_cancelled(job_id)
                state = snapshot()
                if state[0] in FINAL_STATUSES:
                    observed_final.append(state)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    final = snapshot()
    assert final[0] in FINAL_STATUSES
    assert observed_final and all(state == final for state in observed_final)


def test_redis_index_of_unfinished_jobs_and_ttl(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    store = RedisJobStore(redis_url, key_prefix=prefix, finished_job_ttl_s=600)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        unfinished = f"{prefix}jobs:unfinished"
        queued = store.create("video", {})
        running = _running(store)
        assert client.zscore(unfinished, queued.id) == pytest.approx(queued.created_at)
        assert client.zrange(unfinished, 0, -1) == [queued.id, running]  # oldest first
        assert client.ttl(f"{prefix}job:{running}") == -1  # unfinished jobs never expire

        store.request_cancel(running)  # only flagged: still unfinished
        assert client.zscore(unfinished, running) is not None
        store.mark_cancelled(running)
        store.fail(queued.id, "x", "y")
        assert client.zcard(unfinished) == 0
        for job_id in (queued.id, running):
            assert 0 < client.ttl(f"{prefix}job:{job_id}") <= 600
    finally:
        store.close()
        client.close()


def test_redis_unreachable_fails_fast() -> None:
    store = RedisJobStore(f"redis://:secret@127.0.0.1:{_free_port()}/0")  # nothing listens there
    began = time.monotonic()
    calls = (store.ping, lambda: store.create("video", {}), lambda: store.get("x"), lambda: store.fail("x", "a", "b"))
    for call in calls:
        with pytest.raises(ServiceNotReadyError) as caught:
            call()
        assert "127.0.0.1" in caught.value.message and "secret" not in caught.value.message
    assert time.monotonic() - began < 5.0
    store.close()
