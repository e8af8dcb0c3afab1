"""Compositing and classic-segmentation benchmark on synthetic cases with known answers.

Every compositing case is a foreground ``F`` with a known matte ``a``, composited onto an old
background ``A`` (the "photo") and onto a new background ``B`` (the target) by the compositing
equation ``I = a*F + (1 - a)*B``, once on sRGB values (how matting datasets and segmentation models
define alpha) and once on linear-light values (a physically mixed render). The ground truth is built
here from the equation, independently of the engine's code. Each method gets the photo, ``B`` and the
true matte; mean CIEDE2000 against the target is reported in the edge band (every fractional-matte
pixel plus 2 px), over the whole image, in the opaque core and in the background, with the median
time per 1024x1024 composite on one thread. The last tables are the IoU of the classic fallback mask
against the true silhouette: on plain studio backdrops, next to the seed's Sobel/Laplacian contour
method, then per class on harder backdrops (brick, wood, foliage, line-art and text, dark subjects
on dark floors) with the number of masks the chain would replace by its ellipse.

    python benchmarks/compositing.py [--size 1024] [--repeats 3] [--quick] [--masks-only]
"""

from __future__ import annotations

import os

# One core, as the targets say; must be set before numpy/numba start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.drawing import box, ellipse, over, person_shape, shape, strands, textured, tinted  # noqa: E402
from benchmarks.segmentation_photos import HARD_CLASSES, HARD_SUBJECTS, hard_photo, iou, studio_photo  # noqa: E402
from pipelines.background.compositor import (  # noqa: E402
    composite_onto_background,
    linear_to_srgb,
    plain_alpha_blend,
    srgb_to_linear,
)
from pipelines.background.segmentation.classic import (  # noqa: E402
    classic_foreground_alpha,
    ellipse_mask,
    mask_quality,
)

# Portrait cases: hair colour, clothing colour (near the old backdrop on purpose in the last three),
# old backdrop (top, bottom, blotch strength), new backdrop (top, bottom).
PORTRAITS = {
    "hair": ((110, 75, 45), (60, 90, 150), ((120, 140, 110), (80, 100, 70), 40), ((150, 190, 240), (230, 220, 200))),
    "dark_bg": ((60, 40, 30), (20, 22, 35), ((14, 14, 18), (8, 8, 10), 6), ((235, 225, 205), (200, 190, 170))),
    "green_screen": ((200, 160, 90), (40, 150, 90), ((20, 180, 70), (10, 160, 60), 12), ((200, 120, 60), (60, 40, 80))),
    "blue_screen": (
        (230, 210, 170),
        (30, 70, 160),
        ((10, 70, 190), (5, 55, 170), 12),
        ((240, 200, 120), (120, 90, 60)),
    ),
}


