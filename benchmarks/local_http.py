"""End-to-end latency of video jobs on a running app, over HTTP, as a client sees it.

Submits a photo, polls the job until it is final, downloads the MP4 and checks its frame count; prints
each run and the median per duration. Point it at any running app (for a before/after, run it against
both builds in turn on the same machine):

    ./scripts/run_local.sh &                     # the embedded default, on http://127.0.0.1:8000
    .venv/bin/python benchmarks/local_http.py --durations 1 5 --runs 3

Only the standard library and httpx/av/PIL, so it also runs against an older checkout's server.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time

import av
import httpx
import numpy as np
from PIL import Image


def photo(width: int = 832, height: int = 480) -> bytes:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp * np.array([1.0, 0.6, 0.3]) + rng.normal(0, 12, (height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def wait_healthy(client: httpx.Client, timeout_s: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        try:
            if client.get("/healthz").status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no healthy app after {timeout_s:.0f} s")


def one_video(client: httpx.Client, image: bytes, duration_s: float, seed: int) -> dict:
    started = time.perf_counter()
    response = client.post(
        "/v1/videos",
        files={"image": ("photo.png", image, "image/png")},
        data={"duration_s": str(duration_s), "seed": str(seed)},
    )
    response.raise_for_status()
    job = response.json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    finished = time.perf_counter()
    if job["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} ended {job['status']}: {job['error']}")
    mp4 = client.get(f"/v1/jobs/{job['id']}/result").content
    downloaded = time.perf_counter()
    with av.open(io.BytesIO(mp4)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    return {
        "duration_s": duration_s,
        "end_to_end_s": round(finished - started, 2),
        "with_download_s": round(downloaded - started, 2),
        "frames": frames,
        "stages_s": job.get("timings_s", {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded 0.5 s jobs first (first-call costs)")
    parser.add_argument("--wait-s", type=float, default=300, help="how long to wait for /healthz")
    args = parser.parse_args(argv)
    image = photo()
    with httpx.Client(base_url=args.url, timeout=600) as client:
        print(f"healthy after {wait_healthy(client, args.wait_s):.1f} s", flush=True)
        for index in range(args.warmup):
            one_video(client, image, 0.5, seed=1000 + index)
        summary = {}
        for duration in args.durations:
            runs = []
            for index in range(args.runs):
                run = one_video(client, image, duration, seed=index)
                print(json.dumps(run), flush=True)
                runs.append(run["end_to_end_s"])
            summary[duration] = {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs)}
    print(json.dumps({"url": args.url, "runs": args.runs, "end_to_end": summary}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
