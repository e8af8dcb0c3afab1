"""Colour matching of a long video's segments to one fixed anchor: the source image.

Each segment of a chained video starts on the previous one's last frame, so a small shift in exposure or
white balance per segment would add up over six segments. Every segment is therefore matched to the
*source image*, never to the previous segment, so the error cannot accumulate.

Method (von Kries in linear light): exposure and white balance are per-channel gains on linear RGB, so the
correction is three gains. Each gain is fitted by least squares between the quantiles (2 %..98 %) of the
frame's channel and the anchor's, leaving out quantiles that are clipped (linear > 0.9) or black (< 0.002)
in either: statistics, not pixel correspondences, so motion and new content in the frame do not matter, and
clipped highlights (whose true value is lost) do not pull the gain down. Gains are clamped to 1/2..2 so a
scene that really changed is not forced to the anchor's colours.

Within a segment the gains are not applied as one constant: they are computed for the segment's first
frame and its last frame and interpolated (geometrically) in between. The first frame is the seam, already
matched as the previous segment's last frame, so its gains are ~1 and nothing jumps at the seam, while the
drift that builds up across the segment is taken out by its end.
"""

from __future__ import annotations

import numpy as np

QUANTILES = np.linspace(0.02, 0.98, 49)
CLIPPED, BLACK = 0.9, 0.002
MIN_GAIN, MAX_GAIN = 0.5, 2.0
_SAMPLE_PIXELS = 65_536  # quantiles of a subsample: the same gains to 3 decimals, 10x faster on 832x480


def linear_from_srgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear light in 0..1."""
    x = pixels.astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def srgb_from_linear(linear: np.ndarray) -> np.ndarray:
    """float linear light -> uint8 sRGB (clipped to the displayable range)."""
    x = np.clip(linear, 0.0, 1.0)
    x = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(x * 255.0).astype(np.uint8)


def _channel_quantiles(image: np.ndarray) -> np.ndarray:
    pixels = linear_from_srgb(image.reshape(-1, 3))
    if len(pixels) > _SAMPLE_PIXELS:
        pixels = pixels[:: len(pixels) // _SAMPLE_PIXELS]
    return np.quantile(pixels, QUANTILES, axis=0)  # (quantiles, 3)


def anchor_statistics(anchor: np.ndarray) -> np.ndarray:
    """What matching needs of the anchor (computed once per job)."""
    return _channel_quantiles(anchor)


def channel_gains(frame: np.ndarray, anchor_stats: np.ndarray) -> np.ndarray:
    """The three linear-light gains that bring ``frame``'s colours to the anchor's (see the module docs)."""
    ours = _channel_quantiles(frame)
    gains = np.ones(3, dtype=np.float64)
    for channel in range(3):
        f, a = ours[:, channel], anchor_stats[:, channel]
        usable = (f < CLIPPED) & (a < CLIPPED) & (f > BLACK) & (a > BLACK)
        if usable.sum() >= 3:
            gains[channel] = float((a[usable] * f[usable]).sum() / (f[usable] ** 2).sum())
    return np.clip(gains, MIN_GAIN, MAX_GAIN)


_LEVELS = linear_from_srgb(np.arange(256, dtype=np.uint8))


def apply_gains(frame: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``frame`` with its linear-light channels scaled by ``gains``: one 256-entry table per channel, so a
    frame costs three lookups instead of two power functions per pixel."""
    tables = srgb_from_linear(_LEVELS[:, None] * gains[None, :].astype(np.float32))  # (256, 3)
    out = np.empty_like(frame)
    for channel in range(3):
        out[..., channel] = tables[frame[..., channel], channel]
    return out


def match_frame(frame: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """One frame matched to ``anchor`` (both uint8 RGB, any sizes)."""
    return apply_gains(frame, channel_gains(frame, anchor_statistics(anchor)))


def match_segment(frames: np.ndarray, anchor_stats: np.ndarray) -> tuple[np.ndarray, dict]:
    """A segment's frames (uint8, (n, h, w, 3)) matched to the anchor, the gains ramped from its first frame
    to its last; returns the matched frames and the two gain triples (recorded in the job's timings)."""
    first = channel_gains(frames[0], anchor_stats)
    last = channel_gains(frames[-1], anchor_stats)
    count = len(frames)
    out = np.empty_like(frames)
    for index in range(count):
        weight = index / (count - 1) if count > 1 else 1.0
        gains = np.exp((1 - weight) * np.log(first) + weight * np.log(last))
        out[index] = apply_gains(frames[index], gains)
    return out, {"first": [round(g, 4) for g in first.tolist()], "last": [round(g, 4) for g in last.tolist()]}
