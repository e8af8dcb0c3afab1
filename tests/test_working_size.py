"""Large photos: the matte is computed at a working size and upsampled; the composite stays full size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from benchmarks.compositing import case, mix
from benchmarks.segmentation_photos import iou, studio_photo
from pipelines.background.compositor import composite_onto_background, cutout_rgba
from pipelines.background.segmentation.chain import SegmentationConfig, Segmenter
from pipelines.background.subject_mask import subject_mask
from pipelines.background.working_size import shrink, upscale_matte, working_scale


class RecordingSegmenter(Segmenter):
    """The classic chain, remembering the size of every picture it was given."""

    def __init__(self, working_megapixels):
        super().__init__(SegmentationConfig(working_megapixels=working_megapixels))
        self.sizes = []

    def segment(self, image):
        self.sizes.append(image.size)
        return super().segment(image)


@pytest.fixture(scope="module")
def studio():
    return studio_photo("gradient", "person", 1024, seed=5)


def test_working_scale():
    assert working_scale(6000, 4000, None) == 1.0
    assert working_scale(2000, 2000, 4.0) == 1.0
    scale = working_scale(6000, 4000, 4.0)
    assert scale == pytest.approx((4 / 24) ** 0.5)
    assert shrink(np.zeros((4000, 6000, 3), np.uint8), scale).shape == (1633, 2449, 3)


def test_large_photo_is_segmented_small_and_the_matte_comes_back_full_size(studio):
    photo, truth = studio
    full_seg, work_seg = RecordingSegmenter(None), RecordingSegmenter(0.25)
    full = subject_mask(full_seg, Image.fromarray(photo), "center", "person", 0)
    work = subject_mask(work_seg, Image.fromarray(photo), "center", "person", 0)
    assert full_seg.sizes == [(1024, 1024)] and work_seg.sizes == [(500, 500)]
    assert work.alpha.shape == (1024, 1024) and work.alpha.dtype == np.float32
    assert work.stage == full.stage == "classic" and work.status == "ok"
    assert iou(work.alpha, full.alpha) > 0.99
    assert iou(work.alpha, truth) >= iou(full.alpha, truth) - 0.005


def test_composition_controls_and_feathering_apply_at_working_size(studio):
    photo, _ = studio
    image = Image.fromarray(photo)
    for composition, focus in (("left", "person"), ("center", "scene"), ("full", "person")):
        full = subject_mask(Segmenter(SegmentationConfig(working_megapixels=None)), image, composition, focus, 6)
        work = subject_mask(Segmenter(SegmentationConfig(working_megapixels=0.25)), image, composition, focus, 6)
        assert work.alpha.shape == full.alpha.shape
        assert iou(work.alpha, full.alpha) > 0.98, (composition, focus)
        assert np.abs(work.alpha - full.alpha).mean() < 0.01, (composition, focus)


def test_upscaling_keeps_core_and_background_exact_and_follows_the_photos_edge():
    # A hard vertical edge at x = 301 that the 4x smaller matte can only place to within 4 px.
    photo = np.full((400, 600, 3), 30, np.uint8)
    photo[:, 301:] = 220
    truth = np.zeros((400, 600), np.float32)
    truth[:, 301:] = 1.0
    small = np.asarray(Image.fromarray(truth).resize((150, 100), Image.Resampling.BOX), np.float32)
    refined = upscale_matte(small, photo)
    assert refined.shape == (400, 600) and refined.dtype == np.float32
    assert np.all(refined[:, :280] == 0.0) and np.all(refined[:, 320:] == 1.0)
    assert np.all(refined[:, :301] < 0.5) and np.all(refined[:, 301:] > 0.5)
    # the jump sits on the photo's edge: most of the change happens between x = 300 and 301
    assert (refined[:, 301] - refined[:, 300]).min() > 0.5


def test_edge_refinement_beats_plain_bilinear_on_a_studio_photo(studio):
    import cv2

    from benchmarks.large_photo import edge_band

    photo, truth = studio
    segmenter = Segmenter(SegmentationConfig(working_megapixels=None))
    small = segmenter.segment(Image.fromarray(shrink(photo, 0.5))).alpha
    bilinear = cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    refined = upscale_matte(small, photo)
    band = edge_band(truth)
    assert np.abs(refined - truth)[band].mean() < np.abs(bilinear - truth)[band].mean()


def test_composite_at_working_size_stays_full_size_and_close_to_the_full_estimate():
    fg, alpha, old, new = case("hair", 512)
    photo = mix(fg, alpha, old, "srgb")
    full = composite_onto_background(photo, new, alpha)
    work = composite_onto_background(photo, new, alpha, working_megapixels=0.05)
    assert work.shape == photo.shape and work.dtype == np.uint8
    opaque, clear = alpha >= 1 - 1 / 512, alpha <= 1 / 512
    assert np.array_equal(work[opaque], photo[opaque]) and np.array_equal(work[clear], new[clear])
    soft = ~opaque & ~clear
    assert np.abs(work[soft].astype(int) - full[soft]).mean() < 3.0
    target = mix(fg, alpha, new, "srgb")
    # no worse than a plain blend of the photo, which is what a failed estimate would degrade to
    plain = alpha[..., None] * photo + (1 - alpha[..., None]) * new
    assert np.abs(work[soft].astype(float) - target[soft]).mean() < np.abs(plain[soft] - target[soft]).mean()


def test_cutout_at_working_size_keeps_the_alpha_and_size():
    fg, alpha, old, _ = case("fur", 384)
    photo = mix(fg, alpha, old, "srgb")
    full, work = cutout_rgba(photo, alpha), cutout_rgba(photo, alpha, working_megapixels=0.05)
    assert work.shape == (384, 384, 4) and np.array_equal(work[..., 3], full[..., 3])
    assert np.abs(work[..., :3].astype(int) - full[..., :3]).mean() < 3.0


def test_working_size_config():
    from deployments.config import BackgroundGeneratorConfig
    from pipelines.background.sdxl import BackgroundModelConfig

    assert SegmentationConfig().working_megapixels == 4.0
    assert SegmentationConfig(working_megapixels=None).working_megapixels is None
    generator = BackgroundGeneratorConfig(model=BackgroundModelConfig(path="/m"))
    assert generator.working_megapixels == 4.0
    with pytest.raises(ValidationError):
        SegmentationConfig(working_megapixels=0.1)
    with pytest.raises(ValidationError):
        BackgroundGeneratorConfig(model=BackgroundModelConfig(path="/m"), working_megapixels=0)
