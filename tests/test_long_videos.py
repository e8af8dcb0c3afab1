"""Chained segments: frame counts, seams, seeds, progress, cancel, pieces on disk and resuming (model stand-in)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.common.errors import InvalidInputError, JobCancelledError
from pipelines.common.media import probe_video
from pipelines.video.colour_match import anchor_statistics, channel_gains
from pipelines.video.plan import frames_for_duration, plan_video, prepare_image
from pipelines.video.request import StoryboardEntry, VideoRequest
from pipelines.video.segment_pieces import SegmentFrames, SegmentPieces
from pipelines.video.segments import plan_segments, segment_seed, split_latents, total_frames
from tests.images import gradient_image
from tests.video_stand_in import StandInVideoModel

PHOTO = gradient_image(64, 48)  # plans to 832x624


def _board(*durations: float) -> tuple[StoryboardEntry, ...]:
    return tuple(StoryboardEntry(f"stretch {index}", d) for index, d in enumerate(durations))


@pytest.mark.parametrize("duration", [0.5, 3.0, 5.0, 5.25, 7.0, 10.0, 12.5, 20.0, 30.0])
def test_segments_add_up_to_the_frame_rule(duration):
    segments = plan_segments(VideoRequest(image=PHOTO, duration_s=duration))
    assert total_frames(segments) == frames_for_duration(duration)
    assert all(s.frames <= 81 and (s.frames - 1) % 4 == 0 for s in segments)
    assert len(segments) == max(1, -(-round(duration * 4) // 20))  # as few renders as fit 5 s each


def test_latents_are_split_evenly():
    assert split_latents(20) == [20]
    assert split_latents(28) == [14, 14]
    assert split_latents(41) == [14, 14, 13]


def test_segment_seeds_are_derived_and_reproducible():
    segments = plan_segments(VideoRequest(image=PHOTO, duration_s=20.0, seed=7))
    assert segments[0].seed == 7  # a short video renders as before
    assert len({s.seed for s in segments}) == 4
    assert [s.seed for s in segments] == [segment_seed(7, k) for k in range(4)]
    assert segment_seed(8, 1) != segment_seed(7, 1)
    assert all(0 <= s.seed < 2**63 for s in segments)


def test_storyboard_gives_each_stretch_its_prompt_and_splits_long_ones():
    segments = plan_segments(VideoRequest(image=PHOTO, duration_s=8.0, storyboard=_board(2.0, 6.0)))
    assert [s.prompt for s in segments] == ["stretch 0", "stretch 1", "stretch 1"]
    assert total_frames(segments) == frames_for_duration(8.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration_s": 4.0, "storyboard": _board(2.0, 1.0)}, "storyboard"),  # does not add up
        ({"duration_s": 2.0, "storyboard": (StoryboardEntry("  ", 2.0),)}, "storyboard"),
        ({"duration_s": 61.0}, "duration_s"),
        ({"image": None, "views": (PHOTO,), "duration_s": 2.0}, "images"),
        ({"image": None, "last_image": PHOTO}, "last_image"),
    ],
)
def test_bad_layouts_name_their_field(kwargs, field):
    with pytest.raises(InvalidInputError) as raised:
        VideoRequest(**{"image": PHOTO, **kwargs})
    assert raised.value.field == field


def test_long_video_has_exact_frames_and_no_duplicated_seam_frame():
    model = StandInVideoModel()
    seen, started = [], []
    result = model(
        VideoRequest(image=PHOTO, duration_s=3.0, steps=4, storyboard=_board(1.0, 1.0, 1.0)),
        progress=lambda step, total: seen.append((step, total)),
        segment_started=lambda index, total: started.append((index, total)),
    )
    assert result.frames.shape == (frames_for_duration(3.0), 624, 832, 3)
    assert len(model.renders) == result.segments == 3
    assert started == [(0, 3), (1, 3), (2, 3)]
    assert seen == [(step, 12) for step in range(1, 13)]  # progress spans the whole job
    differences = np.abs(np.diff(result.frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert differences.min() > 0.05  # no frame repeats (a repeat is 0), at the seams (16, 32) or anywhere else
    # the first frame is the photo itself, prepared to the output size
    plan = plan_video(64, 48, 3.0)
    assert np.array_equal(result.frames[0], np.asarray(prepare_image(PHOTO, plan)))


def test_segments_are_colour_matched_to_the_source_not_to_each_other():
    model = StandInVideoModel()
    result = model(VideoRequest(image=PHOTO, duration_s=6.0, storyboard=_board(2.0, 2.0, 2.0)))
    anchor = anchor_statistics(np.asarray(prepare_image(PHOTO, plan_video(64, 48, 6.0))))
    unmatched = StandInVideoModel()(VideoRequest(image=PHOTO, duration_s=2.0)).frames[-1]
    raw_drift = np.abs(np.log(channel_gains(unmatched, anchor))).max()
    for segment_end in (32, 64, 96):  # each segment's last frame
        residual = np.abs(np.log(channel_gains(result.frames[segment_end], anchor))).max()
        assert residual < 0.2 * raw_drift, (segment_end, residual, raw_drift)
    assert len(result.colour_gains) == 3


def test_cancel_between_and_within_segments():
    model = StandInVideoModel()
    steps = []
    with pytest.raises(JobCancelledError):
        model(
            VideoRequest(image=PHOTO, duration_s=3.0, steps=4, storyboard=_board(1.0, 1.0, 1.0)),
            progress=lambda step, total: steps.append(step),
            should_cancel=lambda: len(steps) >= 6,  # two steps into the second segment
        )
    assert steps == [1, 2, 3, 4, 5, 6]
    assert len(model.renders) == 2


def test_first_and_last_frame_pin_both_ends():
    last = gradient_image(48, 64, seed=3)  # portrait, for a landscape video: centre-cropped to 832x624
    result = StandInVideoModel()(VideoRequest(image=PHOTO, last_image=last, duration_s=1.0))
    assert result.frames.shape[0] == 17
    from pipelines.video.plan import prepare_follower

    expected_last = np.asarray(prepare_follower(last, plan_video(64, 48, 1.0)))
    assert np.array_equal(result.frames[-1], expected_last)


def test_multi_view_transitions_keep_each_seam_once():
    views = (PHOTO, gradient_image(64, 48, seed=1), gradient_image(80, 80, seed=2))
    model = StandInVideoModel()
    result = model(VideoRequest(image=None, views=views, transition_s=1.0, duration_s=2.0))
    assert result.frames.shape[0] == 1 + 16 + 16
    assert [r["frames"] for r in model.renders] == [17, 17]
    plan = plan_video(64, 48, 2.0)
    from pipelines.video.plan import prepare_follower

    assert np.array_equal(result.frames[16], np.asarray(prepare_follower(views[1], plan)))  # the seam, once
    assert not np.array_equal(result.frames[15], result.frames[16])
    assert not np.array_equal(result.frames[17], result.frames[16])
    assert result.colour_gains == []  # both ends pinned: nothing to match


def test_pieces_resume_after_a_crash_and_join_into_one_mp4(tmp_path):
    class ReplicaDied(BaseException):
        pass

    request = VideoRequest(image=PHOTO, duration_s=2.0, storyboard=_board(0.5, 0.5, 0.5, 0.5))
    pieces = SegmentPieces(tmp_path, "a" * 32)
    crashing = StandInVideoModel(fail_on_render=3, error=ReplicaDied())
    with pytest.raises(ReplicaDied):
        crashing(request, sink=pieces)
    assert len(crashing.renders) == 2 and pieces.finished() == 2

    resumed = StandInVideoModel()
    result = resumed(request, sink=SegmentPieces(tmp_path, "a" * 32))
    assert len(resumed.renders) == 2  # segments 3 and 4 only
    assert result.frames is None and result.frame_count == 33

    reference = StandInVideoModel()(request)  # the same video rendered in one go, in memory
    out = tmp_path / "video.mp4"
    pieces.assemble(out, result.segments)
    probe = probe_video(out)
    assert probe["frames"] == 33 and (probe["width"], probe["height"]) == (832, 624)
    error = np.abs(probe["pixels"].astype(np.int16) - reference.frames.astype(np.int16)).mean()
    assert error < 3.0  # H.264 at crf 18 of the same frames, in the same order
    pieces.remove()
    assert list(tmp_path.iterdir()) == [out]


def test_in_memory_segments_refuse_gaps():
    frames = SegmentFrames()
    with pytest.raises(ValueError):
        frames.add(1, np.zeros((1, 2, 2, 3), np.uint8))
