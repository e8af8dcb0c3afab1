"""Colour matching measured on real photos (scikit-image's bundled ones) shifted in exposure and white balance."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.color import deltaE_ciede2000, rgb2lab

from pipelines.video.colour_match import (
    anchor_statistics,
    channel_gains,
    linear_from_srgb,
    match_frame,
    match_segment,
    srgb_from_linear,
)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")
# linear-light gains: darker, brighter (clips highlights), warmer, cooler, and mixed casts
SHIFTS = {
    "under-exposed": (0.6, 0.6, 0.6),
    "over-exposed": (1.4, 1.4, 1.4),
    "warm": (1.25, 1.0, 0.75),
    "cool": (0.8, 1.0, 1.3),
    "dark and blue": (0.7, 0.85, 1.1),
    "bright and warm": (1.3, 1.15, 0.9),
}


def _photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    return image[::2, ::2] if image.shape[0] > 800 else image  # retina is 1411 px: half is plenty


def _shifted(image: np.ndarray, gains) -> np.ndarray:
    return srgb_from_linear(linear_from_srgb(image) * np.asarray(gains, dtype=np.float32))


def _mean_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    return float(deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).mean())


@pytest.mark.parametrize("photo", PHOTOS)
def test_matched_frames_are_within_one_delta_e_of_the_anchor(photo):
    anchor = _photo(photo)
    measured = []
    for name, gains in SHIFTS.items():
        shifted = _shifted(anchor, gains)
        before = _mean_delta_e(shifted, anchor)
        if before < 5.0:  # the bar is for shifts a viewer clearly sees
            continue
        after = _mean_delta_e(match_frame(shifted, anchor), anchor)
        measured.append((name, round(before, 2), round(after, 2)))
        assert after <= 1.0, (photo, name, before, after)
    assert measured, f"no shift of {photo} reached delta E 5"


def test_matching_ignores_motion_it_uses_statistics_not_pixels():
    anchor = _photo("astronaut")
    moved = np.roll(_shifted(anchor, SHIFTS["warm"]), 40, axis=1)  # the subject moved 40 px
    matched = match_frame(moved, anchor)
    assert _mean_delta_e(matched, np.roll(anchor, 40, axis=1)) <= 1.0


def test_an_unshifted_frame_is_left_alone():
    anchor = _photo("coffee")
    assert np.allclose(channel_gains(anchor, anchor_statistics(anchor)), 1.0, atol=1e-3)
    assert np.abs(match_frame(anchor, anchor).astype(int) - anchor).max() <= 1


def test_a_segment_ramps_from_its_first_frame_to_its_last():
    anchor = _photo("chelsea")
    # a segment that starts on the anchor and drifts warm by its end
    frames = np.stack([_shifted(anchor, (1 + 0.3 * t, 1.0, 1 - 0.25 * t)) for t in np.linspace(0, 1, 9)])
    matched, gains = match_segment(frames, anchor_statistics(anchor))
    assert np.allclose(gains["first"], 1.0, atol=0.01)
    assert gains["last"][0] < 0.85 and gains["last"][2] > 1.2
    assert _mean_delta_e(matched[-1], anchor) <= 1.0
    assert np.abs(matched[0].astype(int) - frames[0]).max() <= 1  # the seam frame does not jump
