"""Subject masks without model weights: the fallback for plain studio backdrops.

It runs where no segmentation checkpoint is installed. The picture is assumed to be a subject in
front of a fairly plain backdrop (solid, gradient, dark, green or blue screen) that shows along the
frame's border. A smooth colour model of that backdrop is fitted to the border, every pixel's
distance from it seeds OpenCV's GrabCut, and the cut is cleaned up and upsampled with an
edge-aware filter. A textured backdrop (brick, wood, foliage: the smooth model leaves large
residuals or the border is busy at a 7x7 scale) is instead measured against a k-means palette of the
border's colours, with the same shadow muting; if that finds no usable subject the smooth model is
tried. Thin dark strokes on light paper (line-art, text) skip GrabCut: their coverage is read at up
to 1600 px from linear luminance against the local paper brightness, and ``mask_quality`` does not
call such sparse, frame-spanning ink empty. Pictures that break the assumptions give masks
``mask_quality`` flags as unusable; ``ellipse_mask`` is the last resort.
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
# Above this 90th-percentile border residual (Lab) of the smooth model the backdrop is textured and
# modelled by a palette of PALETTE_SIZE border colours; pixels beyond PALETTE_REACH times the palette's
# 99th-percentile border distance are strangers to it. A side more than CROSSED_SIDE_FRACTION
# strangers to the other sides' palette is crossed by the subject.
PLAIN_NOISE = 6.0
PALETTE_SIZE = 10
PALETTE_REACH = 1.5
CROSSED_SIDE_FRACTION = 0.25
# Line-art: the share of the work image clearly off a light paper (grey >= LINE_ART_MIN_PAPER), at
# least LINE_ART_MIN_CONTRAST darker, of which at most LINE_ART_SOLID_RATIO survives a 3x3 opening.
# A border texture (TEXTURE_STD, see _border_texture) above this also counts as textured.
TEXTURE_STD = 1.5
# Line-art: thin dark strokes on plain paper (border grey >= LINE_ART_MIN_PAPER), analysed at up to
# LINE_ART_SIDE; see _line_art_alpha. Lengths are shares of the short side.
LINE_ART_SIDE = 1600
LINE_ART_MIN_PAPER = 150.0
LINE_ART_MIN_SHARE = 0.001
LINE_ART_MAX_SHARE = 0.2
LINE_ART_SOLID_RATIO = 0.8
LINE_ART_MAX_SOLID = 0.01  # share of the work image that may survive a 5x5 opening
LINE_ART_REACH = 0.012  # paper brightness window half-width (wider than a stroke)
LINE_ART_STROKE = 0.006  # opening half-width: strokes up to about 1.2 % of the short side wide
LINE_ART_MIN_SPECK = 6  # px; smaller ink components are dust
# Usability limits for a mask (the seed's rule for rejecting models' masks: coverage < 3 %).
MIN_COVERAGE = 0.03
MAX_COVERAGE = 0.97
MIN_MEAN = 10.0 / 255.0
# ...except line-art and text: at least MIN_STROKE_COVERAGE ink whose bounding box spans at least
# MIN_STROKE_SPAN of the frame and is at most MAX_STROKE_DENSITY ink (see _strokes).
MIN_STROKE_COVERAGE = 0.002
MIN_STROKE_SPAN = 0.25
MAX_STROKE_DENSITY = 0.25


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
    noise = float(np.percentile(distance[border_inliers], 90)) if border_inliers.any() else 0.0
    textured = noise > PLAIN_NOISE or _border_texture(small) > TEXTURE_STD
    if not textured and _may_be_line_art(small, distance, noise):
        line_art = _line_art_alpha(image_rgb)
        if line_art is not None:
            return line_art
    hard = None
    if textured:
        # A textured backdrop (brick, wood, foliage): no smooth colour field fits it, so every pixel
        # is measured against the palette of colours the border shows instead. Where that finds no
        # usable subject (a dark subject whose colours the floor's palette also holds), the smooth
        # model, which knows where on the frame each backdrop colour is, gets its turn.
        hard = _cut(small, *_palette_distance(small))
        if not mask_quality(hard)["usable"]:
            hard = None
    if hard is None:
        hard = _cut(small, distance, border_inliers)
    soft = cv2.resize(hard.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(2, round(1.5 / scale))
    return np.clip(guided_filter(grey, soft, radius, 1e-3), 0.0, 1.0).astype(np.float32)


def _cut(small_rgb: np.ndarray, distance: np.ndarray, border_inliers: np.ndarray) -> np.ndarray:
    # GrabCut works on the colours themselves: the seeds mute shadows, which also mutes a grey
    # subject darker than a grey backdrop; GrabCut's colour models and edges recover those.
    return _clean(_grabcut(small_rgb, _seed_labels(distance, border_inliers)))


def _may_be_line_art(small_rgb: np.ndarray, distance: np.ndarray, noise: float) -> bool:
    """Light paper at the border and nothing solid on it: what stands out from the backdrop model
    at the work size vanishes under a 5x5 opening (strokes are a pixel or two wide there)."""
    grey = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2GRAY)
    if float(np.median(grey[_border_mask(*grey.shape)])) < LINE_ART_MIN_PAPER:
        return False
    different = (distance > max(4.0 * noise, MIN_HIGH_THRESHOLD)).astype(np.uint8)
    solid = cv2.morphologyEx(different, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    return float(solid.mean()) <= LINE_ART_MAX_SOLID


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


def _side_masks(h: int, w: int) -> list[np.ndarray]:
    """The border split into its four sides (top, bottom, left, right); corners belong to two."""
    width = max(2, round(BORDER_FRACTION * min(h, w)))
    sides = [np.zeros((h, w), bool) for _ in range(4)]
    sides[0][:width], sides[1][-width:], sides[2][:, :width], sides[3][:, -width:] = True, True, True, True
    return sides


def _palette(samples: np.ndarray) -> np.ndarray:
    """PALETTE_SIZE k-means centres of Lab samples (deterministic: fixed RNG seed, k-means++ start)."""
    k = min(PALETTE_SIZE, len(samples))
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(samples, np.float32), k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Distance from each (L+16, a, b) point to its nearest centre, darkening along a centre muted
    as in the smooth model (a cast shadow on brick is darker brick, not a subject)."""
    flat = points.reshape(-1, 3)
    dot = flat @ centres.T
    norm2 = (centres * centres).sum(1)[None]
    scale = SHADOW_WEIGHT + (1.0 - SHADOW_WEIGHT) * np.minimum(dot / (norm2 + 1e-6), 1.0)
    d2 = (flat * flat).sum(1)[:, None] - 2.0 * scale * dot + scale * scale * norm2
    return np.sqrt(np.maximum(d2.min(1), 0.0)).reshape(points.shape[:-1])


