"""A stand-in for the Wan model in the chaining tests: what is under test there is the chain (segments, seams,
colour matching, resuming, encoding), not the model, and the tiny random model needs seconds per segment.

Each render starts exactly on its first picture and moves it one pixel to the right per frame, so every frame
differs from its neighbours (a duplicated seam frame shows as two equal frames); with a last picture it fades
into it and ends exactly on it. Unpinned renders drift in colour (red up, blue down) like a real model's slow
shift, so colour matching has something to take out. Every render is counted.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from pipelines.video.chained import SegmentResult, render_chain

DRIFT = np.array([1.12, 1.0, 0.9])  # per-channel gain reached at a render's last frame


class StandInVideoModel:
    streams_segments = True
    device = SimpleNamespace(type="cpu")

    def __init__(self, *, fail_on_render: int | None = None, error: BaseException | None = None) -> None:
        self.renders: list[dict] = []
        self.fail_on_render, self.error = fail_on_render, error

    def __call__(self, request, progress=None, should_cancel=None, loras=(), *, sink=None, segment_started=None):
        return render_chain(self, request, progress, should_cancel, sink=sink, segment_started=segment_started)

    def encode_text(self, prompt, negative_prompt, uses_guidance):
        return prompt, None

    def render_segment(self, segment, progress=None, check=lambda where: None) -> SegmentResult:
        if self.fail_on_render is not None and len(self.renders) + 1 == self.fail_on_render:
            raise self.error
        self.renders.append({"frames": segment.frames, "seed": segment.seed, "prompt": segment.prompt_embeds})
        first = np.asarray(segment.first, dtype=np.float32)
        last = None if segment.last is None else np.asarray(segment.last, dtype=np.float32)
        count = segment.frames
        frames = np.empty((count, segment.height, segment.width, 3), dtype=np.uint8)
        for index in range(count):
            weight = index / (count - 1)
            moved = np.roll(first, index, axis=1)
            # pinned: fade into the last picture; free: drift in colour
            frame = moved * (1 + weight * (DRIFT - 1)) if last is None else (1 - weight) * moved + weight * last
            frames[index] = np.clip(np.round(frame), 0, 255).astype(np.uint8)
        for step in range(1, segment.steps + 1):
            check(f"before step {step}")
            if progress is not None:
                progress(step, segment.steps)
        return SegmentResult(frames=frames, timings_s={"denoise": 0.0}, experts_per_step=[], step_timings_s=[])
