"""The weight-free fallback mask on synthetic studio photos with a known silhouette."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.background.segmentation.classic import classic_foreground_alpha, ellipse_mask, mask_quality
from pipelines.common.errors import InvalidInputError

SIZE = 160


def _silhouette(kind: str) -> np.ndarray:
    """Anti-aliased true matte: a head-and-shoulders portrait (touching the bottom edge) or a product."""
    ss = 4
    n = SIZE * ss
    canvas = np.zeros((n, n), np.uint8)
    if kind == "person":
        cv2.ellipse(canvas, (n // 2, int(0.36 * n)), (int(0.15 * n), int(0.19 * n)), 0, 0, 360, 255, -1)
        cv2.rectangle(canvas, (int(0.45 * n), int(0.5 * n)), (int(0.55 * n), int(0.7 * n)), 255, -1)
        cv2.ellipse(canvas, (n // 2, int(1.02 * n)), (int(0.38 * n), int(0.36 * n)), 0, 180, 360, 255, -1)
    else:
        cv2.rectangle(canvas, (int(0.33 * n), int(0.35 * n)), (int(0.62 * n), int(0.8 * n)), 255, -1)
        cv2.circle(canvas, (int(0.62 * n), int(0.5 * n)), int(0.1 * n), 255, -1)
    return cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _studio_photo(backdrop, subject_colour, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Subject on a vignetted backdrop with a soft drop shadow, side lighting and sensor noise."""
    rng = np.random.default_rng(seed)
    truth = _silhouette(kind)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    back = np.float32(backdrop) * (1.1 - 0.5 * ((xx - 0.5) ** 2 + (yy - 0.45) ** 2))[..., None]
    shadow = cv2.GaussianBlur(cv2.warpAffine(truth, np.float32([[1, 0, 6], [0, 1, 4]]), (SIZE, SIZE)), (0, 0), 3)
    back *= (1 - 0.25 * shadow)[..., None]
    texture = cv2.resize(rng.random((8, 8)).astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    subject = np.float32(subject_colour) * ((1.1 - 0.3 * xx) * (0.85 + 0.3 * texture))[..., None]
    photo = truth[..., None] * subject + (1 - truth[..., None]) * back + rng.normal(0, 2.5, (SIZE, SIZE, 3))
    return np.clip(photo, 0, 255).astype(np.uint8), truth


def _iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    a, t = alpha > 0.5, truth > 0.5
    return float((a & t).sum() / (a | t).sum())


@pytest.mark.parametrize(
    ("backdrop", "subject_colour", "kind"),
    [
        ((225, 225, 222), (60, 90, 150), "person"),  # light grey paper, blue sweater
        ((28, 28, 32), (200, 60, 40), "person"),  # black backdrop
        ((20, 175, 70), (230, 190, 60), "product"),  # green screen
        ((15, 70, 185), (150, 150, 150), "person"),  # blue screen, grey clothes
    ],
)
def test_classic_mask_matches_studio_silhouette(backdrop, subject_colour, kind):
    photo, truth = _studio_photo(backdrop, subject_colour, kind)
    alpha = classic_foreground_alpha(photo)
    assert alpha.shape == truth.shape and alpha.dtype == np.float32
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert _iou(alpha, truth) >= 0.9
    assert mask_quality(alpha)["usable"]


def test_non_square_and_large_inputs_keep_their_size():
    photo, _ = _studio_photo((225, 225, 222), (60, 90, 150), "person")
    wide = cv2.resize(photo, (700, 420))
    assert classic_foreground_alpha(wide).shape == (420, 700)


def test_bad_image_is_refused_with_field():
    with pytest.raises(InvalidInputError) as err:
        classic_foreground_alpha(np.zeros((64, 64), np.uint8))
    assert err.value.field == "image"


def test_same_picture_same_mask():
    photo, _ = _studio_photo((20, 175, 70), (230, 190, 60), "product")
    np.testing.assert_array_equal(classic_foreground_alpha(photo), classic_foreground_alpha(photo))


def test_flat_picture_does_not_crash():
    alpha = classic_foreground_alpha(np.full((64, 64, 3), 128, np.uint8))
    assert alpha.shape == (64, 64) and np.isfinite(alpha).all()


def test_mask_quality_flags_empty_and_full_masks():
    empty = mask_quality(np.zeros((50, 50), np.float32))
    assert empty["empty"] and not empty["usable"] and empty["coverage"] == 0.0
    full = mask_quality(np.ones((50, 50), np.float32))
    assert full["full"] and not full["usable"] and full["mean"] == 1.0
    tiny = np.zeros((50, 50), np.float32)
    tiny[:5, :5] = 1  # 1 % of the frame: a speck, not a subject
    assert mask_quality(tiny)["empty"]
    good = mask_quality(ellipse_mask(50, 50))
    assert good["usable"] and 0.2 < good["coverage"] < 0.6


def test_ellipse_mask_is_centred_and_soft():
    e = ellipse_mask(90, 120)
    assert e.shape == (90, 120) and e.dtype == np.float32
    assert e[45, 60] == 1.0 and e[0, 0] == 0.0 and e[-1, -1] == 0.0
    np.testing.assert_allclose(e, e[::-1, ::-1], atol=1e-4)  # symmetric about the centre
    assert ((e > 0) & (e < 1)).any()