def _palette_distance(small_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's Lab distance from the nearest of the border's k-means colours, and border inliers.

    A side most of whose pixels the other three sides' palette cannot explain is taken to be crossed
    by the subject (shoulders at the bottom edge) and left out of the palette, at most two sides.
    """
    h, w = small_rgb.shape[:2]
    lab = cv2.cvtColor(small_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab[..., 0] += 16.0
    sides = _side_masks(h, w)
    border = np.any(sides, axis=0)
    dropped = []
    for i, side in enumerate(sides):
        others = border & ~side
        centres = _palette(lab[others])
        reach = PALETTE_REACH * max(float(np.percentile(_nearest(lab[others], centres), 99)), 1.0)
        strangers = float((_nearest(lab[side & ~others], centres) > reach).mean())
        if strangers > CROSSED_SIDE_FRACTION:
            dropped.append((strangers, i))
    kept = border.copy()
    for _, i in sorted(dropped, reverse=True)[:2]:
        kept &= ~sides[i]
    centres = _palette(lab[kept])
    distance = _nearest(lab, centres).astype(np.float32)
    reach = PALETTE_REACH * max(float(np.percentile(distance[kept], 99)), 1.0)
    return distance, border & (distance <= reach)


def _border_texture(small_rgb: np.ndarray) -> float:
    """75th percentile over the border of the local (7x7) Lab standard deviation: sensor noise on a
    plain backdrop stays near 1, brick, wood, foliage and gravel reach several units."""
    lab = cv2.cvtColor(small_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    mean = cv2.blur(lab, (7, 7))
    spread = np.sqrt(np.maximum(cv2.blur(lab * lab, (7, 7)) - mean * mean, 0.0).sum(-1))
    return float(np.percentile(spread[_border_mask(*spread.shape)], 75))


def _line_art_alpha(image_rgb: np.ndarray) -> np.ndarray | None:
    """Ink coverage of thin dark strokes on light paper, or None when the picture is not line-art.

    Works at up to LINE_ART_SIDE (strokes are a few pixels wide). Paper brightness is the local
    maximum of linear luminance over a window wider than a stroke, smoothed; ink is the 90th
    percentile depth of the clearly dark pixels. In linear light a pixel covered a fraction ``c`` by
    ink has luminance ``paper - c * (paper - ink)``, so ``c`` is its depth over the ink's. It is
    line-art when that ink covers LINE_ART_MIN_SHARE-LINE_ART_MAX_SHARE of the picture and at most
    LINE_ART_SOLID_RATIO of it survives an opening as wide as a stroke may be; a solid subject does.
    """
    h, w = image_rgb.shape[:2]
    scale = min(1.0, LINE_ART_SIDE / max(h, w))
    work = image_rgb
    if scale < 1.0:
        work = cv2.resize(image_rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    codes = np.arange(256, dtype=np.float32) / 255.0
    lut = np.where(codes <= 0.04045, codes / 12.92, ((codes + 0.055) / 1.055) ** 2.4).astype(np.float32)
    lum = lut[work] @ np.float32([0.2126, 0.7152, 0.0722])
    short = min(lum.shape)
    reach = max(3, round(LINE_ART_REACH * short))
    size = (2 * reach + 1, 2 * reach + 1)
    paper = cv2.blur(cv2.dilate(lum, np.ones(size, np.uint8)), size)
    depth = np.maximum(paper - lum, 0.0)
    dark = depth > 0.3 * float(np.median(paper))
    share = float(dark.mean())
    if not LINE_ART_MIN_SHARE <= share <= LINE_ART_MAX_SHARE:
        return None
    stroke = max(1, round(LINE_ART_STROKE * short))
    opening = np.ones((2 * stroke + 1, 2 * stroke + 1), np.uint8)
    solid = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, opening)
    if float(solid.sum()) > LINE_ART_SOLID_RATIO * float(dark.sum()):
        return None
    ink_depth = float(np.percentile(depth[dark], 90))
    alpha = np.clip(depth / max(ink_depth, 1e-3), 0.0, 1.0)
    # Paper grain and sensor noise: departures under the border's 99th percentile are paper.
    alpha[depth <= float(np.percentile(depth[_border_mask(*depth.shape)], 99))] = 0.0
    # Isolated components a few pixels across are dust, not strokes.
    count, comp, stats, _ = cv2.connectedComponentsWithStats((alpha > 0.5).astype(np.uint8), connectivity=8)
    specks = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < LINE_ART_MIN_SPECK) + 1
    if len(specks):
        alpha[np.isin(comp, specks)] = 0.0
    if scale < 1.0:
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    return alpha.astype(np.float32)


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
    the caller moves on to the next method. Thin strokes spread over the frame (line-art, text) are
    not empty even below the coverage and mean floors.
    """
    a = np.asarray(alpha, dtype=np.float32)
    coverage = float((a > 0.5).mean()) if a.size else 0.0
    mean = float(a.mean()) if a.size else 0.0
    empty = coverage < MIN_COVERAGE or mean < MIN_MEAN
    if empty and coverage >= MIN_STROKE_COVERAGE:
        empty = not _strokes(a > 0.5, coverage)
    full = coverage > MAX_COVERAGE
    return {"coverage": coverage, "mean": mean, "empty": empty, "full": full, "usable": not (empty or full)}


def _strokes(solid: np.ndarray, coverage: float) -> bool:
    """Line-art or text: little ink, but spread over much of the frame (its bounding box covers at
    least MIN_STROKE_SPAN of it) and sparse within that box; a speck or a stray blob is neither."""
    rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
    span = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / solid.size
    return span >= MIN_STROKE_SPAN and coverage <= MAX_STROKE_DENSITY * span


def ellipse_mask(
    height: int, width: int, *, rx: float = 0.32, ry: float = 0.42, cy: float = 0.5, softness: float = 0.1
) -> np.ndarray:
    """Centred elliptical matte: radii ``rx``/``ry`` as fractions of width/height, soft rim of ``softness``.

    The defaults frame a typical centred subject; it is the mask of last resort.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    d = np.sqrt(((xx + 0.5) / width - 0.5) ** 2 / rx**2 + ((yy + 0.5) / height - cy) ** 2 / ry**2)
    return np.clip((1.0 - d) / max(softness, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)
