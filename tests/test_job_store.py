"""The JobStore contract, run against every backend: SQLite on a temp file and Redis on a private redis-server."""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
import redis

from deployments.errors import JobNotFoundError, ServiceNotReadyError
from deployments.jobs.redis_store import RedisJobStore
from deployments.jobs.sqlite_store import SQLiteJobStore
from deployments.jobs.store import FINAL_STATUSES, JobStore

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

        def factory(**options) -> JobStore:
            return SQLiteJobStore(path, **options)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test:{uuid.uuid4().hex[:12]}:"  # one server for the session: tests must not see each other's jobs

        def factory(**options) -> JobStore:
            store = RedisJobStore(url, key_prefix=prefix, **options)
            opened.append(store)
            return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], JobStore]) -> JobStore:
    return open_store()


def _running(store: JobStore, total_steps: int = 10, worker: str = "worker-1") -> str:
    """A new video job claimed by ``worker`` (callers must not leave older video jobs queued)."""
    job = store.create("video", {"prompt": "a cat"})
    claimed = store.claim_next("video", worker)
    assert claimed is not None and claimed.id == job.id
    store.report_progress(job.id, 0, total_steps)
    return job.id


def _let_heartbeats_age() -> None:
    """Makes every heartbeat so far strictly older than "now", so ``reap_stale(0.0, ...)`` sees it as stale."""
    time.sleep(0.01)


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
    assert reread.attempts == 0 and reread.heartbeat_at is None


def test_get_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        store.get("does-not-exist")
    assert caught.value.field == "job_id"
    assert "does-not-exist" in caught.value.message


def test_updates_to_unknown_job_create_nothing(store: JobStore) -> None:
    assert not store.heartbeat("ghost", "w")
    store.report_progress("ghost", 1, 5)
    store.report_progress("ghost", 1, 5, worker="w")
    assert not store.succeed("ghost", RESULT, {})
    assert not store.succeed("ghost", RESULT, {}, worker="w")
    assert not store.fail("ghost", "x", "y")
    assert not store.mark_cancelled("ghost")
    assert not store.is_cancel_requested("ghost")
    with pytest.raises(JobNotFoundError):
        store.get("ghost")
    assert store.claim_next("video", "w") is None
    assert store.reap_stale(0.0, 3) == []
    assert store.queue_depth("video") == 0


def test_claim_takes_the_oldest_queued_job_of_its_kind(open_store: Callable[[], JobStore]) -> None:
    store = open_store()
    first_video = store.create("video", {"n": 1})
    background = store.create("background", {"n": 2})
    second_video = store.create("video", {"n": 3})

    before = time.time()
    claimed = open_store().claim_next("video", "gpu-a")  # another replica's instance
    assert claimed is not None and claimed.id == first_video.id
    assert claimed.status == "running" and claimed.worker == "gpu-a" and claimed.attempts == 1
    assert claimed.params == {"n": 1} and claimed.kind == "video"
    assert claimed.started_at is not None and claimed.started_at >= before
    assert claimed.heartbeat_at == claimed.started_at
    assert (claimed.step, claimed.progress) == (0, 0.0)
    assert store.get(first_video.id) == claimed  # what the worker got is what is stored

    assert store.claim_next("video", "gpu-a").id == second_video.id  # not the older background job
    assert store.claim_next("video", "gpu-a") is None
    assert store.claim_next("background", "gpu-b").id == background.id
    assert store.claim_next("background", "gpu-b") is None
    assert store.claim_next("no-such-kind", "gpu-b") is None


def test_claim_never_takes_a_job_that_left_the_queue(store: JobStore) -> None:
    cancelled = store.create("video", {})
    failed = store.create("video", {})
    waiting = store.create("video", {})
    store.request_cancel(cancelled.id)
    store.fail(failed.id, "invalid_input", "bad image")

    claimed = store.claim_next("video", "gpu-a")
    assert claimed is not None and claimed.id == waiting.id
    assert store.claim_next("video", "gpu-a") is None
    assert store.get(cancelled.id).status == "cancelled"
    assert store.get(failed.id).status == "failed" and store.get(failed.id).attempts == 0


