"""Subject masks without model weights: the fallback for plain studio backdrops.

It runs where no segmentation checkpoint is installed. The picture is assumed to be a subject in
front of a fairly plain backdrop (solid, gradient, dark, green or blue screen) that shows along the
frame's border. A smooth colour model of that backdrop is fitted to the border, every pixel's
distance from it seeds OpenCV's GrabCut, and the cut is cleaned up and upsampled with an
edge-aware filter. Pictures that break the assumption give masks ``mask_quality`` flags as unusable;
``ellipse_mask`` is the last resort.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.common.errors import InvalidInputError

# GrabCut's cost grows with pixels and it only needs the silhouette: the cut runs at this long side
# and the guided filter restores edge placement at full resolution.
WORK_SIDE = 320
BORDER_FRACTION = 0.03
GRABCUT_ITERATIONS = 4
# Weight of pure darkening of the backdrop colour (a cast shadow) against any other change: a
# shadow scales the backdrop's Lab vector (L+16, a, b) by a factor below 1, a subject changes hue,
# saturation or brightens it.
SHADOW_WEIGHT = 0.3
# Seeding thresholds, in shadow-muted Lab distance from the backdrop model (floors for clean images).
MIN_LOW_THRESHOLD = 3.0
MIN_HIGH_THRESHOLD = 10.0
# Clean-up, as fractions of the work image: specks and holes below these are noise, not content.
MIN_COMPONENT_FRACTION = 0.002
SECONDARY_COMPONENT_RATIO = 0.15
MAX_HOLE_FRACTION = 0.003
# Usability limits for a mask (the seed's rule for rejecting models' masks: coverage < 3 %).
MIN_COVERAGE = 0.03
MAX_COVERAGE = 0.97
MIN_MEAN = 10.0 / 255.0


def classic_foreground_alpha(image_rgb: np.ndarray) -> np.ndarray:
    """Float32 matte in [0, 1], the size of ``image_rgb`` (HxWx3 uint8), from the backdrop model."""
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or min(image_rgb.shape[:2]) < 8:
        raise InvalidInputError("the image must be an HxWx3 uint8 RGB array, at least 8 px a side", field="image")
    h, w = image_rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(image_rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    # A light blur keeps sensor noise and JPEG blocks out of the colour statistics.
    small = cv2.GaussianBlur(small, (3, 3), 0)
    distance, border_inliers = _backdrop_distance(small)
    labels = _seed_labels(distance, border_inliers)
    # GrabCut works on the colours themselves: the seeds mute shadows, which also mutes a grey
    # subject darker than a grey backdrop; GrabCut's colour models and edges recover those.
    hard = _clean(_grabcut(small, labels))
    soft = cv2.resize(hard.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(2, round(1.5 / scale))
    return np.clip(guided_filter(grey, soft, radius, 1e-3), 0.0, 1.0).astype(np.float32)


def _border_mask(h: int, w: int) -> np.ndarray:
    width = max(2, round(BORDER_FRACTION * min(h, w)))
    border = np.zeros((h, w), bool)
    border[:width], border[-width:], border[:, :width], border[:, -width:] = True, True, True, True
    return border


def _backdrop_distance(small_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's Lab distance from a quadratic backdrop model fitted to the border, shadows muted.

    The fit is repeated on the border pixels that agree with it, so a subject crossing the border
    (a portrait's shoulders at the bottom edge) does not drag the model towards its own colours.
    """
    h, w = small_rgb.shape[:2]
    lab = cv2.cvtColor(small_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab[..., 0] += 16.0  # (L+16, a, b) scales with the light falling on a surface
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx, yy = xx / max(w - 1, 1) - 0.5, yy / max(h - 1, 1) - 0.5
    basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], axis=-1)
    border = _border_mask(h, w)
    samples, targets = basis[border], lab[border]
    # Subjects cross one side of the frame far more often than three (shoulders at the bottom,
    # hair at the top): fit to every set of three sides and to all four, start from the fit with
    # the least median residual over the whole border (least median of squares, robust to up to
    # half the border being subject), then alternate fitting and keeping pixels within 3 sigmas.
    bx, by = xx[border], yy[border]
    edge = 0.5 - 1.5 * BORDER_FRACTION
    sides = [by < -edge, by > edge, bx < -edge, bx > edge]
    best = np.inf
    for dropped in (None, 0, 1, 2, 3):
        subset = np.any([side for i, side in enumerate(sides) if i != dropped], axis=0)
        coef, *_ = np.linalg.lstsq(samples[subset], targets[subset], rcond=None)
        residual = np.linalg.norm(samples @ coef - targets, axis=1)
        if np.median(residual) < best:
            best, start = float(np.median(residual)), residual
    keep = start <= max(3.0 * 1.4826 * best, 3.0)
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(samples[keep], targets[keep], rcond=None)
        residual = np.linalg.norm(samples @ coef - targets, axis=1)
        sigma = 1.4826 * float(np.median(residual[keep]))
        keep = residual <= max(3.0 * sigma, 3.0)
    inliers = np.zeros((h, w), bool)
    inliers[border] = keep
    model = basis @ coef
    # Darkening along the model colour counts SHADOW_WEIGHT times as much as other departures.
    scale = np.minimum((lab * model).sum(-1) / ((model * model).sum(-1) + 1e-6), 1.0)
    scale = SHADOW_WEIGHT + (1.0 - SHADOW_WEIGHT) * scale
    return np.linalg.norm(lab - scale[..., None] * model, axis=-1).astype(np.float32), inliers


