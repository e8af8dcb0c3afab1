"""One video from one or more renders: the segments of :mod:`pipelines.video.segments`, chained.

Each segment after the first starts on a picture: a view of a multi-view video, or the previous segment's
last kept frame (colour-matched, exactly as it is in the video). It is re-encoded by the VAE as the next
segment's condition; reusing the previous segment's last *latent* instead is not possible with this VAE:
it is causal with a temporal stride of 4, so the last latent summarises the last four frames, and the
condition latents of the unknown frames depend on the first frame through the causal cache, so the
condition has to go through the encoder once anyway, and it does so exactly once per segment.

The seam frame (the first frame of every segment after the first) duplicates the frame it starts on and is
dropped. Colour matching (``pipelines.video.colour_match``) applies to the segments of a chain that are not
pinned at their end. The text encoder runs once per distinct prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipelines.common.errors import JobCancelledError
from pipelines.common.stage_clock import StageClock
from pipelines.video.colour_match import anchor_statistics, match_segment
from pipelines.video.plan import plan_video, prepare_follower, prepare_image
from pipelines.video.request import VideoRequest
from pipelines.video.segment_pieces import SegmentFrames
from pipelines.video.segments import plan_segments, total_frames


@dataclass
class SegmentInput:
    """One render: pictures already at the output size, prompt already encoded."""

    first: Image.Image
    last: Image.Image | None
    width: int
    height: int
    frames: int
    seed: int
    steps: int
    guidance_scale: float
    guidance_scale_2: float
    prompt_embeds: object  # torch tensors; this module needs no torch
    negative_embeds: object | None


@dataclass
class SegmentResult:
    frames: np.ndarray  # uint8, (frames, height, width, 3), the seam frame included
    timings_s: dict[str, float]
    experts_per_step: list[str]
    step_timings_s: list[float]


@dataclass
class VideoResult:
    frames: np.ndarray | None  # uint8, (frames, height, width, 3); None when a sink received the segments
    fps: int
    seed: int
    width: int = 0
    height: int = 0
    frame_count: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    experts_per_step: list[str] = field(default_factory=list)  # every denoising step of the renders done
    step_timings_s: list[float] = field(default_factory=list)  # each denoising step, in order
    segments: int = 1
    segments_rendered: int = 0  # by this call (a resumed job skips the stored ones)
    segment_seconds: list[float] = field(default_factory=list)  # wall time of each segment rendered
    colour_gains: list[dict] = field(default_factory=list)  # per matched segment: gains at its first/last frame


def _pictures(request: VideoRequest, plan) -> list[Image.Image]:
    """The pinned pictures at the output size: the views, or the image (and the last image)."""
    if request.views:
        return [prepare_image(request.views[0], plan)] + [prepare_follower(v, plan) for v in request.views[1:]]
    pictures = [prepare_image(request.image, plan)]
    if request.last_image is not None:
        pictures.append(prepare_follower(request.last_image, plan))
    return pictures


def _offset_progress(progress: Callable[[int, int], None], offset: int, total: int) -> Callable[[int, int], None]:
    return lambda step, _segment_total: progress(offset + step, total)


def render_chain(
    pipeline,
    request: VideoRequest,
    progress: Callable[[int, int], None] | None,
    should_cancel: Callable[[], bool] | None,
    *,
    sink=None,
    segment_started: Callable[[int, int], None] | None = None,
) -> VideoResult:
    """Render ``request`` with ``pipeline``: anything with ``device``, ``encode_text`` and ``render_segment``
    like :class:`~pipelines.video.wan_i2v.WanImageToVideo`."""
    first = request.first_image
    plan = plan_video(first.width, first.height, request.duration_s)
    segments = plan_segments(request)
    own_sink = sink is None
    sink = SegmentFrames() if own_sink else sink
    done = sink.finished()
    if done > len(segments):
        raise ValueError(f"the sink holds {done} segments, the request has {len(segments)}")

    def check(where: str) -> None:
        # Between stages as well as between steps: image encoding and decoding are seconds long on a GPU
        # and minutes on a CPU, so a cancel must not wait for them to finish.
        if should_cancel is not None and should_cancel():
            raise JobCancelledError(f"cancelled {where}")

    pictures = _pictures(request, plan)
    anchor = anchor_statistics(np.asarray(pictures[0])) if any(s.colour_match for s in segments) else None
    uses_guidance = max(request.guidance_scale, request.guidance_scale_2) > 1.0
    steps_total = request.steps * len(segments)
    result = VideoResult(
        frames=None,
        fps=plan.fps,
        seed=request.seed,
        width=plan.width,
        height=plan.height,
        frame_count=total_frames(segments),
        segments=len(segments),
    )
    timings = result.timings_s
    embeddings: dict[str, tuple] = {}
    for segment in segments[done:]:
        encoded = segment.prompt in embeddings
        check(f"before segment {segment.index + 1} of {len(segments)}" + ("" if encoded else ", before text encoding"))
        if segment_started is not None:
            segment_started(segment.index, len(segments))
        clock = StageClock(pipeline.device)
        if not encoded:
            embeddings[segment.prompt] = pipeline.encode_text(segment.prompt, request.negative_prompt, uses_guidance)
            timings["text_encode"] = timings.get("text_encode", 0.0) + clock.lap()
            check("after text encoding, before image encoding")
        prompt_embeds, negative_embeds = embeddings[segment.prompt]
        start = pictures[segment.start_view] if segment.start_view is not None else Image.fromarray(sink.last_frame())
        end = pictures[segment.end_view] if segment.end_view is not None else None
        offset = segment.index * request.steps
        rendered = pipeline.render_segment(
            SegmentInput(
                first=start,
                last=end,
                width=plan.width,
                height=plan.height,
                frames=segment.frames,
                seed=segment.seed,
                steps=request.steps,
                guidance_scale=request.guidance_scale,
                guidance_scale_2=request.guidance_scale_2,
                prompt_embeds=prompt_embeds,
                negative_embeds=negative_embeds,
            ),
            progress=None if progress is None else _offset_progress(progress, offset, steps_total),
            check=check,
        )
        for stage, seconds in rendered.timings_s.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        clock.lap()
        frames = rendered.frames
        if segment.colour_match:
            frames, gains = match_segment(frames, anchor)
            result.colour_gains.append({"segment": segment.index, **gains})
            timings["colour_match"] = timings.get("colour_match", 0.0) + clock.lap()
        if segment.index > 0:
            frames = frames[1:]  # the seam: the frame it started on is already in the video
        check(f"after segment {segment.index + 1} of {len(segments)}")
        sink.add(segment.index, frames)
        if not own_sink:
            timings["store_segment"] = timings.get("store_segment", 0.0) + clock.lap()
        result.experts_per_step += rendered.experts_per_step
        result.step_timings_s += rendered.step_timings_s
        result.segment_seconds.append(sum(rendered.timings_s.values()))
        result.segments_rendered += 1
    if own_sink:
        result.frames = sink.video()
    return result
