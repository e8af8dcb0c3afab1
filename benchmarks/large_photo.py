"""A 24-megapixel photo end to end on the local profile, at full size and at the working size.

End to end is what a background job does after decoding (``BackgroundGenerator._render``): the subject
matte (classic segmentation, then the composition controls), the tiny SDXL background, fitting it to
the photo and the composite, then the PNG encode. Each setting runs in its own process so its peak
RSS is its own; the median of ``--repeats`` runs is reported. ``--working`` is the working size
(megapixels) of both the segmenter and the compositor; "full" is the behaviour before it existed.

Then quality, on the synthetic photos with known answers at 2048² with a working size of 0.7 MP (the
same 2.4x reduction as 24 MP -> 4 MP): the classic matte at working size and upsampled against the
full-size one (IoU with the truth, IoU between the two, mean absolute alpha error against the truth in
the edge band) and the composite's edge-band CIEDE2000 with the true matte, estimated at full and at
working size.

    python benchmarks/large_photo.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import table  # noqa: E402

PHOTO_SIDE = 4899  # 4899² = 24.0 MP
QUALITY_SIDE = 2048
QUALITY_WORKING_MP = 0.7
FOCUSES = ("person", "scene")


def run_end_to_end(photo_file: Path, model: Path, working: float | None, focus: str, repeats: int) -> dict:
    """One setting in this process: times per stage (median) and the process's peak RSS."""
    from PIL import Image

    from pipelines.background.compositor import composite_onto_background, fit_background
    from pipelines.background.sdxl import BackgroundModelConfig, BackgroundRequest, SdxlBackground
    from pipelines.background.segmentation.chain import SegmentationConfig, Segmenter
    from pipelines.background.subject_mask import subject_mask
    from pipelines.common.images import encode_png

    photo = np.load(photo_file)
    image = Image.fromarray(photo)
    segmenter = Segmenter(SegmentationConfig(working_megapixels=working))
    sdxl = SdxlBackground.from_config(BackgroundModelConfig(path=str(model), device="cpu", dtype="float32"))
    runs: list[dict] = []
    for _ in range(repeats):
        times = {}
        start = clock = time.perf_counter()
        mask = subject_mask(segmenter, image, "center", focus, 4)
        times["mask"], clock = time.perf_counter() - clock, time.perf_counter()
        request = BackgroundRequest(prompt="studio backdrop", width=image.width, height=image.height, steps=4)
        backdrop = np.asarray(sdxl(request).image)
        times["sdxl"], clock = time.perf_counter() - clock, time.perf_counter()
        fitted = fit_background(backdrop, photo.shape[1], photo.shape[0])
        picture = composite_onto_background(photo, fitted, mask.alpha, working_megapixels=working)
        times["composite"], clock = time.perf_counter() - clock, time.perf_counter()
        size = len(encode_png(Image.fromarray(picture)))
        times["png"] = time.perf_counter() - clock
        times["total"] = time.perf_counter() - start
        assert picture.shape == photo.shape and size > 0  # the result stays the photo's full size
        runs.append(times)
    medians = {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}
    return {"seconds": medians, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from
    the parent across exec, so a child would report the parent's peak when that is higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def end_to_end_table(repeats: int, quick: bool, focuses=FOCUSES) -> list[list]:
    from benchmarks.segmentation_photos import studio_photo
    from pipelines.tiny.sdxl import build_tiny_sdxl

    side = 2000 if quick else PHOTO_SIDE
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo_file, model = Path(tmp) / "photo.npy", build_tiny_sdxl(Path(tmp) / "tiny-sdxl")
        np.save(photo_file, studio_photo("gradient", "person", side, seed=3)[0])
        for focus in focuses:
            results = {}
            for working in (None, 1.0 if quick else 4.0):
                args = [str(photo_file), str(model), json.dumps(working), focus, str(repeats)]
                done = subprocess.run(
                    [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
                )
                results[working] = json.loads(done.stdout.strip().splitlines()[-1])
            full, work = results[None], results[next(w for w in results if w is not None)]
            for label, result in (("full size", full), (f"working {work_mp(results)} MP", work)):
                s = result["seconds"]
                rows.append(
                    [f"{side}² {focus}", label]
                    + [f"{s[k]:.2f}" for k in ("mask", "sdxl", "composite", "png", "total")]
                    + [f"{result['peak_rss_mb']:.0f}"]
                )
            ratio = full["seconds"]["total"] / work["seconds"]["total"]
            rss = full["peak_rss_mb"] / work["peak_rss_mb"]
            rows.append([f"{side}² {focus}", "ratio full/working", "", "", "", "", f"{ratio:.2f}x", f"{rss:.2f}x"])
    return rows


def work_mp(results: dict) -> str:
    return f"{next(w for w in results if w is not None):g}"


def mask_quality_table(quick: bool) -> list[list]:
    from PIL import Image

    from benchmarks.segmentation_photos import BACKDROPS, iou, studio_photo
    from pipelines.background.segmentation.chain import SegmentationConfig, Segmenter
    from pipelines.background.subject_mask import subject_mask

    full_seg = Segmenter(SegmentationConfig(working_megapixels=None))
    work_seg = Segmenter(SegmentationConfig(working_megapixels=QUALITY_WORKING_MP))
    rows = []
    side = 1024 if quick else QUALITY_SIDE
    for backdrop in BACKDROPS:
        for subject in ("person", "product"):
            photo, truth = studio_photo(backdrop, subject, side, seed=5)
            image = Image.fromarray(photo)
            full = subject_mask(full_seg, image, "center", "person", 0).alpha
            work = subject_mask(work_seg, image, "center", "person", 0).alpha
            band = edge_band(truth)
            rows.append(
                [
                    f"{backdrop}/{subject}",
                    f"{iou(full, truth):.4f}",
                    f"{iou(work, truth):.4f}",
                    f"{iou(work, full):.4f}",
                    f"{np.abs(full - truth)[band].mean():.4f}",
                    f"{np.abs(work - truth)[band].mean():.4f}",
                ]
            )
    return rows


def edge_band(truth: np.ndarray, reach: int = 3) -> np.ndarray:
    import cv2

    inside = (truth > 0.5).astype(np.uint8)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    soft = (truth > 1 / 512) & (truth < 1 - 1 / 512)
    return soft | (cv2.dilate(inside, kernel) != cv2.erode(inside, kernel))


def composite_quality_table(quick: bool) -> list[list]:
    from benchmarks.compositing import case, de_map, mean_over, mix, regions
    from pipelines.background.compositor import composite_onto_background

    side = 1024 if quick else QUALITY_SIDE
    rows = []
    for name in ("hair", "fur", "dark_bg", "cartoon"):
        fg, alpha, old, new = case(name, side)
        photo, target = mix(fg, alpha, old, "srgb"), mix(fg, alpha, new, "srgb")
        from skimage.color import rgb2lab

        lab_target = rgb2lab(target / 255.0)
        band = regions(alpha)["edge"]
        cells = [name]
        for working in (None, QUALITY_WORKING_MP):
            start = time.perf_counter()
            out = composite_onto_background(photo, new, alpha, working_megapixels=working)
            seconds = time.perf_counter() - start
            cells += [f"{mean_over(de_map(lab_target, target, out), band):.2f}", f"{seconds:.2f}"]
        rows.append(cells)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 4-MP photo and 1024² quality cases (smoke test)")
    parser.add_argument("--focus", choices=FOCUSES, action="append", help="only these focus values (default both)")
    parser.add_argument("--end-to-end-only", action="store_true", help="skip the quality tables")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        photo_file, model, working, focus, repeats = args.child
        result = run_end_to_end(Path(photo_file), Path(model), json.loads(working), focus, int(repeats))
        print(json.dumps(result))
        return 0
    stages = ["mask s", "sdxl s", "composite s", "png s", "total s", "peak RSS MB"]
    rows = end_to_end_table(args.repeats, args.quick, tuple(args.focus or FOCUSES))
    print(table(["photo", "setting", *stages], rows))
    if args.end_to_end_only:
        return 0
    print()
    headers = ["photo", "IoU full", "IoU working", "IoU working vs full", "edge MAE full", "edge MAE working"]
    print(table(headers, mask_quality_table(args.quick)))
    print()
    headers = ["case", "edge dE full", "s full", f"edge dE {QUALITY_WORKING_MP} MP", f"s {QUALITY_WORKING_MP} MP"]
    print(table(headers, composite_quality_table(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
