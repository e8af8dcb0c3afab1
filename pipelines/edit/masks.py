"""Temporally stable subject masks for ``mode=replace``, from per-frame segmentation.

Each segmented frame's matte is binarised, the sequence is averaged over a centred window (a subject
that flickers in and out for a frame is neither lost nor invented), re-binarised, then dilated by the
configured margin so the new subject has room (and the old one's outline is covered). Frames between
segmented ones (``mask_every_n_frames``) are interpolated. A frame whose segmentation fell back to the
last-resort ellipse found no subject: it borrows the nearest frame that did, and when none did the edit
cannot be made (``MaskUnusableError``). ``mask_ranges`` summarises, per run of frames, which stage made
the masks and how much they cover: the job's ``result.details``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.common.errors import MaskUnusableError

NO_SUBJECT_STAGE = "ellipse"
MIN_COVERAGE = 0.002  # below this share of the frame a matte is noise, not a subject


@dataclass
class VideoMasks:
    masks: np.ndarray  # bool (frames, h, w): True = regenerate
    stages: list[str]  # per frame: the segmentation stage, "interpolated" or "borrowed"
    dilate_px: int

    @property
    def coverage(self) -> np.ndarray:
        return self.masks.reshape(len(self.masks), -1).mean(axis=1)

    def ranges(self) -> list[dict]:
        """Runs of frames with the same source of mask: {first, last, stage, coverage_min/mean/max}."""
        runs: list[dict] = []
        coverage = self.coverage
        start = 0
        for index in range(1, len(self.stages) + 1):
            if index == len(self.stages) or self.stages[index] != self.stages[start]:
                part = coverage[start:index]
                runs.append(
                    {
                        "first_frame": start,
                        "last_frame": index - 1,
                        "stage": self.stages[start],
                        "coverage_min": round(float(part.min()), 4),
                        "coverage_mean": round(float(part.mean()), 4),
                        "coverage_max": round(float(part.max()), 4),
                    }
                )
                start = index
        return runs


def subject_masks(
    frames: np.ndarray,
    segment: Callable[[int, np.ndarray], tuple[np.ndarray, str]],
    *,
    every_n_frames: int = 1,
    smooth_frames: int = 5,
    dilate_px: int = 16,
    should_cancel: Callable[[], bool] | None = None,
) -> VideoMasks:
    """``segment(index, rgb)`` -> (alpha float HxW in [0, 1], stage name) for the frames it is asked about."""
    count, height, width = frames.shape[:3]
    keyframes = sorted(set(range(0, count, every_n_frames)) | {count - 1})
    alphas: dict[int, np.ndarray] = {}
    stages: list[str] = ["interpolated"] * count
    for index in keyframes:
        if should_cancel is not None and should_cancel():
            from pipelines.common.errors import JobCancelledError

            raise JobCancelledError(f"cancelled while segmenting frame {index + 1} of {count}")
        alpha, stage = segment(index, frames[index])
        stages[index] = stage
        binary = (np.asarray(alpha, np.float32) > 0.5).astype(np.float32)
        if stage != NO_SUBJECT_STAGE and binary.mean() >= MIN_COVERAGE:
            alphas[index] = binary
    if not alphas:
        raise MaskUnusableError(
            "no subject was found in the video (every frame's segmentation fell back to its last resort); "
            "use mode=style, or a video where the subject stands out from its backdrop",
            field="video",
        )
    found = sorted(alphas)
    per_frame = np.empty((count, height, width), np.float32)
    for index in range(count):
        if index in alphas:
            per_frame[index] = alphas[index]
            continue
        before = [k for k in found if k < index]
        after = [k for k in found if k > index]
        if stages[index] != "interpolated":  # segmented, but no subject: take the nearest frame that had one
            stages[index] = "borrowed"
        if before and after and stages[index] == "interpolated":
            a, b = before[-1], after[0]
            weight = (index - a) / (b - a)
            per_frame[index] = (1 - weight) * alphas[a] + weight * alphas[b]
        else:
            nearest = min(found, key=lambda k: abs(k - index))
            per_frame[index] = alphas[nearest]
    smoothed = _smooth_over_time(per_frame, smooth_frames) > 0.5
    return VideoMasks(masks=_dilate(smoothed, dilate_px), stages=stages, dilate_px=dilate_px)


def _smooth_over_time(masks: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return masks
    half = window // 2
    padded = np.concatenate([masks[:1].repeat(half, 0), masks, masks[-1:].repeat(half, 0)])
    cumulative = np.cumsum(padded, axis=0, dtype=np.float64)
    cumulative = np.concatenate([np.zeros_like(cumulative[:1]), cumulative])
    return ((cumulative[window:] - cumulative[:-window]) / window).astype(np.float32)[: len(masks)]


def _dilate(masks: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return masks
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return np.stack([cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) for mask in masks])


def blend_weights(masks: np.ndarray, feather_px: int) -> np.ndarray:
    """float (frames, h, w): 1 deep inside the mask, falling to 0 at its edge over ``feather_px``; exactly 0
    outside, so everything outside the (dilated) mask is the source's own pixels."""
    if feather_px <= 0:
        return masks.astype(np.float32)
    weights = np.empty(masks.shape, np.float32)
    for index, mask in enumerate(masks):
        inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        weights[index] = np.clip(inside / feather_px, 0.0, 1.0)
    return weights