def case(name: str, size: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(foreground sRGB float, matte, old background, new background) for one case class."""
    rng = np.random.default_rng(seed)
    flat = np.ones((size, size, 1), np.float32)
    if name == "cartoon":  # flat fill inside a 1 %-of-width black outline, on paper
        alpha = shape(size, ellipse(0.5, 0.5, 0.3, 0.3))
        inner = shape(size, ellipse(0.5, 0.5, 0.29, 0.29))
        fg = np.where(inner[..., None] > 0.5, np.float32([250, 200, 40]), np.float32([15, 10, 10])) * flat
        old = np.full((size, size, 3), (245, 240, 225), np.uint8)
        new = textured(size, rng, (90, 140, 200), (40, 90, 40))
    elif name == "object":  # hard-edged product; its grey label band matches the grey backdrop
        alpha = shape(size, box(0.35, 0.3, 0.65, 0.85), ellipse(0.5, 0.3, 0.15, 0.15))
        fg = tinted(size, rng, (190, 30, 35)) * flat
        band = slice(int(0.5 * size), int(0.7 * size))
        fg[band] = tinted(size, rng, (200, 200, 205), 0.05)[band]
        old = textured(size, rng, (215, 215, 220), (170, 170, 175), 10)
        new = textured(size, rng, (90, 60, 35), (40, 25, 15))
    elif name == "fur":  # short dense fur all round, beige on a beige wall
        body = cv2.GaussianBlur(shape(size, ellipse(0.5, 0.55, 0.3, 0.25)), (0, 0), 1.5)
        fur = strands(size, rng, (0.5, 0.55), (0.3, 0.25), int(1500 * size / 1024) + 200, 0.04, arc=(0, 360))
        alpha = np.maximum(body, fur)
        fg = tinted(size, rng, (205, 185, 150), 0.3)
        old = textured(size, rng, (215, 198, 170), (195, 180, 150), 15)
        new = textured(size, rng, (30, 70, 30), (20, 50, 25))
    else:  # portrait with long thin flyaway strands
        hair_colour, cloth_colour, old_spec, new_spec = PORTRAITS[name]
        hair = strands(size, rng, (0.5, 0.36), (0.15, 0.19), int(400 * size / 1024) + 60, 0.12)
        alpha = np.maximum(person_shape(size), hair)
        old, new = textured(size, rng, *old_spec), textured(size, rng, *new_spec)
        upper = (np.arange(size) < size // 2)[:, None, None]
        fg = np.where(upper, tinted(size, rng, (225, 180, 150), 0.15), tinted(size, rng, cloth_colour, 0.35))
        fg = np.where((hair > 0.02)[..., None], tinted(size, rng, hair_colour, 0.5), fg)
    return fg.astype(np.float32), alpha.astype(np.float32), old, new


def _decode_srgb(values: np.ndarray) -> np.ndarray:
    """8-bit sRGB codes -> linear light, by the IEC 61966-2-1 formula (float64, no shared tables)."""
    v = np.asarray(values, np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _encode_srgb(linear: np.ndarray) -> np.ndarray:
    v = np.clip(linear, 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055) * 255.0


def mix(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, space: str) -> np.ndarray:
    """Ground truth: ``I = a*F + (1 - a)*B`` on 8-bit ``F`` and ``B``, applied to the values of ``space``.

    ``"srgb"``: the equation on sRGB code values, the way matting datasets define alpha. ``"linear"``:
    the equation on linear light. Written from the definition in float64 (not with the engine's
    helpers), then rounded to 8 bits.
    """
    f8 = np.clip(np.rint(fg), 0, 255).astype(np.float64)
    b8 = np.asarray(bg, np.float64)
    a = np.asarray(alpha, np.float64)[..., None]
    if space == "srgb":
        mixed = a * f8 + (1 - a) * b8
    elif space == "linear":
        mixed = _encode_srgb(a * _decode_srgb(f8) + (1 - a) * _decode_srgb(b8))
    else:
        raise ValueError(space)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def plain_linear(image: np.ndarray, new_bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Plain blend in linear light: separates the gain of linear blending from that of colour estimation."""
    return over(image.astype(np.float32), alpha, new_bg)


# ---------------------------------------------------------------- the seed's recipe, re-implemented
def seed_recipe(image: np.ndarray, new_bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The seed's compositing steps with its published constants.

    Published: 1 px edge erosion; old backdrop colour = mode of a 15 px border quantised to 32; ring
    pixels within dE 30 of it inpainted; spill suppression below dE 18 with strength
    0.85*(1 - dE/18) clipped to [0.255, 0.85]; dark-edge protection (grey < 60, strong gradient);
    ring alpha binarised at 0.5 (0.6 if dark); linear-light blend; mask >= 140 copies the photo.
    Filled in here: the ring is 3 px either side of the 0.5 contour plus every fractional pixel,
    spill suppression pulls Lab chroma towards neutral, "strong gradient" is a Sobel magnitude > 80.
    """
    m = cv2.erode(np.rint(alpha * 255).astype(np.uint8), np.ones((3, 3), np.uint8))  # 1 px edge erosion
    border = np.concatenate(
        [
            image[:15].reshape(-1, 3),
            image[-15:].reshape(-1, 3),
            image[:, :15].reshape(-1, 3),
            image[:, -15:].reshape(-1, 3),
        ]
    )
    quant = border // 32
    keys, counts = np.unique(quant[:, 0] * 64 + quant[:, 1] * 8 + quant[:, 2], return_counts=True)
    k = int(keys[counts.argmax()])
    old_rgb = (np.array([k // 64, (k // 8) % 8, k % 8]) * 32 + 16) / 255.0
    old_lab = rgb2lab(old_rgb[None, None])[0, 0]
    hard = (m >= 128).astype(np.uint8)
    ring_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    ring = (cv2.dilate(hard, ring_k) > cv2.erode(hard, ring_k)) | ((m > 0) & (m < 255))
    lab_ring = rgb2lab(image[ring] / 255.0)
    de = deltaE_ciede2000(lab_ring, old_lab[None])
    close = np.zeros(m.shape, np.uint8)
    close[ring] = de < 30  # foreground pixels resembling the old backdrop: inpaint them
    fgc = cv2.inpaint(image, close, 3, cv2.INPAINT_TELEA) if close.any() else image.copy()
    lab_fix = rgb2lab(fgc[ring] / 255.0)
    spill = de < 18
    strength = np.clip(0.85 * (1 - de / 18), 0.255, 0.85)
    lab_fix[spill, 1:] *= (1 - strength[spill])[:, None]  # spill suppression: pull chroma to neutral
    fgc[ring] = np.clip(np.rint(lab2rgb(lab_fix) * 255), 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    dark = grey < 60
    a = m.astype(np.float32) / 255
    a = np.where(ring, np.where(dark, a >= 0.6, a >= 0.5).astype(np.float32), a)  # binarise the ring
    a[ring & dark & (grad > 80)] = 1.0  # dark-edge protection
    out = linear_to_srgb(a[..., None] * srgb_to_linear(fgc) + (1 - a[..., None]) * srgb_to_linear(new_bg))
    out[m >= 140] = image[m >= 140]
    return out


def seed_contour_mask(image: np.ndarray) -> np.ndarray:
    """The seed's classic fallback: |Sobel|*0.7 + |Laplacian|*0.3, largest contour, dark union.

    Its threshold values are not published; Otsu on the edge map and grey < 50 stand in. The
    guided filter it ends with only smooths the rim and is left out (no effect on IoU at 0.5).
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    g = grey.astype(np.float32)
    edges = 0.7 * cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    edges += 0.3 * np.abs(cv2.Laplacian(g, cv2.CV_32F))
    edges = cv2.normalize(edges, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    _, binary = cv2.threshold(edges, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8), iterations=2)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros_like(grey)
    if contours:
        cv2.drawContours(mask, [max(contours, key=cv2.contourArea)], -1, 255, -1)
    mask[grey < 50] = 255  # dark-region union
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    return np.clip(dist / 10.0, 0, 1).astype(np.float32)


# ---------------------------------------------------------------- measuring
def regions(alpha: np.ndarray) -> dict[str, np.ndarray]:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    some = (alpha > 1 / 512).astype(np.uint8)
    notfull = (alpha < 1 - 1 / 512).astype(np.uint8)
    edge = (cv2.dilate(some, k) > 0) & (cv2.dilate(notfull, k) > 0)
    return {"edge": edge, "core": ~edge & (notfull == 0), "bg": ~edge & (some == 0)}


def de_map(lab_target: np.ndarray, target: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 of ``out`` against the target (exactly 0 where the 8-bit values agree)."""
    de = np.zeros(target.shape[:2], np.float64)
    differ = (out != target).any(axis=2)
    if differ.any():
        de[differ] = deltaE_ciede2000(lab_target[differ], rgb2lab(out[differ][None] / 255.0)[0])
    return de


def mean_over(de: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is None:
        return float(de.mean())
    return float(de[mask].mean()) if mask.any() else float("nan")


def timed(fn, *args, repeats: int) -> tuple[np.ndarray, float]:
    """Output and median wall time in seconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return out, float(np.median(times))


def compositing_table(names: list[str], size: int, methods: dict, truth: str, repeats: int) -> dict:
    """One ground truth: per-case rows for every method, then the per-method summary. Returns the scores."""
    scale = (1024 * 1024) / (size * size)
    print(f"\nGround truth mixed on {truth.upper()} values; {size}x{size}, true matte given; mean CIEDE2000 vs target")
    print(f"{'case':<13} {'method':<10} {'edge dE':>8} {'image dE':>9} {'core dE':>8} {'bg dE':>7} {'ms/1024^2':>10}")
    scores = {m: {"edge": {}, "image": {}, "ms": {}} for m in methods}
    for name in names:
        fg, alpha, old, new = case(name, size)
        photo, target = mix(fg, alpha, old, truth), mix(fg, alpha, new, truth)
        lab_t = rgb2lab(target / 255.0)
        reg = regions(alpha)
        for method, fn in methods.items():
            out, secs = timed(fn, photo, new, alpha, repeats=repeats)
            de = de_map(lab_t, target, out)
            row = scores[method]
            row["edge"][name] = mean_over(de, reg["edge"])
            row["image"][name] = mean_over(de)
            row["ms"][name] = secs * 1000 * scale
            print(
                f"{name:<13} {method:<10} {row['edge'][name]:8.2f} {row['image'][name]:9.3f} "
                f"{mean_over(de, reg['core']):8.2f} {mean_over(de, reg['bg']):7.2f} {row['ms'][name]:10.0f}"
            )
    print(f"{'all cases':<13} {'method':<10} {'edge dE':>8} {'image dE':>9} {'worst edge':>11} {'median ms':>10}")
    for method, row in scores.items():
        edge = list(row["edge"].values())
        print(
            f"{'mean':<13} {method:<10} {np.mean(edge):8.2f} {np.mean(list(row['image'].values())):9.3f} "
            f"{max(edge):11.2f} {np.median(list(row['ms'].values())):10.0f}"
        )
    matched = "engine" if truth == "srgb" else "engine_lin"  # the engine blending in the space alpha was made in
    for baseline in ("plain", "plain_lin"):
        worse = [n for n in names if scores[matched]["edge"][n] > scores[baseline]["edge"][n]]
        print(
            f"{matched} vs {baseline}: edge dE worse in {len(worse)}/{len(names)} classes"
            + (f" ({', '.join(worse)})" if worse else "")
        )
    print(
        f"{matched}: mean edge dE {np.mean(list(scores[matched]['edge'].values())):.2f}"
        + (" (target <= 0.9 on sRGB-defined alphas)" if truth == "srgb" else "")
        + f", median {np.median(list(scores[matched]['ms'].values())):.0f} ms per 1024^2 (target <= 150)"
        + ("" if size == 1024 else f"; times scaled from {size}^2 by pixel count")
    )
    return scores


def imperfect_mattes(names: list[str], size: int, methods: dict, truth: str) -> None:
    """Edge-band dE when the matte is off the way a segmentation model's is (scored on the true band)."""
    perturbations = {"blurred 1px": lambda a: cv2.GaussianBlur(a, (0, 0), 1.0), "too thin (a^1.4)": lambda a: a**1.4}
    print(
        f"\nImperfect matte, {truth.upper()} ground truth, mean edge dE over {len(names)} cases: "
        + "  ".join(f"{m:>10}" for m in methods)
    )
    for label, perturb in perturbations.items():
        scores = {m: [] for m in methods}
        for name in names:
            fg, alpha, old, new = case(name, size)
            photo, target = mix(fg, alpha, old, truth), mix(fg, alpha, new, truth)
            lab_t, edge = rgb2lab(target / 255.0), regions(alpha)["edge"]
            for method, fn in methods.items():
                scores[method].append(mean_over(de_map(lab_t, target, fn(photo, new, perturb(alpha))), edge))
        print(f"  {label:<60}" + "  ".join(f"{np.mean(v):10.2f}" for v in scores.values()))


def studio_iou(seg_size: int, quick: bool) -> list[tuple]:
    """The studio table; returns (label, seed, photo, truth, mask, seconds) for the class table."""
    print(f"\nClassic fallback mask IoU on studio photos ({seg_size}x{seg_size}, threshold 0.5)")
    print(f"{'backdrop':<10} {'subject':<8} {'classic':>8} {'seed':>6} {'ms':>6}")
    scores, seed_scores, done = [], [], []
    for i, backdrop in enumerate(["solid", "gradient", "dark", "green", "blue"]):
        for subject in ["person"] if quick else ["person", "tonal", "product"]:
            photo, truth = studio_photo(backdrop, subject, seg_size, seed=i)
            mask, secs = timed(classic_foreground_alpha, photo, repeats=1)
            done.append((f"{backdrop[:4]}/{subject[:4]}", i, photo, truth, mask, secs))
            scores.append(iou(mask, truth))
            seed_scores.append(iou(seed_contour_mask(photo), truth))
            print(f"{backdrop:<10} {subject:<8} {scores[-1]:8.3f} {seed_scores[-1]:6.3f} {secs * 1000:6.0f}")
    print(
        f"mean IoU: classic {np.mean(scores):.3f} (min {np.min(scores):.3f}, target >= 0.9), "
        f"seed contour {np.mean(seed_scores):.3f}"
    )
    return done


def hard_iou(seg_size: int, quick: bool, studio: list[tuple]) -> dict[str, dict]:
    """Per-case and per-class IoU on the harder backdrops, with the studio cases as the first class.

    A mask ``mask_quality`` flags as unusable is what the chain replaces by the centred ellipse: the
    "ellipse" column counts those cases, "chain IoU" scores the mask the chain would serve.
    """
    scale = (1024 * 1024) / (seg_size * seg_size)
    print(f"\nClassic mask IoU by class ({seg_size}x{seg_size}, threshold 0.5; ms scaled to 1024^2, one thread)")
    print(f"{'class':<11} {'subject':<9} {'seed':>4} {'IoU':>6} {'coverage':>9} {'usable':>7} {'ms':>6}")
    cases = [("studio", *done) for done in studio]
    for kind in HARD_CLASSES:
        for subject in HARD_SUBJECTS[kind][:1] if quick else HARD_SUBJECTS[kind]:
            for seed in (0,) if quick else (0, 1):
                photo, truth = hard_photo(kind, subject, seg_size, seed)
                cases.append((kind, subject, seed, photo, truth, *timed(classic_foreground_alpha, photo, repeats=1)))
    results: dict[str, dict] = {}
    for kind, subject, seed, _photo, truth, mask, secs in cases:
        quality = mask_quality(mask)
        served = mask if quality["usable"] else ellipse_mask(*mask.shape)
        row = results.setdefault(kind, {"iou": [], "chain": [], "ellipse": 0, "ms": []})
        row["iou"].append(iou(mask, truth))
        row["chain"].append(iou(served, truth))
        row["ellipse"] += not quality["usable"]
        row["ms"].append(secs * 1000 * scale)
        if kind != "studio":
            print(
                f"{kind:<11} {subject:<9} {seed:>4} {row['iou'][-1]:6.3f} {quality['coverage']:9.3f} "
                f"{'yes' if quality['usable'] else 'no':>7} {row['ms'][-1]:6.0f}"
            )
    print(f"{'class':<11} {'cases':>5} {'mean IoU':>9} {'min IoU':>8} {'ellipse':>8} {'chain IoU':>10} {'ms/1MP':>7}")
    for kind, row in results.items():
        print(
            f"{kind:<11} {len(row['iou']):>5} {np.mean(row['iou']):9.3f} {np.min(row['iou']):8.3f} "
            f"{row['ellipse']:>8} {np.mean(row['chain']):10.3f} {np.median(row['ms']):7.0f}"
        )
    everything = [v for row in results.values() for v in row["iou"]]
    print(f"{'all':<11} {len(everything):>5} {np.mean(everything):9.3f} {np.min(everything):8.3f}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case and method (median)")
    parser.add_argument("--quick", action="store_true", help="256 px, three cases, for CI smoke runs")
    parser.add_argument("--masks-only", action="store_true", help="only the classic-segmentation IoU tables")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    import numba

    numba.set_num_threads(1)
    size = 256 if args.quick else args.size
    repeats = 1 if args.quick else args.repeats
    if args.masks_only:
        hard_iou(size, args.quick, studio_iou(size, args.quick))
        return 0
    names = (
        ["hair", "green_screen", "cartoon"]
        if args.quick
        else ["hair", "fur", "object", "cartoon", "dark_bg", "green_screen", "blue_screen"]
    )
    methods = {
        "engine": composite_onto_background,  # default: estimated and blended in sRGB
        "engine_lin": partial(composite_onto_background, blend_space="linear"),
        "plain": plain_alpha_blend,
        "plain_lin": plain_linear,
        "seed": seed_recipe,
    }
    # Warm up lazy imports and numba kernels so the first case's timing is not a compile time.
    fg, alpha, old, new = case("hair", 64)
    for fn in methods.values():
        fn(mix(fg, alpha, old, "srgb"), new, alpha)
    print(
        f"Compositing: one thread (cv2 {cv2.getNumThreads()}, numba {numba.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}); lower dE is better"
    )
    for truth in ("srgb", "linear"):
        compositing_table(names, size, methods, truth, repeats)
    if not args.quick:
        for truth in ("srgb", "linear"):
            imperfect_mattes(names, size, methods, truth)

    seg_size = 256 if args.quick else size
    hard_iou(seg_size, args.quick, studio_iou(seg_size, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
