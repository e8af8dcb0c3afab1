"""Subject segmentation: a chain of stages, each accepted or rejected by measurable criteria.

Order: BiRefNet, then U2Net (with cartoon detection and mid-tone firming), then the classic
backdrop-model method (``classic_foreground_alpha``), then a centred ellipse that is always accepted.
A model stage's probability map is rejected when it is faint (mean below ``min_mean``), empty
(coverage below ``min_coverage``), full (coverage above ``max_coverage``) or noise (more than
``max_midtone_fraction`` of its pixels between 0.1 and 0.9); the classic stage is judged by
``mask_quality``. ``SegmentationResult.attempts`` records every stage in order: accepted or not, why,
the coverage and mean it measured and the seconds it took, so a response says which stage produced
the mask and why the earlier ones did not.

Both models run as ONNX files through onnxruntime, loaded from local paths only; nothing is ever
downloaded. BiRefNet is not loaded through transformers' remote code because that means executing
Python shipped with the checkpoint (``trust_remote_code``), whose imports (timm, kornia, einops) and
compatibility with transformers 5 we would have to pin and vet ourselves; the ONNX export is a plain
graph, runs on onnxruntime which rembg already brings (``rembg[gpu]`` gives the CUDA provider), and
lets the tests load tiny stand-ins in exactly the production format. rembg's own sessions are not
used either: ``new_session("u2net")`` downloads when the file is not in rembg's home, its custom
sessions refuse model paths outside that home, and its post-processing stretches every map to the
full 0-1 range, which would hide the very faintness the acceptance test measures. The pre-processing
here follows each model's training: U2Net scales by the image's maximum, BiRefNet by 255, both with
ImageNet mean and std; BiRefNet's mask is the sigmoid of its last output, U2Net's the first output
min-max normalised, as rembg serves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from pipelines.background.segmentation.classic import classic_foreground_alpha, ellipse_mask, mask_quality
from pipelines.common.config import StrictModel
from pipelines.common.errors import InvalidInputError, ModelNotFoundError, UnsupportedHardwareError

log = logging.getLogger(__name__)

STAGES = ("birefnet", "u2net", "classic", "ellipse")
BIREFNET_FILE = "birefnet.onnx"
U2NET_FILE = "u2net.onnx"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
MIDTONE_LOW, MIDTONE_HIGH = 0.1, 0.9
# Cartoon detection runs at this long side so the edge density means the same for any upload size.
CARTOON_SIDE = 320
CARTOON_EDGE_DENSITY = 0.05
CARTOON_DARK_FRACTION = 0.05
CARTOON_DARK_GREY = 50
CARTOON_MAX_COLOURS = 32  # quantised colours (16 levels a channel) that cover 95 % of the pixels
# Mid-tone firming: values below LOW become 0, above HIGH 1, with a smoothstep between. Photos keep a
# wide band for hair and fur; flat-shaded cartoons have hard edges, so their band is narrow.
PHOTO_FIRMING = (0.15, 0.85)
CARTOON_FIRMING = (0.35, 0.65)
OUTLINE_REACH_FRACTION = 0.015  # cartoon ink this close to the subject (share of the short side) joins it


class SegmentationConfig(StrictModel):
    birefnet_path: str | None = Field(
        default=None, description="BiRefNet ONNX file, or a folder holding birefnet.onnx (or a single .onnx)."
    )
    u2net_path: str | None = Field(
        default=None, description="U2Net ONNX file, or a folder holding u2net.onnx (rembg's U2NET_HOME works)."
    )
    birefnet_tiny_model: str | None = Field(
        default=None, description="A tiny stand-in the serving layer builds into the `birefnet_path` folder if missing."
    )
    u2net_tiny_model: str | None = Field(
        default=None, description="A tiny stand-in the serving layer builds into the `u2net_path` folder if missing."
    )
    enable_birefnet: bool = Field(default=True, description="Run BiRefNet when `birefnet_path` is set.")
    enable_u2net: bool = Field(default=True, description="Run U2Net when `u2net_path` is set.")
    enable_classic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads; 0 lets it choose.")
    min_mean: float = Field(default=10 / 255, ge=0, le=1, description="Reject a map whose mean is below this.")
    min_coverage: float = Field(default=0.03, ge=0, le=1, description="Reject below this share of pixels > 0.5.")
    max_coverage: float = Field(default=0.97, ge=0, le=1, description="Reject above this share of pixels > 0.5.")
    max_midtone_fraction: float = Field(
        default=0.5, ge=0, le=1, description="Reject as noise when more pixels than this lie in (0.1, 0.9)."
    )
    working_megapixels: float | None = Field(
        default=4.0,
        ge=0.25,
        description="Photos larger than this are segmented and composed (composition, focus) on a copy of this "
        "many megapixels and the matte is upsampled with edge refinement against the full photo; null works at "
        "full size. The models see at most 1024 px anyway, the classic stage 320 px.",
    )

    @model_validator(mode="after")
    def _tiny_models_build_into_folders(self) -> SegmentationConfig:
        for name, path, tiny in (
            ("birefnet_path", self.birefnet_path, self.birefnet_tiny_model),
            ("u2net_path", self.u2net_path, self.u2net_tiny_model),
        ):
            if tiny and (path is None or path.endswith(".onnx")):
                raise ValueError(f"a tiny stand-in is built into a folder: set {name} to a folder, not {path!r}")
        return self

    def with_absolute_paths(self, absolute: Callable[[str | None], str | None]) -> SegmentationConfig:
        return self.model_copy(
            update={"birefnet_path": absolute(self.birefnet_path), "u2net_path": absolute(self.u2net_path)}
        )


@dataclass
class SegmentationResult:
    alpha: np.ndarray  # float32 HxW in [0, 1]
    stage: str  # one of STAGES
    attempts: list[dict] = field(default_factory=list)  # {stage, accepted, reason, coverage, mean, seconds}
    cartoon: bool | None = None  # None unless the U2Net stage produced the mask


@dataclass
class OnnxMaskModel:
    """One ONNX segmentation net with its pre- and post-processing."""

    session: object  # onnxruntime.InferenceSession
    size: tuple[int, int]  # (width, height) the graph takes
    scale_by_max: bool  # U2Net was trained on images divided by their maximum, not by 255
    output: Literal["first", "last"]
    logits: bool  # apply a sigmoid to the output
    minmax: bool  # stretch the map to [0, 1] as rembg does for U2Net

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        shrink = self.size[0] * self.size[1] < h * w
        small = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        x = small.astype(np.float32) / (max(float(small.max()), 1.0) if self.scale_by_max else 255.0)
        x = ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
        outputs = self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(x)})
        pred = np.asarray(outputs[0 if self.output == "first" else -1], np.float32)[0, 0]
        if self.logits:
            pred = 1.0 / (1.0 + np.exp(-np.clip(pred, -60.0, 60.0)))
        if self.minmax:
            low, high = float(pred.min()), float(pred.max())
            pred = (pred - low) / (high - low) if high > low else np.zeros_like(pred)
        return np.clip(cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0).astype(np.float32)


def judge_mask(alpha: np.ndarray, config: SegmentationConfig) -> tuple[bool, str, float, float]:
    """(accepted, reason, coverage, mean) of a model's probability map under the config's criteria."""
    coverage, mean = float((alpha > 0.5).mean()), float(alpha.mean())
    midtones = float(((alpha > MIDTONE_LOW) & (alpha < MIDTONE_HIGH)).mean())
    failures = []
    if mean < config.min_mean:
        failures.append(f"faint: mean {mean:.3f} < {config.min_mean:.3f}")
    if coverage < config.min_coverage:
        failures.append(f"empty: coverage {coverage:.1%} < {config.min_coverage:.0%}")
    if coverage > config.max_coverage:
        failures.append(f"full: coverage {coverage:.1%} > {config.max_coverage:.0%}")
    if midtones > config.max_midtone_fraction:
        failures.append(f"noise: {midtones:.0%} of pixels are mid-tones > {config.max_midtone_fraction:.0%}")
    if failures:
        return False, "; ".join(failures), coverage, mean
    return True, f"coverage {coverage:.1%}, mean {mean:.3f}, mid-tones {midtones:.1%}", coverage, mean


def cartoon_features(rgb: np.ndarray) -> dict:
    """Edge density, colours covering 95 % of pixels, share of very dark pixels, and the verdict."""
    h, w = rgb.shape[:2]
    scale = min(1.0, CARTOON_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    edge_density = float((cv2.Canny(grey, 100, 200) > 0).mean())
    q = (small >> 4).astype(np.int32)
    counts = np.sort(np.bincount((q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]).ravel(), minlength=4096))[::-1]
    colours = int(np.searchsorted(np.cumsum(counts), 0.95 * counts.sum()) + 1)
    dark = float((grey < CARTOON_DARK_GREY).mean())
    cartoon = edge_density > CARTOON_EDGE_DENSITY and (colours <= CARTOON_MAX_COLOURS or dark > CARTOON_DARK_FRACTION)
    return {"edge_density": edge_density, "colours": colours, "dark_fraction": dark, "cartoon": cartoon}


def firm_mask(alpha: np.ndarray, rgb: np.ndarray, cartoon: bool) -> np.ndarray:
    """Push U2Net's soft mid-tones towards 0 or 1; for cartoons also keep the ink outlines."""
    low, high = CARTOON_FIRMING if cartoon else PHOTO_FIRMING
    t = np.clip((alpha - low) / (high - low), 0.0, 1.0)
    firm = t * t * (3.0 - 2.0 * t)
    if cartoon:
        # U2Net often cuts through a character's dark outline; dark pixels hugging the subject belong to it.
        reach = max(3, round(OUTLINE_REACH_FRACTION * min(alpha.shape)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        near = cv2.dilate((firm > 0.5).astype(np.uint8), kernel).astype(bool)
        dark = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < CARTOON_DARK_GREY
        firm = np.where(near & dark, 1.0, firm)
    return firm.astype(np.float32)


def _attempt(stage: str, accepted: bool, reason: str, coverage=None, mean=None, seconds: float = 0.0) -> dict:
    def rounded(value):
        return None if value is None else round(float(value), 4)

    return {
        "stage": stage,
        "accepted": accepted,
        "reason": reason,
        "coverage": rounded(coverage),
        "mean": rounded(mean),
        "seconds": round(seconds, 4),
    }


class Segmenter:
    def __init__(
        self, config: SegmentationConfig, *, birefnet: OnnxMaskModel | None = None, u2net: OnnxMaskModel | None = None
    ) -> None:
        self.config = config
        self.birefnet = birefnet
        self.u2net = u2net

    @classmethod
    def from_config(cls, config: SegmentationConfig) -> Segmenter:
        birefnet = u2net = None
        if config.enable_birefnet and config.birefnet_path:
            path = _resolve(config.birefnet_path, BIREFNET_FILE, "birefnet_path")
            session = _open_session(path, config, "birefnet_path")
            birefnet = OnnxMaskModel(
                session, _input_size(session, 1024), scale_by_max=False, output="last", logits=True, minmax=False
            )
        if config.enable_u2net and config.u2net_path:
            path = _resolve(config.u2net_path, U2NET_FILE, "u2net_path")
            session = _open_session(path, config, "u2net_path")
            u2net = OnnxMaskModel(
                session, _input_size(session, 320), scale_by_max=True, output="first", logits=False, minmax=True
            )
        return cls(config, birefnet=birefnet, u2net=u2net)

    def segment(self, image: Image.Image) -> SegmentationResult:
        if not isinstance(image, Image.Image):
            raise InvalidInputError("the image must be a PIL image", field="image")
        rgb = np.asarray(image.convert("RGB"))
        if min(rgb.shape[:2]) < 8:
            raise InvalidInputError("the image must be at least 8 px a side", field="image")
        attempts: list[dict] = []
        for stage, model, enabled in (
            ("birefnet", self.birefnet, self.config.enable_birefnet),
            ("u2net", self.u2net, self.config.enable_u2net),
        ):
            if model is None:
                why = "disabled in the configuration" if not enabled else "no model path configured"
                attempts.append(_attempt(stage, False, f"skipped: {why}"))
                continue
            started = time.perf_counter()
            try:
                alpha = model.predict(rgb)
            except Exception as exc:  # a failing model must not fail the request: the next stage answers
                log.exception("%s stage failed", stage)
                attempts.append(_attempt(stage, False, f"error: {type(exc).__name__}: {exc}"[:300]))
                continue
            accepted, reason, coverage, mean = judge_mask(alpha, self.config)
            cartoon = None
            if accepted and stage == "u2net":
                cartoon = bool(cartoon_features(rgb)["cartoon"])
                alpha = firm_mask(alpha, rgb, cartoon)
                reason += f"; {'cartoon' if cartoon else 'photo'} firming"
            attempts.append(_attempt(stage, accepted, reason, coverage, mean, time.perf_counter() - started))
            if accepted:
                return SegmentationResult(alpha, stage, attempts, cartoon)

        if self.config.enable_classic:
            started = time.perf_counter()
            alpha = classic_foreground_alpha(rgb)
            quality = mask_quality(alpha)
            usable, coverage, mean = quality["usable"], quality["coverage"], quality["mean"]
            verdict = "" if usable else ("empty: " if quality["empty"] else "full: ")
            reason = f"{verdict}coverage {coverage:.1%}, mean {mean:.3f}"
            attempts.append(_attempt("classic", usable, reason, coverage, mean, time.perf_counter() - started))
            if usable:
                return SegmentationResult(alpha, "classic", attempts)
        else:
            attempts.append(_attempt("classic", False, "skipped: disabled in the configuration"))

        started = time.perf_counter()
        alpha = ellipse_mask(*rgb.shape[:2])
        coverage, mean = float((alpha > 0.5).mean()), float(alpha.mean())
        reason = "last resort: no earlier stage gave a usable mask"
        attempts.append(_attempt("ellipse", True, reason, coverage, mean, time.perf_counter() - started))
        return SegmentationResult(alpha, "ellipse", attempts)


def _resolve(path: str, filename: str, field_name: str) -> Path:
    location = Path(path).expanduser()
    if location.is_file():
        return location
    if location.is_dir():
        if (location / filename).is_file():
            return location / filename
        candidates = sorted(location.glob("*.onnx"))
        if len(candidates) == 1:
            return candidates[0]
    raise ModelNotFoundError(
        f"{field_name}: no ONNX model at {location} (expected that file, or a folder with {filename} in it). "
        f"Copy the exported model there, set {field_name.replace('_path', '_tiny_model')} to build a tiny "
        f"stand-in (tests only), or set enable_{field_name.removesuffix('_path')}: false",
        field=field_name,
    )


def _open_session(path: Path, config: SegmentationConfig, field_name: str):
    import onnxruntime as ort

    available = ort.get_available_providers()
    if config.device == "cuda" and "CUDAExecutionProvider" not in available:
        raise UnsupportedHardwareError(
            "device cuda needs onnxruntime with the CUDA provider (install rembg[gpu] / onnxruntime-gpu)",
            field="device",
        )
    use_cuda = config.device != "cpu" and "CUDAExecutionProvider" in available
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    if config.num_threads:
        options.intra_op_num_threads = config.num_threads
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise ModelNotFoundError(f"{field_name}: {path} is not a loadable ONNX model: {exc}", field=field_name) from exc
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or shape[1] not in (3, "3"):
        raise ModelNotFoundError(f"{field_name}: {path} takes input {shape}, not an Nx3xHxW image", field=field_name)
    return session


def _input_size(session, default: int) -> tuple[int, int]:
    """(width, height) from the graph's static input shape; the model's usual size where it is dynamic."""
    shape = session.get_inputs()[0].shape
    height = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else default
    width = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else default
    return width, height
