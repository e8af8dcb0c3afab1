"""A Redis restart (SIGKILL, AOF on) while jobs are queued and running: nothing is lost.

Two real ``VideoGenerator`` workers with stand-in pipelines run six jobs from a private redis-server started
with ``appendonly yes`` and ``appendfsync always`` (the settings of k8s/redis.yaml). When two jobs are
running and four are queued, the server is killed, left down for a few seconds and started again on the
same files. The workers ride it out through their store retry window; every job must succeed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import redis

from deployments.config import JobQueueConfig
from deployments.jobs.redis_store import RedisJobStore
from deployments.jobs.results import ResultFiles
from tests.test_fencing import StandInVideo, _new_video_job, _video_worker

DOWN_S = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(binary: str, port: int, workdir) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SlowStandIn(StandInVideo):
    def __call__(self, request, progress=None, should_cancel=None):
        def slow_progress(step, total):
            time.sleep(0.4)
            progress(step, total)

        return super().__call__(request, slow_progress, should_cancel)


@pytest.mark.slow
def test_a_redis_restart_with_jobs_queued_and_running_loses_nothing(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed: apt-get install redis-server")
    port = _free_port()
    server = _start(binary, port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    queue = JobQueueConfig(poll_interval_s=0.05, heartbeat_interval_s=0.5, lease_s=30, store_retry_window_s=30)
    results = ResultFiles(tmp_path / "results")
    store = RedisJobStore(url, socket_timeout_s=1.0)
    workers = []
    try:
        job_ids = [_new_video_job(store, results) for _ in range(6)]
        for _ in range(2):
            worker = _video_worker(RedisJobStore(url, socket_timeout_s=1.0), results, SlowStandIn(80), tmp_path)
            worker.queue = queue
            worker.worker.queue = queue
            worker.worker.start()
            workers.append(worker)
        deadline = time.monotonic() + 30
        while sum(store.get(job_id).status == "running" for job_id in job_ids) < 2:
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        before = {job_id: store.get(job_id).status for job_id in job_ids}
        server.kill()
        server.wait()
        killed = time.monotonic()
        time.sleep(DOWN_S)
        server = _start(binary, port, tmp_path)
        back = time.monotonic() - killed
        after = {job_id: store.get(job_id).status for job_id in job_ids}
        assert after == before or set(after.values()) <= {"queued", "running", "succeeded"}  # nothing forgotten
        deadline = time.monotonic() + 120
        while not all(store.get(job_id).is_final for job_id in job_ids):
            assert time.monotonic() < deadline, {job_id: store.get(job_id).status for job_id in job_ids}
            time.sleep(0.1)
        done = time.monotonic() - killed
        jobs = [store.get(job_id) for job_id in job_ids]
        assert [job.status for job in jobs] == ["succeeded"] * 6, [(job.status, job.error) for job in jobs]
        for job in jobs:
            assert results.result_path(job.id, job.attempts, "mp4").exists()
        print(
            f"redis killed with {list(before.values()).count('running')} running and "
            f"{list(before.values()).count('queued')} queued jobs: back after {back:.1f} s, all 6 succeeded "
            f"{done:.1f} s after the kill, attempts {[job.attempts for job in jobs]}, 0 lost"
        )
    finally:
        for worker in workers:
            worker.worker.stop(30)
        server.kill()
        server.wait()
