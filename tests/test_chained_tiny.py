"""First/last frame and chained segments on the tiny Wan2.2 model (real diffusers classes, random weights)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.video.request import StoryboardEntry, VideoRequest
from pipelines.video.segment_pieces import SegmentPieces
from tests.images import gradient_image

pytestmark = pytest.mark.slow

PHOTO = gradient_image(64, 48)


def test_last_image_enters_the_condition_and_changes_the_video(wan_pipeline):
    plain = wan_pipeline(VideoRequest(image=PHOTO, duration_s=0.5, seed=4))
    pinned = wan_pipeline(VideoRequest(image=PHOTO, last_image=gradient_image(48, 64, seed=9), duration_s=0.5, seed=4))
    again = wan_pipeline(VideoRequest(image=PHOTO, last_image=gradient_image(48, 64, seed=9), duration_s=0.5, seed=4))
    assert pinned.frames.shape == plain.frames.shape == (9, 624, 832, 3)
    assert not np.array_equal(pinned.frames, plain.frames)
    assert np.array_equal(pinned.frames, again.frames)


def test_a_chain_resumed_from_its_pieces_is_the_chain_rendered_at_once(wan_pipeline, tmp_path):
    board = (StoryboardEntry("left", 0.5), StoryboardEntry("right", 0.5), StoryboardEntry("up", 0.5))
    request = VideoRequest(image=PHOTO, duration_s=1.5, storyboard=board, seed=2)
    whole = wan_pipeline(request)
    assert whole.frames.shape[0] == 1 + 8 * 3 and whole.segments_rendered == 3
    steps = np.abs(np.diff(whole.frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert steps.min() > 0.5  # the seam frames (8, 16) are not shown twice

    pieces = SegmentPieces(tmp_path, "b" * 32)
    done = []
    with pytest.raises(Exception, match="cancelled"):  # stop during the second segment
        wan_pipeline(
            request, sink=pieces, progress=lambda step, total: done.append(step), should_cancel=lambda: len(done) >= 6
        )
    assert pieces.finished() == 1
    resumed = wan_pipeline(request, sink=SegmentPieces(tmp_path, "b" * 32))
    assert resumed.segments_rendered == 2
    # the stored seam frames are exactly the in-memory video's: same seeds, same conditioning
    assert np.array_equal(pieces.last_frame(), whole.frames[-1])
    assert np.array_equal(np.load(pieces.last_frame_path(0)), whole.frames[8])
