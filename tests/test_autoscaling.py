"""Queue-aware autoscaling: the policy the Serve controller runs for job-pulling deployments."""

import asyncio
from types import SimpleNamespace

import pytest

from deployments.autoscaling import QueueDepthPolicy, desired_replicas
from deployments.builder import ray_options
from deployments.config import AutoscalingConfig, DeploymentOptions, JobStoreConfig
from deployments.jobs.sqlite_store import SQLiteJobStore


@pytest.mark.parametrize(
    ("active", "per_replica", "expected"),
    [(0, 1, 1), (1, 1, 1), (3, 1, 3), (9, 1, 4), (5, 2, 3), (0, 2, 1)],
)
def test_desired_replicas(active, per_replica, expected):
    assert desired_replicas(active, per_replica, current=1, minimum=1, maximum=4) == expected


def test_policy_reads_queued_and_running_jobs_from_the_store(tmp_path):
    store_config = JobStoreConfig(sqlite_path=str(tmp_path / "jobs.sqlite3"), results_dir=str(tmp_path / "r"))
    store = SQLiteJobStore(store_config.sqlite_path)
    for _ in range(3):
        store.create("video", {})
    store.create("background", {})
    store.claim_next("video", "w1")  # one running, two queued
    policy = QueueDepthPolicy(store_config.model_dump(), "video", jobs_per_replica=1.0, poll_interval_s=0.0)
    ctx = SimpleNamespace(current_num_replicas=1, capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=8)

    async def ask_twice():
        policy(ctx)  # starts the poll off the event loop
        await asyncio.sleep(0.3)
        return policy(ctx)

    target, state = asyncio.run(ask_twice())
    assert state == {"active_jobs": 3} and target == 3


def test_queued_jobs_scaling_becomes_a_ray_policy(tmp_path):
    store = JobStoreConfig(sqlite_path=str(tmp_path / "j.sqlite3"))
    options = DeploymentOptions(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=4, scale_on="queued_jobs"))
    autoscaling = ray_options(options, job_kind="video", store=store)["autoscaling_config"]
    assert autoscaling["policy"]["policy_function"] == "deployments.autoscaling:QueueDepthPolicy"
    assert autoscaling["policy"]["policy_kwargs"]["kind"] == "video"
    assert "scale_on" not in autoscaling
    from ray.serve.config import AutoscalingConfig as RayAutoscalingConfig

    RayAutoscalingConfig(**autoscaling)  # Ray accepts it
    with pytest.raises(ValueError):
        ray_options(options)  # not for request-driven deployments
