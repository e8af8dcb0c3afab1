"""A job rides out short job-store outages, and fails as ``store_unavailable`` only past the retry window.

Failures are injected into a real SQLite store the way the Redis store reports an unreachable server
(``ServiceNotReadyError``) and the way SQLite reports a locked or failing file (``OperationalError``).
"""

from __future__ import annotations

import sqlite3

import pytest

from deployments.config import JobQueueConfig, JobStoreConfig, VideoGeneratorConfig
from deployments.errors import ServiceNotReadyError, StoreUnavailableError
from deployments.jobs.results import ResultFiles
from deployments.jobs.retrying import MAX_DELAY_S, retry_store
from deployments.jobs.sqlite_store import SQLiteJobStore
from deployments.video_generator import VideoGenerator
from pipelines.common.images import encode_png
from pipelines.video.config import VideoModelConfig
from tests.images import gradient_image
from tests.test_fencing import StandInVideo


class FlakyStore(SQLiteJobStore):
    """Refuses the first ``failures`` calls of each listed method (``None``: every call) as an outage would."""

    def __init__(self, path: str, methods: tuple[str, ...], failures: int | None) -> None:
        super().__init__(path)
        self.remaining = {name: failures for name in methods}
        self.injected = 0

    def _maybe_fail(self, name: str) -> None:
        left = self.remaining.get(name, 0)
        if left is None or left > 0:
            if left is not None:
                self.remaining[name] = left - 1
            self.injected += 1
            error = ServiceNotReadyError if self.injected % 2 else sqlite3.OperationalError
            raise error("injected outage")

    def report_progress(self, *args, **kwargs):
        self._maybe_fail("report_progress")
        return super().report_progress(*args, **kwargs)

    def should_stop(self, *args, **kwargs):
        self._maybe_fail("should_stop")
        return super().should_stop(*args, **kwargs)

    def succeed(self, *args, **kwargs):
        self._maybe_fail("succeed")
        return super().succeed(*args, **kwargs)


def _run_one_job(tmp_path, store: SQLiteJobStore, window_s: float):
    results = ResultFiles(tmp_path / "results")
    params = {"prompt": "a slow pan", "negative_prompt": "", "duration_s": 0.5, "steps": 4, "seed": 3}
    params.update(guidance_scale=1.0, guidance_scale_2=1.0)
    job = store.create("video", params)
    results.save_input(job.id, encode_png(gradient_image(64, 48)))
    claim = store.claim_next("video", "worker-a")
    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "unused.sqlite3"), results_dir=str(results.root))
    generator = VideoGenerator(
        VideoGeneratorConfig(model=VideoModelConfig(path="unused")),
        store_config,
        JobQueueConfig(store_retry_window_s=window_s),
        pipeline=StandInVideo(120),
        store=store,
        results=results,
        start_worker=False,
    )
    generator.run_job(claim, "worker-a")
    return store.get(job.id), results


def test_a_job_survives_store_blips_within_the_window(tmp_path):
    store = FlakyStore(str(tmp_path / "jobs.sqlite3"), ("report_progress", "should_stop", "succeed"), failures=3)
    job, _ = _run_one_job(tmp_path, store, window_s=10.0)
    assert store.injected == 9  # three refused calls of each kind, each retried
    assert job.status == "succeeded" and job.step == 4 and job.error is None


def test_a_store_down_past_the_window_fails_the_job_as_store_unavailable(tmp_path):
    store = FlakyStore(str(tmp_path / "jobs.sqlite3"), ("report_progress",), failures=None)
    job, results = _run_one_job(tmp_path, store, window_s=0.3)
    assert job.status == "failed" and job.error["type"] == "store_unavailable"
    assert "unreachable for more than 0.3 s" in job.error["message"]
    assert [path.name for path in results.root.iterdir()] == [f"{job.id}.input.png"]  # no result left behind


def test_retry_backs_off_exponentially_and_gives_up_past_the_window():
    now, sleeps = [0.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    def down():
        raise ServiceNotReadyError("store down")

    with pytest.raises(StoreUnavailableError, match="recording progress"):
        retry_store(down, window_s=10.0, what="recording progress", sleep=sleep, clock=lambda: now[0])
    assert sleeps[:4] == [0.05, 0.1, 0.2, 0.4] and max(sleeps) == MAX_DELAY_S
    assert sum(sleeps) <= 10.0 < sum(sleeps) + MAX_DELAY_S

    calls = []
    assert retry_store(lambda: calls.append(1) or "ok", window_s=0, what="x") == "ok" and calls == [1]


def test_errors_that_are_not_outages_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        retry_store(broken, window_s=10.0, what="x", sleep=lambda s: None)
    assert calls == [1]
