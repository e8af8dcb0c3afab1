"""The VACE edit pipeline on the tiny experts: determinism, expert switching, cancel, what replace keeps,
and temporally stable subject masks from the real segmentation chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000, rgb2lab

from pipelines.background.segmentation.chain import SegmentationConfig, Segmenter
from pipelines.common.errors import JobCancelledError, MaskUnusableError
from pipelines.edit.config import EditModelConfig
from pipelines.edit.masks import subject_masks
from pipelines.edit.request import EditRequest
from pipelines.edit.wan_vace import WanVaceEditor, vae_round_trip
from tests.edit_videos import moving_square_frame

WIDTH, HEIGHT, FRAMES = 96, 64, 5


@pytest.fixture(scope="module")
def editor(tiny_models_dir):
    from pipelines.tiny.provision import provision_tiny_models
    from pipelines.tiny.wan_vace import TINY_WAN_VACE

    config = EditModelConfig(
        path=str(tiny_models_dir / TINY_WAN_VACE), tiny_model=TINY_WAN_VACE, device="cpu", dtype="float32"
    )
    provision_tiny_models(config)
    return WanVaceEditor.from_config(config)


def _clip(frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT):
    pairs = [moving_square_frame(i * 3, width, height) for i in range(frames)]
    return np.stack([rgb for rgb, _ in pairs]), np.stack([mask for _, mask in pairs])


def test_same_seed_same_frames_and_two_experts_switch_at_the_boundary(editor):
    frames, _ = _clip()
    steps: list[tuple[int, int]] = []
    first = editor(
        EditRequest(frames=frames, prompt="a car in the style of van gogh", seed=7), progress=lambda *s: steps.append(s)
    )
    again = editor(EditRequest(frames=frames, prompt="a car in the style of van gogh", seed=7))
    other = editor(EditRequest(frames=frames, prompt="a car in the style of van gogh", seed=8))
    assert first.frames.shape == frames.shape and first.frames.dtype == np.uint8
    assert np.array_equal(first.frames, again.frames)
    assert not np.array_equal(first.frames, other.frames)
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # boundary_ratio 0.875 of 1000: the high-noise expert takes the steps at t >= 875
    assert first.experts_per_step == ["high_noise", "high_noise", "low_noise", "low_noise"]
    assert {"control", "text_encode", "vae_encode", "denoise_high_noise", "vae_decode"} <= set(first.timings_s)


def test_strength_is_the_control_conditioning_scale(editor):
    frames, _ = _clip()
    seen: list[tuple] = []

    def capture(module, args, kwargs):
        seen.append((kwargs["control_hidden_states_scale"].tolist(), kwargs["control_hidden_states"].clone()))

    hooks = [
        expert.register_forward_pre_hook(capture, with_kwargs=True)
        for expert in (editor.pipe.transformer, editor.pipe.transformer_2)
    ]
    try:
        editor(EditRequest(frames=frames, prompt="a snow leopard", strength=0.6, control="edges"))
        editor(EditRequest(frames=frames, prompt="a snow leopard", strength=1.5, control="greyscale"))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == 8  # 4 steps each, one forward per step (guidance off)
    assert all(scale == pytest.approx([0.6]) for scale, _ in seen[:4])
    assert all(scale == pytest.approx([1.5]) for scale, _ in seen[4:])
    edges, grey = seen[0][1], seen[4][1]
    assert edges.shape == grey.shape and edges.shape[1] == 96  # 16 inactive + 16 reactive + 64 mask channels
    assert not torch.equal(edges, grey)  # the structure video reaches the model


def test_cancel_stops_within_one_step(editor):
    frames, _ = _clip()
    done: list[int] = []
    with pytest.raises(JobCancelledError, match="before step 2 of 4"):
        editor(
            EditRequest(frames=frames, prompt="a cat"),
            progress=lambda step, total: done.append(step),
            should_cancel=lambda: len(done) >= 1,
        )
    assert done == [1]


def _delta_e(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(deltaE_ciede2000(rgb2lab(a[where] / 255.0), rgb2lab(b[where] / 255.0)).mean())


def test_replace_keeps_everything_outside_the_dilated_mask(editor):
    frames, truth = _clip()
    masks = subject_masks(frames, lambda i, rgb: (truth[i].astype(np.float32), "classic"), dilate_px=6).masks
    result = editor(EditRequest(frames=frames, prompt="a snow leopard", mode="replace", masks=masks)).frames
    outside, inside = ~masks, truth
    round_trip = vae_round_trip(editor.pipe, frames)
    vae_error = _delta_e(frames, round_trip, outside)
    kept_error = _delta_e(frames, result, outside)
    print(f"mean ΔE00 outside the mask: edit {kept_error:.3f}, VAE round trip {vae_error:.3f}")
    assert kept_error <= vae_error and kept_error < 0.01
    assert _delta_e(frames, result, inside) > 5  # the subject itself was regenerated


def test_masks_from_the_segmentation_chain_follow_a_moving_subject_steadily():
    frames, truth = _clip(frames=13, width=160, height=96)
    segmenter = Segmenter(SegmentationConfig())  # the classic stage, as in the local profile

    def segment(index, rgb):
        found = segmenter.segment(__import__("PIL.Image").Image.fromarray(rgb))
        return found.alpha, found.stage

    tight = subject_masks(frames, segment, dilate_px=0, smooth_frames=3)
    iou = [(m & t).sum() / (m | t).sum() for m, t in zip(tight.masks, truth, strict=True)]
    coverage, true_coverage = tight.coverage, truth.reshape(len(truth), -1).mean(axis=1)
    assert min(iou) > 0.75, iou
    assert np.abs(coverage - true_coverage).max() < 0.03
    assert coverage.std() < 0.01  # stable over time: the subject does not change size
    dilated = subject_masks(frames, segment, dilate_px=8, smooth_frames=3)
    covered = [(t & ~d).sum() / t.sum() for d, t in zip(dilated.masks, truth, strict=True)]
    assert max(covered) < 0.02  # the dilated mask contains the subject
    ranges = dilated.ranges()
    assert ranges[0]["first_frame"] == 0 and ranges[-1]["last_frame"] == 12
    assert {r["stage"] for r in ranges} <= {"classic", "u2net", "birefnet"}


def test_no_subject_anywhere_is_mask_unusable():
    frames, _ = _clip()
    with pytest.raises(MaskUnusableError):
        subject_masks(frames, lambda i, rgb: (np.ones(rgb.shape[:2], np.float32), "ellipse"))


def test_a_frame_without_a_subject_borrows_its_neighbours_mask():
    frames, truth = _clip()

    def segment(index, rgb):
        return (np.zeros(rgb.shape[:2], np.float32), "ellipse") if index == 2 else (truth[index] * 1.0, "classic")

    masks = subject_masks(frames, segment, dilate_px=0, smooth_frames=1)
    assert masks.stages[2] == "borrowed" and masks.masks[2].any()
    assert [r["stage"] for r in masks.ranges()] == ["classic", "borrowed", "classic"]