def test_claim_ends_a_queued_job_flagged_for_cancel(store: JobStore) -> None:
    """Unreachable through the API (request_cancel ends queued jobs at once), so the flag is set by hand."""
    flagged = store.create("video", {})
    waiting = store.create("video", {})
    if isinstance(store, SQLiteJobStore):
        with closing(sqlite3.connect(store.path)) as db, db:
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (flagged.id,))
    else:
        assert isinstance(store, RedisJobStore)
        store._redis.hset(f"{store.key_prefix}job:{flagged.id}", "cancel_requested", "1")
    assert store.get(flagged.id).status == "queued"

    assert store.claim_next("video", "gpu-a").id == waiting.id
    ended = store.get(flagged.id)
    assert ended.status == "cancelled" and ended.finished_at is not None and ended.worker is None
    assert store.queue_depth("video") == 0


def test_racing_workers_claim_each_job_exactly_once(open_store: Callable[[], JobStore]) -> None:
    store = open_store()
    created = [store.create("video", {"n": n}).id for n in range(24)]
    store.create("background", {})  # must not be taken by video workers
    workers = [open_store() for _ in range(8)]  # one instance per replica
    barrier = threading.Barrier(len(workers))
    claims: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def drain(index: int) -> None:
        name = f"gpu-{index}"
        mine: list[str] = []
        try:
            barrier.wait()
            while (job := workers[index].claim_next("video", name)) is not None:
                mine.append(job.id)
        except BaseException as exc:  # re-raised below: an exception in a thread would pass silently
            errors.append(exc)
        claims[name] = mine

    threads = [threading.Thread(target=drain, args=(index,)) for index in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    everything = [job_id for mine in claims.values() for job_id in mine]
    assert sorted(everything) == sorted(created)  # none lost, none twice
    for name, mine in claims.items():
        for job_id in mine:
            job = store.get(job_id)
            assert (job.status, job.worker, job.attempts) == ("running", name, 1)
    assert store.queue_depth("video") == 0 and store.queue_depth("background") == 1


def test_heartbeat_only_for_the_owning_worker(store: JobStore) -> None:
    queued = store.create("video", {})
    assert not store.heartbeat(queued.id, "gpu-a")
    claimed = store.claim_next("video", "gpu-a")
    time.sleep(0.01)
    assert store.heartbeat(queued.id, "gpu-a")
    renewed = store.get(queued.id).heartbeat_at
    assert renewed is not None and renewed > claimed.heartbeat_at
    assert store.get(queued.id).started_at == claimed.started_at

    assert not store.heartbeat(queued.id, "gpu-b")
    assert store.get(queued.id).heartbeat_at == renewed

    store.request_cancel(queued.id)  # only flagged: the worker keeps its lease until it notices
    assert store.heartbeat(queued.id, "gpu-a")
    store.mark_cancelled(queued.id)
    assert not store.heartbeat(queued.id, "gpu-a")  # ended: the worker must stop


def test_reap_requeues_then_fails_after_max_attempts(store: JobStore) -> None:
    job = store.create("video", {"prompt": "x"})
    first = store.claim_next("video", "gpu-a")
    store.report_progress(job.id, 4, 10)
    _let_heartbeats_age()

    assert store.reap_stale(0.0, 2) == [("requeued", job.id)]
    requeued = store.get(job.id)
    assert requeued.status == "queued" and not requeued.is_final
    assert requeued.worker is None and requeued.started_at is None and requeued.heartbeat_at is None
    assert (requeued.step, requeued.progress) == (0, 0.0)
    assert requeued.attempts == 1 and requeued.created_at == job.created_at
    assert requeued.error is None and requeued.finished_at is None
    assert store.queue_depth("video") == 1
    assert store.reap_stale(0.0, 2) == []  # a queued job is not the reaper's business

    second = store.claim_next("video", "gpu-b")
    assert second.id == job.id and second.attempts == 2 and second.worker == "gpu-b"
    assert second.started_at > first.started_at
    _let_heartbeats_age()
    assert store.reap_stale(0.0, 2) == [("failed", job.id)]
    failed = store.get(job.id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error == {"type": "worker_lost", "message": "the worker stopped responding 2 time(s); giving up"}
    assert store.queue_depth("video") == 0
    assert store.claim_next("video", "gpu-c") is None
    assert store.reap_stale(0.0, 2) == []
    assert store.get(job.id) == failed


def test_reap_spares_jobs_whose_worker_heartbeats(store: JobStore) -> None:
    alive = store.create("video", {})
    silent = store.create("video", {})
    store.claim_next("video", "gpu-a")
    store.claim_next("video", "gpu-b")
    assert store.reap_stale(60.0, 3) == []  # both fresh
    time.sleep(0.4)
    assert store.heartbeat(alive.id, "gpu-a")
    assert store.reap_stale(0.25, 3) == [("requeued", silent.id)]
    assert store.get(alive.id).status == "running" and store.get(alive.id).worker == "gpu-a"


def test_reap_max_attempts_one_fails_at_once(store: JobStore) -> None:
    job = store.create("video", {})
    store.claim_next("video", "gpu-a")
    _let_heartbeats_age()
    assert store.reap_stale(0.0, 1) == [("failed", job.id)]
    assert store.get(job.id).error["message"] == "the worker stopped responding 1 time(s); giving up"
    with pytest.raises(ValueError):
        store.reap_stale(0.0, 0)


def test_reaped_job_keeps_its_place_in_the_queue(store: JobStore) -> None:
    oldest = store.create("video", {})
    middle = store.create("video", {})
    assert store.claim_next("video", "gpu-a").id == oldest.id
    newest = store.create("video", {})
    _let_heartbeats_age()
    assert store.reap_stale(0.0, 3) == [("requeued", oldest.id)]
    assert store.queue_depth("video") == 3
    assert [store.claim_next("video", "gpu-b").id for _ in range(3)] == [oldest.id, middle.id, newest.id]
    assert store.get(oldest.id).attempts == 2 and store.get(middle.id).attempts == 1


def test_reap_reports_in_heartbeat_order(store: JobStore) -> None:
    jobs = [store.create("video", {}).id for _ in range(3)]
    for index in range(3):
        store.claim_next("video", f"gpu-{index}")
        time.sleep(0.002)
    store.heartbeat(jobs[0], "gpu-0")  # now the most recent heartbeat
    _let_heartbeats_age()
    assert store.reap_stale(0.0, 3) == [("requeued", jobs[1]), ("requeued", jobs[2]), ("requeued", jobs[0])]


def test_old_worker_cannot_touch_a_reassigned_job(store: JobStore) -> None:
    job = store.create("video", {})
    store.claim_next("video", "gpu-old")
    store.report_progress(job.id, 3, 10, worker="gpu-old")
    assert store.get(job.id).step == 3
    _let_heartbeats_age()
    store.reap_stale(0.0, 3)
    assert store.claim_next("video", "gpu-new").id == job.id
    store.report_progress(job.id, 1, 20, worker="gpu-new")

    store.report_progress(job.id, 9, 10, worker="gpu-old")
    assert not store.succeed(job.id, {**RESULT, "path": "/stale.mp4"}, {}, worker="gpu-old")
    assert not store.fail(job.id, "internal_error", "oom", worker="gpu-old")
    assert not store.mark_cancelled(job.id, worker="gpu-old")
    assert not store.heartbeat(job.id, "gpu-old")
    current = store.get(job.id)
    assert (current.status, current.worker, current.step, current.total_steps) == ("running", "gpu-new", 1, 20)

    assert store.succeed(job.id, RESULT, {"total": 1.0}, worker="gpu-new")
    done = store.get(job.id)
    assert done.status == "succeeded" and done.result == RESULT and done.step == 20


def test_worker_fenced_writes_do_not_apply_while_queued(store: JobStore) -> None:
    """A requeued job has no worker, so its old worker cannot end it before someone claims it again."""
    job = store.create("video", {})
    store.claim_next("video", "gpu-old")
    _let_heartbeats_age()
    store.reap_stale(0.0, 3)
    assert not store.succeed(job.id, RESULT, {}, worker="gpu-old")
    assert not store.fail(job.id, "internal_error", "oom", worker="gpu-old")
    assert not store.mark_cancelled(job.id, worker="gpu-old")
    assert store.get(job.id).status == "queued"
    assert store.queue_depth("video") == 1


def test_worker_fenced_fail_and_cancel_by_the_owner(store: JobStore) -> None:
    failing = _running(store, worker="gpu-a")
    assert store.fail(failing, "internal_error", "oom", worker="gpu-a")
    assert store.get(failing).error == {"type": "internal_error", "message": "oom"}
    cancelling = _running(store, worker="gpu-a")
    store.request_cancel(cancelling)
    assert store.mark_cancelled(cancelling, worker="gpu-a")
    assert store.get(cancelling).status == "cancelled"


@pytest.mark.parametrize("max_attempts", [3, 1])
def test_stale_job_with_cancel_requested_is_cancelled(store: JobStore, max_attempts: int) -> None:
    """Re-running or failing it would be wrong: the user asked to stop it, so the lost worker's job ends there."""
    job_id = _running(store)
    store.request_cancel(job_id)
    _let_heartbeats_age()
    assert store.reap_stale(0.0, max_attempts) == [("cancelled", job_id)]
    cancelled = store.get(job_id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None and cancelled.error is None
    assert store.queue_depth("video") == 0
    assert store.claim_next("video", "gpu-b") is None


def test_queue_depth_counts_queued_jobs_per_kind(store: JobStore) -> None:
    videos = [store.create("video", {}).id for _ in range(4)]
    store.create("background", {})
    assert (store.queue_depth("video"), store.queue_depth("background")) == (4, 1)
    store.claim_next("video", "gpu-a")
    assert store.queue_depth("video") == 3
    store.request_cancel(videos[1])
    store.fail(videos[2], "invalid_input", "bad")
    store.mark_cancelled(videos[3])
    assert store.queue_depth("video") == 0
    _let_heartbeats_age()
    store.reap_stale(0.0, 3)
    assert store.queue_depth("video") == 1
    store.claim_next("video", "gpu-b")
    store.succeed(videos[0], RESULT, {})
    assert (store.queue_depth("video"), store.queue_depth("background")) == (0, 1)
    assert store.queue_depth("unknown") == 0


def test_progress_recorded_only_while_running(store: JobStore) -> None:
    job = store.create("video", {})
    store.report_progress(job.id, 3, 10)
    assert store.get(job.id).step == 0  # not running yet

    store.claim_next("video", "worker-1")
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

    store.claim_next("video", "worker-1")
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

    assert queued["attempts"] == 0 and "heartbeat_at" not in queued

    store.claim_next("video", "worker-1")
    store.report_progress(job.id, 1, 3)
    running = store.get(job.id).public()
    assert running["status"] == "running" and running["attempts"] == 1
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
        ("succeeded", lambda job_id: store.succeed(job_id, RESULT, {}, worker="worker-1")),
        ("failed", lambda job_id: store.fail(job_id, "lost", "worker died")),
        ("cancelled", lambda job_id: store.mark_cancelled(job_id)),
        ("failed", lambda job_id: store.reap_stale(0.0, 1) == [("failed", job_id)]),  # the reaper
    ]
    for _ in range(5):
        job_id = _running(store)
        _let_heartbeats_age()
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
                    store.claim_next("video", f"worker-{index}")  # nothing else is queued
                    store.heartbeat(job_id, f"worker-{index}")
                    if step > 10:
                        store.reap_stale(0.0, 1)  # the job was claimed once: reaping it fails it
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
    store = RedisJobStore(redis_url, key_prefix=prefix, retention_s=600)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        unfinished = f"{prefix}jobs:unfinished"
        running = _running(store)
        queued = store.create("video", {})
        assert client.zscore(unfinished, queued.id) == pytest.approx(queued.created_at)
        assert client.zrange(unfinished, 0, -1) == [running, queued.id]  # oldest first
        assert client.ttl(f"{prefix}job:{running}") == -1  # unfinished jobs never expire

        store.request_cancel(running)  # only flagged: still unfinished
        assert client.zscore(unfinished, running) is not None
        store.mark_cancelled(running)
        store.fail(queued.id, "x", "y")
        assert client.zcard(unfinished) == 0
        for job_id in (queued.id, running):
            assert 0 < client.ttl(f"{prefix}job:{job_id}") <= 600

        reaped = store.create("video", {})
        store.claim_next("video", "gpu-a")
        _let_heartbeats_age()
        store.reap_stale(0.0, 1)
        assert client.zcard(unfinished) == 0
        assert 0 < client.ttl(f"{prefix}job:{reaped.id}") <= 600
    finally:
        store.close()
        client.close()


def test_redis_queue_and_running_sets(redis_url: str) -> None:
    """The per-kind queue an autoscaler reads, and the heartbeat-scored set the reaper reads, stay exact."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    store = RedisJobStore(redis_url, key_prefix=prefix)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        queue, running = store.queue_key("video"), f"{prefix}jobs:running"
        assert queue == f"{prefix}queue:video" and store.queue_key("background") == f"{prefix}queue:background"
        first, second = store.create("video", {}), store.create("video", {})
        background = store.create("background", {})
        in_order = [(first.id, first.created_at), (second.id, second.created_at)]
        assert client.zrange(queue, 0, -1, withscores=True) == in_order
        assert client.zrange(store.queue_key("background"), 0, -1) == [background.id]

        claimed = store.claim_next("video", "gpu-a")
        assert client.zrange(queue, 0, -1) == [second.id]
        assert client.zscore(running, first.id) == claimed.heartbeat_at
        time.sleep(0.01)
        store.heartbeat(first.id, "gpu-a")
        assert client.zscore(running, first.id) == store.get(first.id).heartbeat_at > claimed.heartbeat_at

        _let_heartbeats_age()
        store.reap_stale(0.0, 3)
        assert client.zrange(queue, 0, -1, withscores=True) == in_order  # back in its old place
        assert client.zcard(running) == 0

        store.claim_next("video", "gpu-a")
        store.succeed(first.id, RESULT, {})
        store.request_cancel(second.id)
        store.fail(background.id, "x", "y")
        assert client.zcard(queue) == client.zcard(running) == client.zcard(store.queue_key("background")) == 0
    finally:
        store.close()
        client.close()


def test_redis_claim_skips_dangling_queue_entries(redis_url: str) -> None:
    """An entry whose hash was deleted by hand (or is no longer queued) is dropped, not handed out."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    store = RedisJobStore(redis_url, key_prefix=prefix)
    try:
        gone, real = store.create("video", {}), store.create("video", {})
        store._redis.delete(f"{prefix}job:{gone.id}")
        store._redis.zadd(store.queue_key("video"), {"never-existed": 0.0})
        assert store.claim_next("video", "gpu-a").id == real.id
        # entries only in the kind's queue (no tenant queue) are looked at once the tenant queues are empty
        assert store.claim_next("video", "gpu-a") is None
        assert store.queue_depth("video") == 0
    finally:
        store.close()


def test_redis_reads_hashes_written_before_the_queue(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    store = RedisJobStore(redis_url, key_prefix=prefix)
    try:
        job = store.create("video", {})
        store._redis.hdel(f"{prefix}job:{job.id}", "attempts")
        assert store.get(job.id).attempts == 0
        assert store.claim_next("video", "gpu-a").attempts == 1
    finally:
        store.close()


def test_sqlite_migrates_a_file_with_the_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    created = time.time() - 100
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            """CREATE TABLE jobs (
                id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
                progress REAL NOT NULL DEFAULT 0, step INTEGER NOT NULL DEFAULT 0,
                total_steps INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,
                finished_at REAL, params TEXT NOT NULL, error TEXT, result TEXT,
                cancel_requested INTEGER NOT NULL DEFAULT 0, worker TEXT, timings TEXT NOT NULL DEFAULT '{}'
            )"""
        )
        db.execute("CREATE INDEX jobs_status ON jobs (status)")
        db.execute(
            "INSERT INTO jobs (id, kind, status, created_at, params) VALUES ('old-queued', 'video', 'queued', ?, '{}')",
            (created,),
        )
        db.execute(
            "INSERT INTO jobs (id, kind, status, created_at, started_at, worker, params, step, total_steps, progress) "
            "VALUES ('old-running', 'video', 'running', ?, ?, 'dead-replica', '{}', 5, 10, 0.5)",
            (created - 1, created + 1),
        )

    store = SQLiteJobStore(path)
    with closing(sqlite3.connect(path)) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        indexes = {row[1] for row in db.execute("PRAGMA index_list(jobs)")}
    assert {"attempts", "heartbeat_at"} <= columns and "jobs_queue" in indexes
    legacy_queued = store.get("old-queued")
    assert (legacy_queued.attempts, legacy_queued.heartbeat_at) == (0, None)
    # A job a pre-queue replica left running gets a lease dated from its start, so the reaper can settle it.
    legacy_running = store.get("old-running")
    assert (legacy_running.attempts, legacy_running.heartbeat_at) == (1, created + 1)
    assert store.reap_stale(30.0, 3) == [("requeued", "old-running")]

    assert SQLiteJobStore(path).queue_depth("video") == 2  # reopening does not migrate again
    assert store.claim_next("video", "gpu-a").id == "old-running"  # older: it keeps its place
    assert store.claim_next("video", "gpu-a").id == "old-queued"
    new = store.create("video", {"fresh": True})
    assert store.get(new.id).attempts == 0


def test_redis_unreachable_fails_fast() -> None:
    store = RedisJobStore(f"redis://:secret@127.0.0.1:{_free_port()}/0")  # nothing listens there
    began = time.monotonic()
    calls = (
        store.ping,
        lambda: store.create("video", {}),
        lambda: store.get("x"),
        lambda: store.fail("x", "a", "b"),
        lambda: store.claim_next("video", "w"),
        lambda: store.heartbeat("x", "w"),
        lambda: store.reap_stale(30.0, 3),
        lambda: store.queue_depth("video"),
    )
    for call in calls:
        with pytest.raises(ServiceNotReadyError) as caught:
            call()
        assert "127.0.0.1" in caught.value.message and "secret" not in caught.value.message
    assert time.monotonic() - began < 5.0
    store.close()
