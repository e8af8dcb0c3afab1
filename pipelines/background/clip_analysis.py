"""Image analysis: what the picture shows (zero-shot OpenCLIP) and how it is lit, and the prompt that implies.

The subject is the best of five fixed classes, scored as softmax(100 · cosine) between the image
embedding and each class's text embedding. The class text embeddings never change, so each replica
computes them once, in the constructor. Warmth and brightness come from plain pixel statistics; they
pick a lighting phrase unless the user's own prompt already names the light ("sunset", "night", ...).

torch, open_clip and cv2 are imported inside the functions that need them: the config, the result
and the enrichment rules are imported by the HTTP and deployment layers, which must not pull in torch.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field

from pipelines.common.config import StrictModel, tiny_model_field
from pipelines.common.errors import ModelNotFoundError
from pipelines.common.text import check_text

log = logging.getLogger(__name__)

SUBJECTS = ("person", "animal", "object", "nature", "building")
# Two phrasings per class, averaged: a single wording is noticeably more brittle in zero-shot CLIP.
CLASS_PROMPTS: dict[str, tuple[str, ...]] = {
    "person": ("a photo of a person", "a portrait of a man or a woman"),
    "animal": ("a photo of an animal", "a photo of a pet or a wild animal"),
    "object": ("a photo of an object", "a product photo of an everyday item"),
    "nature": ("a photo of a natural landscape", "a photo of mountains, a forest, the sea or the sky"),
    "building": ("a photo of a building", "a photo of architecture in a city"),
}
LOGIT_SCALE = 100.0  # CLIP's trained temperature; fixed so scores mean the same for every checkpoint
WARM_MIN_LAB_B = 128.0  # OpenCV's 8-bit Lab stores b + 128: above 128 leans yellow, below leans blue
BRIGHT_MIN_GREY = 127.0
STATS_MAX_SIDE = 512  # means barely move when a large photo is area-averaged first, and it is much cheaper

LIGHTING_PHRASES: dict[tuple[bool, bool], str] = {  # keyed by (warm, bright)
    (True, True): "warm bright daylight, soft golden highlights",
    (True, False): "warm low light, gentle amber glow",
    (False, True): "cool clear daylight, crisp clean tones",
    (False, False): "cool dim light, deep blue shadows",
}
# Words in the user's prompt that already fix the light. Checked in order, first match wins: the time of
# day is a stronger statement than the weather or the setting.
LIGHTING_OVERRIDES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:sun(?:set|rise)s?|golden[\s-]hour|dusk|dawn)\b"), "warm sunset light, long golden rays"),
    (
        re.compile(r"\b(?:night(?:time|s)?|midnight|neon|moon(?:light|lit)?|starry|starlight)\b"),
        "night lighting, glowing highlights against dark shadows",
    ),
    (re.compile(r"\b(?:overcast|cloudy|fog(?:gy)?|mist(?:y)?|rain(?:y|ing)?)\b"), "soft diffused overcast light"),
    (re.compile(r"\bstudio\b"), "even studio lighting, soft controlled shadows"),
)
ATMOSPHERE_PHRASES: dict[str, str] = {
    "person": "natural expression, intimate portrait mood",
    "animal": "lively natural behaviour, candid wildlife feel",
    "object": "clean product presentation, polished surfaces",
    "nature": "serene open landscape, fresh natural atmosphere",
    "building": "architectural grandeur, strong lines and scale",
}
QUALITY_SUFFIX = "cinematic, high detail, smooth motion"

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# Linking words may repeat; only content words count as duplicates.
_LINKING = frozenset(
    {"a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "of", "on", "or", "the", "to", "under", "with"}
)
_WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
_HUB_CONFIG = "open_clip_config.json"


class AnalyzerConfig(StrictModel):
    model_name: str = Field(
        default="ViT-B-32",
        description="open_clip architecture for a bare weights file (use ViT-B-32-quickgelu for OpenAI's weights); "
        "ignored when `checkpoint` is a folder with open_clip_config.json.",
    )
    checkpoint: str = Field(
        description="Folder with open_clip_config.json and open_clip_model.safetensors (the hub layout), or a "
        "weights file (.safetensors/.bin/.pt) for `model_name`."
    )
    config_path: str | None = Field(
        default=None,
        description="Bare open_clip model config JSON for an architecture open_clip does not ship; registered "
        "under its file stem, which `model_name` must then equal.",
    )
    tiny_model: str | None = tiny_model_field("checkpoint")
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class ColourStats:
    mean_lab_b: float  # OpenCV 8-bit scale, 128 = neutral
    mean_grey: float  # 0-255

    @property
    def warm(self) -> bool:
        return self.mean_lab_b > WARM_MIN_LAB_B

    @property
    def bright(self) -> bool:
        return self.mean_grey > BRIGHT_MIN_GREY


def colour_stats(image: Image.Image) -> ColourStats:
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    if max(height, width) > STATS_MAX_SIDE:
        scale = STATS_MAX_SIDE / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    lab_b = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return ColourStats(mean_lab_b=float(lab_b.mean()), mean_grey=float(grey.mean()))


def class_scores(cosines: np.ndarray, subjects: tuple[str, ...] = SUBJECTS) -> dict[str, float]:
    """softmax(100 · cosine), computed in float64 so the scores sum to 1 to within rounding."""
    logits = LOGIT_SCALE * np.asarray(cosines, dtype=np.float64)
    weights = np.exp(logits - logits.max())
    probabilities = weights / weights.sum()
    return {name: float(p) for name, p in zip(subjects, probabilities, strict=True)}


def lighting_phrase(warm: bool, bright: bool, prompt: str | None = None) -> str:
    text = (prompt or "").lower()
    for pattern, phrase in LIGHTING_OVERRIDES:
        if pattern.search(text):
            return phrase
    return LIGHTING_PHRASES[(warm, bright)]


def _content_words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _LINKING]


def enrich_prompt(prompt: str | None, phrases: list[str]) -> str:
    """The prompt followed by each phrase's comma-separated clauses, leaving out any word the text already has.

    A clause loses its duplicated words; one left with only linking words is dropped whole.
    """
    base = " ".join((prompt or "").split()).rstrip(" ,;.")
    seen = set(_content_words(base))
    clauses = []
    for phrase in phrases:
        for clause in phrase.split(","):
            kept = [token for token in clause.split() if not (set(_content_words(token)) & seen)]
            while kept and not _content_words(kept[-1]):
                kept.pop()
            while kept and not _content_words(kept[0]):
                kept.pop(0)
            if kept:
                clauses.append(" ".join(kept))
                seen.update(_content_words(" ".join(kept)))
    return ", ".join(([base] if base else []) + clauses)


def validate_prompt(prompt: str | None) -> str | None:
    """The prompt to enrich, stripped, or None when there is none (analysis needs no prompt)."""
    if prompt is None:
        return None
    return check_text(prompt, "prompt").strip() or None


@dataclass(frozen=True)
class AnalysisResult:
    subject: str
    scores: dict[str, float]
    warm: bool
    bright: bool
    lighting: str  # for `prompt`: an override when the prompt names the light
    atmosphere: str
    quality: str = QUALITY_SUFFIX
    prompt: str | None = None
    stats: ColourStats | None = field(default=None, compare=False)

    def enriched_prompt(self, prompt: str | None = None) -> str:
        """``prompt`` (the analysed one when omitted) plus lighting, atmosphere and quality phrases."""
        prompt = self.prompt if prompt is None else prompt
        lighting = lighting_phrase(self.warm, self.bright, prompt)
        return enrich_prompt(prompt, [lighting, self.atmosphere, self.quality])

    def to_dict(self) -> dict:
        return {
            "subject": self.subject,
            "scores": dict(self.scores),
            "warm": self.warm,
            "bright": self.bright,
            "lighting": self.lighting,
            "atmosphere": self.atmosphere,
            "enriched_prompt": self.enriched_prompt(),
        }


class ImageAnalyzer:
    """One resident CLIP model plus the class text embeddings, computed once; ``analyze`` is thread-safe."""

    def __init__(self, model, preprocess, tokenizer, class_prompts: dict[str, tuple[str, ...]] = CLASS_PROMPTS):
        import torch

        self.model = model.eval()
        self.preprocess = preprocess
        self.subjects = tuple(class_prompts)
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        texts = [text for name in self.subjects for text in class_prompts[name]]
        with torch.inference_mode():
            embeddings = model.encode_text(tokenizer(texts).to(self.device), normalize=True)
        # Average each class's phrasings on the unit sphere, then project back onto it.
        per_class, start = [], 0
        for name in self.subjects:
            count = len(class_prompts[name])
            per_class.append(embeddings[start : start + count].mean(dim=0))
            start += count
        self.class_embeddings = torch.nn.functional.normalize(torch.stack(per_class), dim=-1)

    @classmethod
    def from_config(cls, config: AnalyzerConfig) -> ImageAnalyzer:
        import open_clip

        from pipelines.common.devices import resolve_device

        model_id, weights = _resolve_weights(config)
        device = resolve_device(config.device)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(model_id, pretrained=weights, device=device)
            tokenizer = open_clip.get_tokenizer(model_id)
        except (RuntimeError, ValueError, KeyError, OSError, AssertionError) as exc:  # open_clip asserts on shapes
            cause = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ModelNotFoundError(f"could not load the CLIP model from {config.checkpoint}: {cause}") from exc
        return cls(model, preprocess, tokenizer)

    def analyze(self, image: Image.Image, prompt: str | None = None) -> AnalysisResult:
        import torch

        prompt = validate_prompt(prompt)
        if image.mode != "RGB":
            image = image.convert("RGB")
        stats = colour_stats(image)
        pixels = self.preprocess(image).unsqueeze(0).to(self.device, self.dtype)
        with torch.inference_mode():
            features = self.model.encode_image(pixels, normalize=True)
            cosines = (features.float() @ self.class_embeddings.float().T)[0].cpu().numpy()
        scores = class_scores(cosines, self.subjects)
        subject = max(scores, key=scores.__getitem__)
        return AnalysisResult(
            subject=subject,
            scores=scores,
            warm=stats.warm,
            bright=stats.bright,
            lighting=lighting_phrase(stats.warm, stats.bright, prompt),
            atmosphere=ATMOSPHERE_PHRASES.get(subject, ""),
            prompt=prompt,
            stats=stats,
        )


def _resolve_weights(config: AnalyzerConfig) -> tuple[str, str | None]:
    """(open_clip model id, weights file or None when the id is a ``local-dir:`` folder that holds them)."""
    path = Path(config.checkpoint)
    if not path.exists():
        raise ModelNotFoundError(
            f"no CLIP checkpoint at {path}; populate it ahead of time, for example "
            f"`hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K --local-dir {path}`, or fix `checkpoint` in the config"
        )
    weights = path
    if path.is_dir():
        found = [path / name for name in _WEIGHT_FILES if (path / name).is_file()]
        if not found:
            # Without this check open_clip would quietly start from random weights.
            raise ModelNotFoundError(
                f"the CLIP folder {path} holds no weights file (looked for {', '.join(_WEIGHT_FILES)})"
            )
        if config.config_path is None and (path / _HUB_CONFIG).is_file():
            return f"local-dir:{path}", None
        weights = found[0]
    return _model_name(config), str(weights)


_registered: set[Path] = set()
_register_lock = threading.Lock()


def _model_name(config: AnalyzerConfig) -> str:
    import open_clip

    if config.config_path is not None:
        config_file = Path(config.config_path).resolve()
        if not config_file.is_file():
            raise ModelNotFoundError(f"the CLIP model config {config_file} does not exist")
        with _register_lock:
            # add_model_config appends to a global search path; once per file keeps it from growing.
            if config_file not in _registered:
                open_clip.add_model_config(config_file)
                _registered.add(config_file)
        if config.model_name != config_file.stem or config.model_name not in open_clip.list_models():
            raise ModelNotFoundError(
                f"{config_file} does not define model {config.model_name!r}: open_clip names a config after its "
                f"file stem ({config_file.stem!r}) and needs embed_dim, vision_cfg and text_cfg at its top level"
            )
    elif config.model_name not in open_clip.list_models():
        raise ModelNotFoundError(
            f"open_clip has no built-in model {config.model_name!r}; set `config_path` to its model config JSON"
        )
    return config.model_name