def _seed_labels(distance: np.ndarray, border_inliers: np.ndarray) -> np.ndarray:
    noise = float(np.percentile(distance[border_inliers], 90)) if border_inliers.any() else 0.0
    low = max(2.0 * noise, MIN_LOW_THRESHOLD)
    high = max(4.0 * noise, MIN_HIGH_THRESHOLD)
    labels = np.where(distance > 0.5 * (low + high), cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    # Only clearly different pixels away from the silhouette's rim are fixed as subject; GrabCut
    # decides the rest from the colour models it learns.
    sure = cv2.erode((distance > high).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    labels[sure] = cv2.GC_FGD
    labels[border_inliers] = cv2.GC_BGD
    if not np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
        # Nothing stands out from the backdrop: give GrabCut the usual framing as a starting guess.
        labels[(ellipse_mask(*labels.shape) > 0.5) & ~border_inliers] = cv2.GC_PR_FGD
    return labels


def _grabcut(small_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    mask = labels.copy()
    if not np.isin(mask, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
        return np.ones(mask.shape, bool)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: same picture, same mask
    try:
        cv2.grabCut(small_rgb, mask, None, bgd, fgd, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour statistics (e.g. a flat image): keep the seeds
        mask = labels
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _clean(hard: np.ndarray) -> np.ndarray:
    """Drop specks, keep the subject (and any companion nearly as large), fill pinholes."""
    total = hard.size
    mask = cv2.morphologyEx(hard.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    floor = max(SECONDARY_COMPONENT_RATIO * areas.max(), MIN_COMPONENT_FRACTION * total)
    keep = np.flatnonzero(areas >= floor) + 1
    mask = np.isin(comp, keep)
    # Holes: background components that do not touch the frame; small ones are misclassified
    # highlights, large ones are real gaps (between an arm and the body) and stay.
    count, comp, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    for label in range(1, count):
        x, y, cw, ch, area = stats[label]
        touches_frame = x == 0 or y == 0 or x + cw == w or y + ch == h
        if not touches_frame and area < MAX_HOLE_FRACTION * total:
            mask[comp == label] = True
    return mask


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of ``source`` steered by the grey ``guide`` (He, Sun & Tang 2010)."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(source)
    var_i = box(guide * guide) - mean_i * mean_i
    cov_ip = box(guide * source) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def mask_quality(alpha: np.ndarray) -> dict:
    """Coverage (share of pixels above 0.5) and mean of a matte, and whether it is usable.

    An empty mask (nothing found) or a full one (everything "subject") means segmentation failed;
    the caller moves on to the next method.
    """
    a = np.asarray(alpha, dtype=np.float32)
    coverage = float((a > 0.5).mean()) if a.size else 0.0
    mean = float(a.mean()) if a.size else 0.0
    empty = coverage < MIN_COVERAGE or mean < MIN_MEAN
    full = coverage > MAX_COVERAGE
    return {"coverage": coverage, "mean": mean, "empty": empty, "full": full, "usable": not (empty or full)}


def ellipse_mask(
    height: int, width: int, *, rx: float = 0.32, ry: float = 0.42, cy: float = 0.5, softness: float = 0.1
) -> np.ndarray:
    """Centred elliptical matte: radii ``rx``/``ry`` as fractions of width/height, soft rim of ``softness``.

    The defaults frame a typical centred subject; it is the mask of last resort.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    d = np.sqrt(((xx + 0.5) / width - 0.5) ** 2 / rx**2 + ((yy + 0.5) / height - cy) ** 2 / ry**2)
    return np.clip((1.0 - d) / max(softness, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)
