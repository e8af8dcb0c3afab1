"""Cost of long videos on the local profile: one process per duration, the way the replica renders it.

Renders ``duration_s`` with the tiny Wan model into segment pieces on disk (as ``VideoGenerator`` does),
joins them into one MP4, and prints one JSON line: wall time, time per segment, export time and the peak
resident memory of the process (``ru_maxrss``). Run from the repository root:

    .venv/bin/python -m benchmarks.long_video 5 10 20 30
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(duration_s: float) -> dict:
    from pipelines.tiny.build import TINY_WAN_I2V, ensure_tiny_model
    from pipelines.video.config import VideoModelConfig
    from pipelines.video.request import VideoRequest
    from pipelines.video.segment_pieces import SegmentPieces
    from pipelines.video.wan_i2v import WanImageToVideo
    from tests.images import gradient_image

    path = ensure_tiny_model(TINY_WAN_I2V, Path(".cache/models") / TINY_WAN_I2V)
    pipeline = WanImageToVideo.from_config(VideoModelConfig(path=str(path), device="cpu", dtype="float32"))
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as folder:
        pieces = SegmentPieces(folder, "f" * 32)
        started = time.perf_counter()
        result = pipeline(VideoRequest(image=gradient_image(640, 480), duration_s=duration_s, seed=1), sink=pieces)
        export = pieces.encode_s + pieces.assemble(Path(folder) / "video.mp4", result.segments)
        wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "duration_s": duration_s,
        "frames": result.frame_count,
        "segments": result.segments,
        "wall_s": round(wall, 1),
        "per_segment_s": [round(s, 1) for s in result.segment_seconds],
        "export_s": round(export, 2),
        "colour_match_s": round(result.timings_s.get("colour_match", 0.0), 2),
        "peak_rss_mb": round(peak_kb / 1024),
        "model_loaded_rss_mb": round(baseline_kb / 1024),
        "frames_in_memory_if_held_mb": round(result.frame_count * result.width * result.height * 3 / 2**20),
    }


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--one":
        print(json.dumps(measure(float(argv[1]))), flush=True)
        return
    for duration in argv or ["5", "10", "20", "30"]:
        # a fresh process each: its peak memory is this duration's alone
        subprocess.run([sys.executable, "-m", "benchmarks.long_video", "--one", duration], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
