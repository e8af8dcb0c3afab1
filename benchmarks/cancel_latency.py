"""Cancel latency, wall clock: from the cancel request to the job's `cancelled`, at random points of a render.

A real ``VideoGenerator`` (the embedded default's tiny Wan2.2 model, SQLite store) renders video jobs; each
is cancelled a random time after it started running, through the store exactly as ``POST .../cancel`` does.
The claim to check: the latency is at most one denoising step or one encode/decode stage, so it is printed
beside the longest stage of an uncancelled run of the same job.

    .venv/bin/python benchmarks/cancel_latency.py --jobs 12 --duration 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deployments.config import JobQueueConfig, JobStoreConfig, load_app_config  # noqa: E402
from deployments.jobs.results import ResultFiles  # noqa: E402
from deployments.jobs.sqlite_store import SQLiteJobStore  # noqa: E402
from deployments.video_generator import VideoGenerator  # noqa: E402
from pipelines.common.images import encode_png  # noqa: E402


def _photo():
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:480, 0:832]
    return Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype("uint8"))


def _params(duration_s: float, seed: int) -> dict:
    return {
        "prompt": "a slow pan across the room",
        "negative_prompt": "",
        "duration_s": duration_s,
        "steps": 4,
        "guidance_scale": 1.0,
        "guidance_scale_2": 1.0,
        "seed": seed,
    }


def _wait(store, job_id: str, predicate, timeout_s: float = 300.0):
    deadline = time.monotonic() + timeout_s
    while True:
        job = store.get(job_id)
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(job.status)
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of video per job")
    args = parser.parse_args(argv)
    config = load_app_config(yaml.safe_load((REPO / "configs/local.yaml").read_text())["applications"][0]["args"])
    config = config.with_absolute_paths(REPO)
    work = Path(tempfile.mkdtemp(prefix="cancel-latency-"))
    store_config = JobStoreConfig(sqlite_path=str(work / "jobs.sqlite3"), results_dir=str(work / "results"))
    store, results = SQLiteJobStore(store_config.sqlite_path), ResultFiles(store_config.results_dir)
    queue = JobQueueConfig(poll_interval_s=0.02, heartbeat_interval_s=1.0)
    generator = VideoGenerator(config.video_generator, store_config, queue, store=store, results=results)
    photo = encode_png(_photo())

    def submit(seed: int) -> str:
        job_id = uuid.uuid4().hex
        results.save_input(job_id, photo)  # before the record, as the ingress does: a worker may claim at once
        return store.create("video", _params(args.duration, seed), job_id=job_id).id

    reference = _wait(store, submit(0), lambda job: job.is_final)
    stages = {name: seconds for name, seconds in reference.timings.items()}
    run_s = reference.finished_at - reference.started_at
    steps = reference.total_steps
    per_step = sum(seconds for name, seconds in stages.items() if name.startswith("denoise")) / max(steps, 1)
    longest = max([*stages.items(), ("one step", per_step)], key=lambda item: item[1])
    print(
        f"uncancelled {args.duration:g}-s job: {run_s:.2f} s running; stages (s): "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items())
    )

    rng = random.Random(7)
    latencies, outcomes = [], []
    for index in range(args.jobs):
        job_id = submit(index + 1)
        _wait(store, job_id, lambda job: job.status == "running")
        time.sleep(rng.uniform(0, run_s * 0.95))
        asked = time.perf_counter()
        at = store.request_cancel(job_id)
        ended = _wait(store, job_id, lambda job: job.is_final)
        latencies.append(time.perf_counter() - asked)
        outcomes.append((ended.status, at.step))
    generator.worker.stop(60)
    cancelled = [lat for lat, (status, _) in zip(latencies, outcomes, strict=True) if status == "cancelled"]
    late = [status for status, _ in outcomes if status != "cancelled"]
    print(f"{args.jobs} cancels at random points: {len(cancelled)} cancelled, {len(late)} ended otherwise {late}")
    if cancelled:
        print(
            f"latency (s): median {statistics.median(cancelled):.3f}, max {max(cancelled):.3f}; "
            f"longest stage of the uncancelled run: {longest[0]} {longest[1]:.2f} s"
        )


if __name__ == "__main__":
    main()
