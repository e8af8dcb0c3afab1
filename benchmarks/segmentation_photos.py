"""The photo sets of the classic segmentation benchmark (studio backdrops and harder ones), each with its exact mask."""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks.drawing import SS, box, ellipse, noise_field, over, person_shape, rasterise, shape, strands, tinted

# ---------------------------------------------------------------- studio photos for the mask IoU
# Studio backdrops, and for each a "tonal" outfit near its colour (about dE 10-15: taupe on light
# grey, mid grey on a grey fall-off, charcoal on black, olive on green, denim on blue). Camouflage
# (dE < 5) defeats any colour model.
BACKDROPS = {
    "solid": ((225, 225, 222), (185, 178, 165)),
    "gradient": ((200, 205, 215), (120, 125, 140)),
    "dark": ((28, 28, 32), (58, 52, 62)),
    "green": ((20, 175, 70), (60, 125, 60)),
    "blue": ((15, 70, 185), (40, 75, 135)),
}
OUTFITS = [(40, 40, 60), (170, 40, 40), (235, 232, 220), (90, 120, 70)]


def studio_photo(backdrop: str, subject: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo, true matte): a portrait ("person", "tonal") or a product on a plain studio backdrop."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    colour, tonal = BACKDROPS[backdrop]
    back = np.float32(colour) * np.ones((size, size, 1), np.float32)
    if backdrop == "gradient":  # strong light fall-off: bright at the top, a third of that at the foot
        back = back * (1.2 - 0.8 * yy - 0.6 * (xx - 0.5) ** 2)[..., None]
    back *= (1 - 0.24 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2))[..., None]  # lens vignetting
    if subject in ("person", "tonal"):
        flyaways = strands(size, rng, (0.5, 0.36), (0.15, 0.19), int(60 * size / 1024) + 10, 0.06, arc=(200, 340))
        truth = np.maximum(person_shape(size), flyaways)
        contrasting = [c for c in OUTFITS if np.abs(np.subtract(c, colour)).max() > 60]
        cloth = tinted(size, rng, tonal if subject == "tonal" else contrasting[rng.integers(len(contrasting))], 0.3)
        fg = np.where(yy[..., None] < 0.52, np.float32((225, 180, 150)), cloth)
        fg = np.where(((yy < 0.28) | (flyaways > 0))[..., None], np.float32((70, 45, 30)), fg)  # dark hair
    else:
        truth = shape(size, box(0.33, 0.35, 0.62, 0.8), ellipse(0.62, 0.5, 0.1, 0.1))
        fg = tinted(size, rng, [(200, 60, 40), (60, 60, 70), (240, 200, 60)][rng.integers(3)], 0.3)
        fg = fg * np.ones((size, size, 1), np.float32)
    fg = fg * (1.1 - 0.3 * xx)[..., None]  # key light from the left
    shift = np.float32([[1, 0, size / 25], [0, 1, size / 40]])  # light from upper left
    shadow = cv2.GaussianBlur(cv2.warpAffine(truth, shift, (size, size)), (0, 0), size / 60)
    back = back * (1 - 0.25 * shadow)[..., None]  # soft drop shadow on the backdrop
    photo = over(fg, truth, np.clip(back, 0, 255).astype(np.uint8)).astype(np.float32)
    photo += rng.normal(0, 2.5, photo.shape)  # sensor noise
    return np.clip(photo, 0, 255).astype(np.uint8), truth


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    a, t = alpha > 0.5, truth > 0.5
    return float((a & t).sum() / max((a | t).sum(), 1))


# ---------------------------------------------------------------- harder backdrops for the mask IoU
# Textured backdrops (brick, wood, foliage) built from scikit-image's bundled photos, thin line-art
# and text on paper, and dark subjects on dark floors. Every subject is a drawn shape, so the true
# matte is exact; subject surfaces are crops of the bundled colour photos.
HARD_CLASSES = ("brick", "wood", "foliage", "lineart", "dark_floor")
HARD_SUBJECTS = {
    "brick": ("person", "product", "animal"),
    "wood": ("person", "product", "animal"),
    "foliage": ("person", "product", "animal"),
    "lineart": ("drawing", "text", "outline"),
    "dark_floor": ("standing", "product", "animal"),
}


def _skimage_picture(name: str) -> np.ndarray:
    """A picture bundled with scikit-image (no download): float32 grey HxW or RGB HxWx3 in 0-255."""
    from skimage import data

    return np.asarray(getattr(data, name)(), np.float32)


