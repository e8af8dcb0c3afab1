"""How a video is cut into renders of at most 5 s (no torch: the HTTP layer and the tests use it too).

The model renders 4k+1 frames per call (81 at most: 5 s at 16 fps). A longer video is a chain of such
segments: segment k+1 starts on segment k's last frame, so that frame (the seam) is rendered twice and
kept once: a chain of segments with 4k_1+1, 4k_2+1, ... frames has 1 + 4(k_1 + k_2 + ...) frames. That is
exactly :func:`frames_for_duration` of the total when the k's add up to round(4 * duration_s), so a 30-s
video has the same 481 frames whether it is rendered in one piece or six.

Seeds: segment 0 uses the job's seed itself (a video of up to 5 s renders as it always did); segment k > 0
uses :func:`segment_seed` (a hash of the job's seed and k), so the job's seed reproduces the whole video
and no two segments share their noise.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from pipelines.video.plan import FPS, MAX_SEGMENT_S
from pipelines.video.request import VideoRequest

# 4 frames per latent frame (the VAE's temporal stride); a segment has at most 20 of them after the first.
FRAMES_PER_LATENT = 4
MAX_SEGMENT_LATENTS = round(MAX_SEGMENT_S * FPS / FRAMES_PER_LATENT)  # 20: 81 frames


@dataclass(frozen=True)
class SegmentSpec:
    index: int
    prompt: str
    frames: int  # rendered frames, the seam frame included: 4k+1
    seed: int
    start_view: int | None  # the view it starts on; None: the previous segment's last frame
    end_view: int | None  # the view pinned as its last frame (multi-view, or the last_image); else None
    colour_match: bool  # matched to the source image (segments of a chain) or left alone (pinned ends)

    @property
    def kept_frames(self) -> int:
        """Frames it adds to the video: all of them for the first segment, all but the seam for the others."""
        return self.frames if self.index == 0 else self.frames - 1


def segment_seed(seed: int, index: int) -> int:
    """The seed of segment ``index`` of a job with ``seed``: the seed itself for segment 0."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"vividflow-segment:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits, like every seed the API takes


def split_latents(latents: int) -> list[int]:
    """``latents`` latent steps in as few segments as possible, as even as possible (longer ones first)."""
    count = max(1, math.ceil(latents / MAX_SEGMENT_LATENTS))
    base, extra = divmod(latents, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def _latents(duration_s: float) -> int:
    return round(duration_s * FPS / FRAMES_PER_LATENT)


def plan_segments(request: VideoRequest) -> list[SegmentSpec]:
    """The segments of ``request`` in render order."""
    # (prompt, latent steps, start view, end view) per segment
    pieces: list[tuple[str, int, int | None, int | None]] = []
    if request.views:
        entries = request.storyboard or [None] * (len(request.views) - 1)
        for index, entry in enumerate(entries):
            prompt = entry.prompt if entry is not None else request.prompt
            duration = entry.duration_s if entry is not None else request.transition_s
            pieces.append((prompt, _latents(duration), index, index + 1))
    else:
        stretches = [(e.prompt, e.duration_s) for e in request.storyboard] or [(request.prompt, request.duration_s)]
        for prompt, duration in stretches:
            for latents in split_latents(_latents(duration)):
                pieces.append((prompt, latents, 0 if not pieces else None, None))
        if request.last_image is not None:
            last_prompt, last_latents, last_start, _ = pieces[-1]
            pieces[-1] = (last_prompt, last_latents, last_start, 1)  # view 1 = the last_image
    return [
        SegmentSpec(
            index=index,
            prompt=prompt,
            frames=1 + FRAMES_PER_LATENT * latents,
            seed=segment_seed(request.seed, index),
            start_view=start,
            end_view=end,
            # A segment pinned at its end cannot drift away from it; the others of a chain are matched (a
            # one-segment video is left exactly as the model rendered it).
            colour_match=end is None and len(pieces) > 1,
        )
        for index, (prompt, latents, start, end) in enumerate(pieces)
    ]


def total_frames(segments: list[SegmentSpec]) -> int:
    return sum(segment.kept_frames for segment in segments)
