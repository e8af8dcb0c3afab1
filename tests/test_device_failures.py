"""A device error takes the replica out of service and sends the job to another one; twice, and it fails.

The replicas are real ``VideoGenerator`` shims over one store (both backends) with a stand-in pipeline that
raises the errors torch raises after a GPU fault.
"""

from __future__ import annotations

import pytest
import torch

from deployments.config import JobQueueConfig, JobStoreConfig, VideoGeneratorConfig
from deployments.jobs.results import ResultFiles
from deployments.video_generator import VideoGenerator
from pipelines.common.device_errors import is_device_failure
from pipelines.common.errors import InvalidInputError
from pipelines.video.config import VideoModelConfig
from tests.test_fencing import StandInVideo, _new_video_job
from tests.test_fencing import store as store  # noqa: F401 - the two-backend store fixture
from tests.test_job_store import redis_url  # noqa: F401


class FailingDevice:
    def __init__(self, error: BaseException) -> None:
        self.error, self.calls = error, 0

    def __call__(self, request, progress=None, should_cancel=None):
        self.calls += 1
        raise self.error


def _replica(job_store, results, pipeline, tmp_path) -> VideoGenerator:
    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "unused.sqlite3"), results_dir=str(results.root))
    return VideoGenerator(
        VideoGeneratorConfig(model=VideoModelConfig(path="unused")),
        store_config,
        JobQueueConfig(max_attempts=2),
        pipeline=pipeline,
        store=job_store,
        results=results,
        start_worker=False,
    )


def test_a_device_error_requeues_the_job_and_marks_the_replica_unhealthy(store, tmp_path):  # noqa: F811
    results = ResultFiles(tmp_path / "results")
    job_id = _new_video_job(store, results)
    first = _replica(store, results, FailingDevice(torch.OutOfMemoryError("CUDA out of memory")), tmp_path)
    first.run_job(store.claim_next("video", "replica-1"), "replica-1")

    job = store.get(job_id)
    assert job.status == "queued" and job.error is None and job.worker is None  # back in the queue, not failed
    with pytest.raises(RuntimeError, match="device error"):
        first.check_health()  # Ray replaces the replica
    assert first.worker._stopping.is_set()  # and it claims nothing more meanwhile

    second = _replica(store, results, StandInVideo(77), tmp_path)
    claim = store.claim_next("video", "replica-2")
    assert claim.id == job_id and claim.attempts == 2
    second.run_job(claim, "replica-2")
    assert store.get(job_id).status == "succeeded"
    assert second.unhealthy is None


def test_a_job_that_breaks_the_device_on_every_attempt_fails_as_device_error(store, tmp_path):  # noqa: F811
    results = ResultFiles(tmp_path / "results")
    job_id = _new_video_job(store, results)
    illegal = torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
    for replica in ("replica-1", "replica-2"):
        _replica(store, results, FailingDevice(illegal), tmp_path).run_job(store.claim_next("video", replica), replica)
    job = store.get(job_id)
    assert job.status == "failed" and job.error["type"] == "device_error"
    assert "AcceleratorError" in job.error["message"] and "2 attempt(s)" in job.error["message"]
    assert store.claim_next("video", "replica-3") is None


def test_ordinary_errors_still_fail_the_job_and_keep_the_replica(store, tmp_path):  # noqa: F811
    results = ResultFiles(tmp_path / "results")
    job_id = _new_video_job(store, results)
    replica = _replica(store, results, FailingDevice(ValueError("a bug")), tmp_path)
    replica.run_job(store.claim_next("video", "replica-1"), "replica-1")
    assert store.get(job_id).error["type"] == "internal_error"
    assert replica.unhealthy is None and not replica.worker._stopping.is_set()


def test_device_failures_are_told_apart_from_request_errors():
    assert is_device_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_device_failure(RuntimeError("CUDA error: device-side assert triggered"))
    assert is_device_failure(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling cublasGemmEx"))
    try:
        try:
            raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")
        except RuntimeError as inner:
            raise ValueError("decode failed") from inner
    except ValueError as wrapped:
        assert is_device_failure(wrapped)
    assert not is_device_failure(RuntimeError("shape mismatch in matmul"))
    assert not is_device_failure(InvalidInputError("steps must be 4-12"))


def test_release_is_fenced_and_lets_a_cancel_win(store):  # noqa: F811
    job = store.create("video", {})
    store.claim_next("video", "replica-1")
    assert store.release(job.id, "replica-2", "device_error", "x", 3) == "lost"  # not its claim
    assert store.get(job.id).status == "running"
    store.request_cancel(job.id)
    assert store.release(job.id, "replica-1", "device_error", "x", 3) == "cancelled"
    assert store.get(job.id).status == "cancelled"
    assert store.release(job.id, "replica-1", "device_error", "x", 3) == "lost"  # already final