def _crop(picture: np.ndarray, size: int, rng: np.random.Generator, zoom: float) -> np.ndarray:
    """A random square crop, ``1/zoom`` of the picture's short side, resized to ``size``."""
    h, w = picture.shape[:2]
    side = max(8, int(min(h, w) / zoom))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return cv2.resize(picture[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)


def _ramp(grey: np.ndarray, dark, light, low: float, high: float) -> np.ndarray:
    """Colourise grey values: ``low`` maps to the dark colour, ``high`` to the light one."""
    t = np.clip((grey - low) / (high - low), 0.0, 1.0)[..., None]
    return (1 - t) * np.float32(dark) + t * np.float32(light)


def wood_texture(size: int, rng: np.random.Generator, dark, light, planks: int) -> np.ndarray:
    """Vertical planks of wavy growth rings, with dark seams between planks."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = 0.04 * (noise_field(size, rng, 5)[..., 0] - 0.5)
    plank = np.minimum((xx * planks).astype(np.int32), planks - 1)
    centre = rng.uniform(-0.5, 0.5, planks).astype(np.float32)[plank]
    rings = np.abs(xx * planks - plank - 0.5 - centre * 0.3 + warp + 0.15 * np.sin(yy * 3 + centre * 6))
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (rings * 9 + 0.4 * noise_field(size, rng, 12)[..., 0]))
    fibre = noise_field(size, rng, size // 3)[..., 0]
    t = np.clip(0.65 * grain + 0.35 * fibre, 0, 1)
    out = (1 - t[..., None]) * np.float32(dark) + t[..., None] * np.float32(light)
    seam = np.abs(xx * planks - np.rint(xx * planks)) < 0.012 * planks
    out[seam] *= 0.45
    return out


def _backdrop(kind: str, size: int, rng: np.random.Generator, variant: int) -> np.ndarray:
    if kind == "brick":  # mortar lines: thin, periodic, lighter than the bricks
        grey = _crop(_skimage_picture("brick"), size, rng, 1.0 + variant)
        dark, light = [((135, 58, 42), (208, 200, 188)), ((170, 165, 160), (226, 224, 218))][variant]
        return _ramp(grey, dark, light, 90, 180)
    if kind == "wood":
        dark, light = [((110, 70, 40), (200, 150, 100)), ((70, 45, 30), (150, 105, 70))][variant]
        return wood_texture(size, rng, dark, light, planks=4 + 2 * variant)
    if kind == "foliage":
        grey = _crop(_skimage_picture("grass"), size, rng, 1.0 + variant)
        return _ramp(grey, (20, 45, 12), [(150, 195, 90), (120, 160, 60)][variant], 30, 200)
    if kind == "lineart":  # printer paper, or cream sketchbook paper with grain
        yy = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        colour = [(244, 244, 240), (238, 230, 210)][variant]
        paper = np.float32(colour) * (1.0 - 0.05 * yy) * np.ones((size, size, 1), np.float32)
        return paper + [1.0, 5.0][variant] * (noise_field(size, rng, size // 4) - 0.5)
    # dark_floor: a dark wall, and from 70 % of the height down a darker floor (gravel or planks)
    yy = np.mgrid[0:size, 0:size][0].astype(np.float32) / size
    wall = np.float32([(52, 50, 56), (44, 46, 52)][variant]) * (1.1 - 0.3 * yy)[..., None]
    if variant == 0:
        floor = _ramp(_crop(_skimage_picture("gravel"), size, rng, 1.5), (16, 15, 14), (52, 48, 44), 40, 200)
    else:
        floor = wood_texture(size, rng, (18, 14, 12), (46, 36, 30), planks=8)
    return np.where((yy > 0.7)[..., None], floor, wall)


def _photo_surface(size: int, rng: np.random.Generator, name: str, gain: float = 1.0) -> np.ndarray:
    picture = _skimage_picture(name)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    return _crop(picture[..., :3], size, rng, 1.5) * np.float32(gain)


def horse_shape(size: int, cx: float, cy: float, width: float) -> np.ndarray:
    """scikit-image's horse silhouette, ``width`` of the frame wide, centred at (cx, cy), anti-aliased."""
    horse = (~np.asarray(_skimage_picture("horse") > 0)).astype(np.uint8)
    h, w = horse.shape
    n = size * SS
    scale = width * n / w
    m = np.float32([[scale, 0, cx * n - scale * w / 2], [0, scale, cy * n - scale * h / 2]])
    big = cv2.warpAffine(horse * 255, m, (n, n), flags=cv2.INTER_NEAREST)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _ink(size: int, rng: np.random.Generator, drawing: str) -> np.ndarray:
    """Coverage of thin pen strokes: a sketch, lines of text, or an outline with hatching."""
    width = max(1, round(max(1.5, 3.0 * size / 1024) * SS))  # 3 px at 1024, never under 1.5 px

    def draw(c: np.ndarray, s: int) -> None:
        n = size * s

        def pts(*xy):
            return np.int32([[x * n, y * n] for x, y in xy])

        if drawing == "drawing":  # a house, the sun, a spiral and a path
            cv2.polylines(c, [pts((0.2, 0.8), (0.2, 0.5), (0.4, 0.3), (0.6, 0.5), (0.6, 0.8))], True, 255, width)
            cv2.rectangle(c, tuple(pts((0.33, 0.62))[0]), tuple(pts((0.45, 0.8))[0]), 255, width)
            cv2.circle(c, tuple(pts((0.78, 0.22))[0]), int(0.08 * n), 255, width)
            t = np.linspace(0, 6 * np.pi, 200)
            spiral = np.stack([0.78 + 0.009 * t * np.cos(t), 0.6 + 0.009 * t * np.sin(t)], 1)
            cv2.polylines(c, [np.int32(spiral * n)], False, 255, width)
            path = [(0.1 + 0.8 * k / 12, 0.88 + 0.03 * np.sin(k)) for k in range(13)]
            cv2.polylines(c, [pts(*path)], False, 255, width)
        elif drawing == "text":
            words = ["Background", "replacement", "keeps every", "thin stroke", "of the ink."]
            for row, word in enumerate(words):
                org = tuple(pts((0.1, 0.2 + 0.16 * row))[0])
                cv2.putText(c, word, org, cv2.FONT_HERSHEY_SIMPLEX, 2.4 * n / 1024, 255, width, cv2.LINE_8)
        else:  # the horse's outline and a hatched shadow under it
            horse = np.uint8(horse_shape(size * s // SS, 0.5, 0.45, 0.7) > 0.5)
            contours, _ = cv2.findContours(horse, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(c, [k * SS for k in contours], -1, 255, width)
            for k in range(14):
                x = 0.2 + 0.045 * k
                cv2.line(c, tuple(pts((x, 0.86))[0]), tuple(pts((x + 0.06, 0.8))[0]), 255, width)

    del rng
    return rasterise(size, draw)


def hard_photo(kind: str, subject: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo, true matte) for one of ``HARD_CLASSES``; ``seed`` also picks the backdrop variant (0/1)."""
    rng = np.random.default_rng(1000 + seed)
    variant = seed % 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    back = _backdrop(kind, size, rng, variant)
    if kind == "lineart":
        truth = _ink(size, rng, subject)
        ink = np.float32([(25, 25, 38), (85, 85, 92)][variant])  # pen on paper, pencil on the sketchbook
        fg = ink * np.ones((size, size, 1), np.float32)
        shadow = np.zeros((size, size), np.float32)
    else:
        if kind == "dark_floor":
            if subject == "standing":  # full figure, charcoal trousers and black shoes on the floor
                truth = shape(
                    size,
                    ellipse(0.5, 0.14, 0.06, 0.08),
                    box(0.4, 0.22, 0.6, 0.55),
                    box(0.41, 0.55, 0.49, 0.9),
                    box(0.51, 0.55, 0.59, 0.9),
                    ellipse(0.43, 0.92, 0.06, 0.03),
                    ellipse(0.57, 0.92, 0.06, 0.03),
                )
                fg = np.where((yy < 0.22)[..., None], np.float32((150, 110, 90)), np.float32((120, 40, 50)))
                fg = np.where((yy > 0.55)[..., None], np.float32((30, 36, 70)), fg)  # navy jeans
                fg = np.where((yy > 0.885)[..., None], np.float32((14, 14, 16)), fg)  # black shoes
                fg = fg * (0.9 + 0.2 * noise_field(size, rng, 40))
            elif subject == "product":  # a black camera bag standing on the floor
                truth = shape(size, box(0.3, 0.5, 0.7, 0.93), ellipse(0.5, 0.5, 0.2, 0.08, 180))
                fg = np.float32((24, 24, 27)) * (0.8 + 0.5 * noise_field(size, rng, 30))
                fg = fg * (1.2 - 0.5 * yy)[..., None]
            else:  # a dark horse on the floor, its hooves on the floor line
                truth = horse_shape(size, 0.5, 0.62, 0.8)
                fg = _photo_surface(size, rng, "chelsea", 0.22)
        else:
            if subject == "person":
                flyaways = strands(size, rng, (0.5, 0.36), (0.15, 0.19), int(60 * size / 1024) + 10, 0.06, (200, 340))
                truth = np.maximum(person_shape(size), flyaways)
                cloth = _photo_surface(size, rng, "astronaut", 0.9)
                fg = np.where(yy[..., None] < 0.52, np.float32((225, 180, 150)), cloth)
                fg = np.where(((yy < 0.28) | (flyaways > 0))[..., None], np.float32((70, 45, 30)), fg)
            elif subject == "product":
                truth = shape(size, box(0.33, 0.35, 0.62, 0.8), ellipse(0.62, 0.5, 0.1, 0.1))
                fg = _photo_surface(size, rng, ["coffee", "rocket"][variant])
            else:
                truth = horse_shape(size, 0.5, 0.5, 0.75)
                fg = _photo_surface(size, rng, "chelsea")
        fg = fg * (1.1 - 0.3 * xx)[..., None]  # key light from the left
        shift = np.float32([[1, 0, size / 25], [0, 1, size / 40]])
        shadow = cv2.GaussianBlur(cv2.warpAffine(truth, shift, (size, size)), (0, 0), size / 60)
    back = back * (1 - 0.25 * shadow)[..., None]
    photo = over(fg, truth, np.clip(back, 0, 255).astype(np.uint8)).astype(np.float32)
    photo += rng.normal(0, 2.5, photo.shape)  # sensor noise
    return np.clip(photo, 0, 255).astype(np.uint8), truth
