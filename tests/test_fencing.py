"""A worker that lost its claim (paused past its lease) never touches the winner's job or result.

Two workers on one store, both backends: worker A claims a job and stalls; the reaper re-queues it; worker B
claims it and succeeds; then A resumes. Workers are the real model shims (``VideoGenerator``,
``BackgroundGenerator``) with stand-in pipelines, so the run, progress, publish and outcome code is the
production code.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from deployments.background_generator import BackgroundGenerator
from deployments.config import BackgroundGeneratorConfig, JobStoreConfig, VideoGeneratorConfig
from deployments.jobs.redis_store import RedisJobStore
from deployments.jobs.results import ResultFiles
from deployments.jobs.sqlite_store import SQLiteJobStore
from deployments.segmenter import SegmenterDeployment
from deployments.video_generator import VideoGenerator
from pipelines.background.sdxl import BackgroundModelConfig
from pipelines.background.segmentation.chain import SegmentationConfig
from pipelines.common.errors import JobCancelledError
from pipelines.common.images import encode_png
from pipelines.video.config import VideoModelConfig
from tests.images import gradient_image
from tests.test_job_store import redis_url  # noqa: F401 - a private redis-server for the Redis backend


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SQLiteJobStore(str(tmp_path / "jobs.sqlite3"))
        return
    url = request.getfixturevalue("redis_url")
    opened = RedisJobStore(url, key_prefix=f"fencing-{time.monotonic_ns()}:")
    yield opened
    opened.close()


class StandInVideo:
    """Renders a fixed clip; optionally ignores the cancel check, like a worker stalled inside a stage."""

    def __init__(self, value: int, checks_cancel: bool = True) -> None:
        self.value, self.checks_cancel, self.steps_run = value, checks_cancel, 0

    def __call__(self, request, progress=None, should_cancel=None):
        for step in range(1, request.steps + 1):
            if self.checks_cancel and should_cancel():
                raise JobCancelledError(f"cancelled before step {step}")
            self.steps_run += 1
            progress(step, request.steps)
        frames = np.full((9, 48, 64, 3), self.value, np.uint8)
        return SimpleNamespace(frames=frames, fps=16, timings_s={})


class StandInBackground:
    def __init__(self, checks_cancel: bool = True) -> None:
        self.checks_cancel, self.steps_run = checks_cancel, 0

    def __call__(self, request, progress=None, should_cancel=None):
        for step in range(1, request.steps + 1):
            if self.checks_cancel and should_cancel():
                raise JobCancelledError(f"cancelled after step {step - 1}")
            self.steps_run += 1
            progress(step, request.steps)
        image = Image.fromarray(np.full((request.height, request.width, 3), 40, np.uint8))
        return SimpleNamespace(image=image, timings_s={})


def _stall_past_the_lease(store, job_id: str) -> None:
    time.sleep(0.01)
    assert ("requeued", job_id) in store.reap_stale(lease_s=0.0, max_attempts=5)


def _claim(store, kind: str, worker: str):
    job = store.claim_next(kind, worker)
    assert job is not None and job.worker == worker
    return job


@pytest.fixture
def results(tmp_path) -> ResultFiles:
    return ResultFiles(tmp_path / "results")


def _video_worker(store, results, pipeline, tmp_path) -> VideoGenerator:
    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "unused.sqlite3"), results_dir=str(results.root))
    config = VideoGeneratorConfig(model=VideoModelConfig(path="unused"))
    return VideoGenerator(
        config, store_config, None, pipeline=pipeline, store=store, results=results, start_worker=False
    )


def _new_video_job(store, results) -> str:
    params = {"prompt": "a slow pan", "negative_prompt": "", "duration_s": 0.5, "steps": 4}
    params.update(guidance_scale=1.0, guidance_scale_2=1.0, seed=3)
    job = store.create("video", params)
    results.save_input(job.id, encode_png(gradient_image(64, 48)))
    return job.id


@pytest.mark.parametrize("stale_checks_cancel", [True, False], ids=["stops-at-next-step", "stalled-until-publish"])
def test_a_stale_video_worker_never_touches_the_winners_result(store, results, tmp_path, stale_checks_cancel):
    job_id = _new_video_job(store, results)
    stale_claim = _claim(store, "video", "worker-a")
    _stall_past_the_lease(store, job_id)

    winner_claim = _claim(store, "video", "worker-b")
    assert winner_claim.attempts == stale_claim.attempts + 1
    _video_worker(store, results, StandInVideo(200), tmp_path).run_job(winner_claim, "worker-b")
    won = store.get(job_id)
    assert won.status == "succeeded" and won.worker == "worker-b"
    winner_file = Path(won.result["path"])
    winner_bytes = winner_file.read_bytes()

    stale_pipeline = StandInVideo(10, checks_cancel=stale_checks_cancel)
    _video_worker(store, results, stale_pipeline, tmp_path).run_job(stale_claim, "worker-a")

    after = store.get(job_id)
    assert after.status == "succeeded" and after.worker == "worker-b"
    assert after.result["path"] == str(winner_file) and winner_file.read_bytes() == winner_bytes
    assert after.step == won.step == 4  # the stale worker's progress writes were refused
    stale_file = results.result_path(job_id, stale_claim.attempts, "mp4")
    assert not stale_file.exists()  # it cleaned up after itself
    assert sorted(p.name for p in results.root.iterdir()) == sorted([f"{job_id}.input.png", winner_file.name])
    assert stale_pipeline.steps_run == (0 if stale_checks_cancel else 4)


def test_a_stale_background_worker_never_touches_the_winners_result(store, results, tmp_path):
    segmenter = SegmenterDeployment(SegmentationConfig(enable_birefnet=False, enable_u2net=False))
    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "unused.sqlite3"), results_dir=str(results.root))
    config = BackgroundGeneratorConfig(model=BackgroundModelConfig(path="unused"))

    def worker(pipeline) -> BackgroundGenerator:
        return BackgroundGenerator(
            config,
            store_config,
            None,
            segmenter,
            None,
            pipeline=pipeline,
            store=store,
            results=results,
            start_worker=False,
        )

    image = Image.new("RGB", (96, 64), (235, 235, 235))
    image.paste((30, 60, 160), (30, 14, 66, 64))  # a subject on a plain studio backdrop
    params = {"prompt": "a beach", "negative_prompt": "", "composition": "center", "focus": "person"}
    params.update(feather_px=0, steps=4, guidance_scale=7.5, seed=1, scene_id=None, enrich_prompt=False)
    job_id = store.create("background", params).id
    results.save_input(job_id, encode_png(image))

    stale_claim = _claim(store, "background", "worker-a")
    _stall_past_the_lease(store, job_id)
    winner_claim = _claim(store, "background", "worker-b")
    worker(StandInBackground()).run_job(winner_claim, "worker-b")
    won = store.get(job_id)
    assert won.status == "succeeded", won.error
    winner_bytes = Path(won.result["path"]).read_bytes()

    stale = StandInBackground(checks_cancel=False)  # stalled inside the render, then publishes
    worker(stale).run_job(stale_claim, "worker-a")
    after = store.get(job_id)
    assert after.status == "succeeded" and after.worker == "worker-b"
    assert Path(after.result["path"]).read_bytes() == winner_bytes
    assert not results.result_path(job_id, stale_claim.attempts, "png").exists()


def test_a_cancel_accepted_during_publishing_never_ends_succeeded(store, results, tmp_path):
    """The cancel arrives after the last check inside the pipeline (during decode or export)."""
    job_id = _new_video_job(store, results)
    claim = _claim(store, "video", "worker-a")

    class CancelDuringDecode(StandInVideo):
        def __call__(self, request, progress=None, should_cancel=None):
            result = super().__call__(request, progress, should_cancel)
            store.request_cancel(job_id)  # accepted while the frames are being decoded
            return result

    _video_worker(store, results, CancelDuringDecode(90), tmp_path).run_job(claim, "worker-a")
    job = store.get(job_id)
    assert job.status == "cancelled" and job.result is None
    assert [p.name for p in results.root.iterdir()] == [f"{job_id}.input.png"]


def test_should_stop_is_fenced_to_the_claim(store):
    job = store.create("video", {})
    assert store.should_stop(job.id, "worker-a")  # queued: nobody's claim yet
    _claim(store, "video", "worker-a")
    assert not store.should_stop(job.id, "worker-a")
    assert store.should_stop(job.id, "worker-b")
    store.request_cancel(job.id)
    assert store.should_stop(job.id, "worker-a")
    assert store.should_stop("0" * 32, "worker-a")  # unknown job
