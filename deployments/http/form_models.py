"""The multipart forms of the five upload endpoints, declared once: FastAPI validates requests with them and
generates the OpenAPI request bodies from them, so the document and the checks cannot drift apart.

Bounds come from the pipelines' own constants; the pipelines validate the same values again when the typed
request is built (a notebook user gets the same messages). The strict reading around them (unknown,
repeated and empty fields, UTF-8, NUL) is in ``deployments.http.multipart``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from pipelines.background import sdxl
from pipelines.background.background_fit import HEX_COLOR_PATTERN
from pipelines.background.mask_controls import MAX_FEATHER_PX
from pipelines.background.scene_templates import scene_templates
from pipelines.common.text import MAX_PROMPT_CHARS
from pipelines.edit import request as edit
from pipelines.video import request as video
from pipelines.video.lora_library import MAX_STRENGTH as MAX_LORA_STRENGTH
from pipelines.video.lora_library import MIN_STRENGTH as MIN_LORA_STRENGTH
from pipelines.video.motion_templates import motion_categories
from pipelines.video.plan import MAX_DURATION_S, MAX_SEGMENT_S, MIN_DURATION_S

DEFAULT_DURATION_S = 3.0
MAX_ID_CHARS = 100

ImageFile = Field(
    description="The photo: PNG, JPEG, WebP, TIFF, BMP or GIF (first frame); at most the configured upload size "
    "(50 MB by default) and 40 megapixels, each side at least 16 px. EXIF rotation is applied.",
    # OpenAPI 3.1 says `contentMediaType` (FastAPI writes it); client generators still look for the 3.0
    # spelling of a file part, and both are valid 3.1.
    json_schema_extra={"format": "binary"},
)


def _motion_template_ids() -> list[str]:
    return [template.id for category in motion_categories() for template in category.prompts]


def _scene_ids() -> list[str]:
    return [template.id for template in scene_templates()]


def _drop_null_defaults(schema: dict) -> None:
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class UploadForm(BaseModel):
    """Base of the upload forms.

    Unknown fields are refused (a typo such as `duration=5` must not fall back to the default silently).
    Optional fields are typed without ``| None`` and default to None: a multipart field is text or absent,
    never null, so the OpenAPI document should not offer null either.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda schema: _drop_null_defaults(schema))


class JobForm(UploadForm):
    """Fields every job-creating form has."""

    webhook_url: str = Field(
        default=None,
        max_length=2048,
        description="Where to POST the job object once it has ended, signed the Standard Webhooks way "
        "(`webhook-id`, `webhook-timestamp`, `webhook-signature`) and retried with backoff. Public https "
        "hosts only, unless the service's configuration allows others (ingress.webhooks.allowed_hosts).",
    )


class VideoPlanForm(UploadForm):
    # `image` or `images` is required; which pictures go together is checked by the route (one rule, in
    # pipelines.video.request.validate_layout), so each mistake gets a message naming its field.
    image: UploadFile = Field(
        default=None,
        description="The photo (required unless `images` is sent): PNG, JPEG, WebP, TIFF, BMP or GIF (first "
        "frame); at most the configured upload size (50 MB by default) and 40 megapixels, each side at least "
        "16 px. EXIF rotation is applied.",
        json_schema_extra={"format": "binary"},
    )
    last_image: UploadFile = Field(
        default=None,
        description="First/last frame: the video ends on this picture. Only with `image`; cropped to the "
        "output's aspect ratio (centred) and resized to its size, as the plan shows.",
        json_schema_extra={"format": "binary"},
    )
    images: list[UploadFile] = Field(
        default=None,
        description="Multi-view, instead of `image`: 2-8 pictures (the field sent once per picture, in order); the "
        "video moves from each to the next in `transition_s`. The first sets the output size; the others are "
        "cropped to its aspect ratio (centred) and resized, as the plan shows.",
        json_schema_extra={"items": {"type": "string", "format": "binary"}},
    )
    duration_s: float = Field(
        default=None,
        ge=MIN_DURATION_S,
        le=MAX_DURATION_S,
        allow_inf_nan=False,
        description=f"Seconds of video (default {DEFAULT_DURATION_S}); frames are 1 + 4·round(duration_s·16/4) at "
        "16 fps. Above 5 s the video renders as chained segments of at most 5 s, up to the service's maximum "
        "(`ingress.videos.max_duration_s`, 30 s by default). With `storyboard`: its total (may be left out); "
        "with `images`: (views − 1) × `transition_s` (may be left out).",
    )
    transition_s: float = Field(
        default=None,
        ge=MIN_DURATION_S,
        le=MAX_SEGMENT_S,
        allow_inf_nan=False,
        description=f"Multi-view only: seconds per transition (default {video.DEFAULT_TRANSITION_S}).",
    )
    storyboard: str = Field(
        default=None,
        max_length=MAX_PROMPT_CHARS * 4,
        description='A JSON list `[{"prompt": "...", "duration_s": 2.5}, ...]`: consecutive stretches of the video, '
        "each with its own prompt (a stretch over 5 s is split into segments with the same prompt); the durations "
        "add up to `duration_s`. With `images`: one entry per transition (`duration_s` optional, default "
        "`transition_s`).",
    )


class VideoForm(VideoPlanForm, JobForm):
    prompt: str = Field(
        default=None,
        max_length=MAX_PROMPT_CHARS,
        description="What should move and how. With `template_id`, extends the template's prompt.",
    )
    negative_prompt: str = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="What to avoid; empty or absent uses the default."
    )
    template_id: str = Field(
        default=None,
        max_length=MAX_ID_CHARS,
        description="A motion template id from `GET /v1/templates/motion`; its prompt comes first.",
        json_schema_extra={"enum": _motion_template_ids()},
    )
    steps: int = Field(default=video.MIN_STEPS, ge=video.MIN_STEPS, le=video.MAX_STEPS, description="Denoising steps.")
    guidance_scale: float = Field(
        default=video.MIN_GUIDANCE,
        ge=video.MIN_GUIDANCE,
        le=video.MAX_GUIDANCE,
        allow_inf_nan=False,
        description="Guidance of the high-noise expert; 1 turns it off, as the 4-step LoRA expects.",
    )
    guidance_scale_2: float = Field(
        default=video.MIN_GUIDANCE,
        ge=video.MIN_GUIDANCE,
        le=video.MAX_GUIDANCE,
        allow_inf_nan=False,
        description="Guidance of the low-noise expert; 1 turns it off.",
    )
    seed: int = Field(
        default=None, ge=0, le=video.MAX_SEED, description="Same seed, same video; omitted: drawn and reported."
    )
    expand_prompt: bool = Field(
        default=False, description="Rewrite the prompt with the prompt expander first; both are kept in `params`."
    )
    # motion LoRAs (issue #13); the library's ids change at run time, so they are checked by the route
    lora: str = Field(
        default=None,
        max_length=MAX_ID_CHARS,
        description="A motion LoRA id from `GET /v1/loras` (status `ready`), applied to this video only.",
    )
    lora_strength: float = Field(
        default=None,
        ge=MIN_LORA_STRENGTH,
        le=MAX_LORA_STRENGTH,
        allow_inf_nan=False,
        description="Multiplies the LoRA's default per-expert strengths; 0 renders as without it. Default 1; "
        "only with `lora`.",
    )


class MaskForm(UploadForm):
    image: UploadFile = ImageFile
    composition: Literal["center", "left", "right", "full"] = Field(
        default="center", description="Which part of the photo stays in front of the new background."
    )
    focus: Literal["person", "scene"] = Field(
        default="person", description="`scene` keeps props touching the subject; `person` keeps the matte tight."
    )
    feather_px: int = Field(default=0, ge=0, le=MAX_FEATHER_PX, description="Softens the matte's rim (pixels).")


class BackgroundForm(MaskForm, JobForm):
    scene_id: str = Field(
        default=None,
        max_length=MAX_ID_CHARS,
        description="A scene id from `GET /v1/templates/scenes`. `scene_id`, `prompt` or both are required.",
        json_schema_extra={"enum": _scene_ids()},
    )
    prompt: str = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="The new background; extends the scene's prompt."
    )
    negative_prompt: str = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="Replaces the scene's negative prompt."
    )
    # Your own background instead of a generated one (no SDXL runs); the rules between these fields are in
    # pipelines.background.background_choice. Choices default to None so that a value sent where it has no
    # effect (`fit` without `background_image`) can be refused; the descriptions name the real defaults.
    background_image: UploadFile = Field(
        default=None,
        description="Your own background picture instead of `scene_id`/`prompt`: same formats and limits as "
        "`image`; fitted to the photo's size with `fit` and `position`. No SDXL runs.",
        json_schema_extra={"format": "binary"},
    )
    background_color: str = Field(
        default=None,
        description="`#rgb` or `#rrggbb`. Alone: a plain colour background (no SDXL runs). With "
        "`background_image` and `fit=contain`: the letterbox fill (default black).",
        json_schema_extra={"pattern": HEX_COLOR_PATTERN},
    )
    fit: Literal["cover", "contain", "stretch"] = Field(
        default=None,
        description="How `background_image` fills the photo's frame: `cover` (default) scales to fill and "
        "crops, `contain` scales to fit and letterboxes, `stretch` ignores the aspect ratio. "
        "Only with `background_image`.",
    )
    position: Literal["center", "top", "bottom", "left", "right"] = Field(
        default=None,
        description="The part of `background_image` kept by `cover`, or where `contain` places it; the other "
        "axis stays centred. Default `center`. Only with `background_image`.",
    )
    output: Literal["composite", "cutout"] = Field(
        default="composite",
        description="`cutout`: the subject alone as an RGBA PNG (straight, not premultiplied, alpha = the "
        "matte); then no background field may be sent, and no SDXL runs.",
    )
    steps: int = Field(
        default=sdxl.DEFAULT_STEPS,
        ge=sdxl.MIN_STEPS,
        le=sdxl.MAX_STEPS,
        description="SDXL steps (generated backgrounds only; unused otherwise).",
    )
    guidance_scale: float = Field(
        default=None,
        ge=sdxl.MIN_GUIDANCE,
        le=sdxl.MAX_GUIDANCE,
        allow_inf_nan=False,
        description=f"Default: the scene's, else {sdxl.DEFAULT_GUIDANCE} (generated backgrounds only).",
    )
    seed: int = Field(
        default=None, ge=0, le=sdxl.MAX_SEED, description="Omitted: drawn and reported (generated backgrounds only)."
    )
    enrich_prompt: bool = Field(
        default=True,
        description="Let the image analysis add lighting and atmosphere to the prompt (generated backgrounds only).",
    )


class AnalyzeForm(UploadForm):
    image: UploadFile = ImageFile
    prompt: str = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="A prompt to enrich from what the image shows."
    )


# Video editing (POST /v1/edits, /v1/edits/plan); bounds from pipelines.edit.request.
VideoFile = Field(
    description="The source video: MP4/MOV (H.264, HEVC, AV1), WebM/MKV (VP9, AV1, H.264), GIF or animated WebP; "
    "at most `edits.max_input_s` (10 s by default) and `edits.max_input_mb` (100 MB). Rotation metadata is "
    "applied; it is resampled to 16 fps and trimmed to 4k+1 frames.",
    json_schema_extra={"format": "binary"},
)


class EditPlanForm(UploadForm):
    video: UploadFile = VideoFile


class EditForm(EditPlanForm, JobForm):
    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="What the edited video shows: the new look (`style`) or the new subject (`replace`).",
    )
    mode: Literal["style", "replace"] = Field(
        description="`style`: every pixel regenerated under the source's structure (edges or greyscale); "
        "`replace`: the subject (segmented per frame) regenerated, everything else kept."
    )
    negative_prompt: str = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="What to avoid; absent uses the default."
    )
    reference_image: UploadFile = Field(
        default=None,
        description="`replace` only: a picture of the new subject's look (same formats and limits as images).",
        json_schema_extra={"format": "binary"},
    )
    control: Literal["edges", "greyscale"] = Field(
        default=None,
        description="`style` only: the structure kept from the source, `edges` (default) or `greyscale`.",
    )
    strength: float = Field(
        default=edit.DEFAULT_STRENGTH,
        ge=edit.MIN_STRENGTH,
        le=edit.MAX_STRENGTH,
        allow_inf_nan=False,
        description="How strongly the source steers (VACE's conditioning scale): higher follows it more closely.",
    )
    steps: int = Field(default=edit.MIN_STEPS, ge=edit.MIN_STEPS, le=edit.MAX_STEPS, description="Denoising steps.")
    guidance_scale: float = Field(
        default=edit.MIN_GUIDANCE,
        ge=edit.MIN_GUIDANCE,
        le=edit.MAX_GUIDANCE,
        allow_inf_nan=False,
        description="Classifier-free guidance; 1 turns it off, as a 4-step LoRA expects.",
    )
    seed: int = Field(
        default=None, ge=0, le=edit.MAX_SEED, description="Same seed, same edit; omitted: drawn and reported."
    )
    keep_audio: bool = Field(default=True, description="Copy the source's sound (as AAC) into the result.")


# Batches (POST /v1/batches): N variations of one video request; the lists' rules are in batch_routes.
MAX_VARIATIONS = 8


class BatchForm(VideoForm):
    variations: int = Field(
        default=None,
        ge=1,
        le=MAX_VARIATIONS,
        description="How many videos (1-8). Default: the length of `seeds` or `prompts`, else 4.",
    )
    seeds: str = Field(
        default=None,
        max_length=400,
        description="A JSON list of seeds, one per variation. Default: `seed`, `seed`+1, ... when `seed` is "
        "given, else drawn (each job's params report its own).",
    )
    prompts: str = Field(
        default=None,
        max_length=MAX_PROMPT_CHARS * 4,
        description="A JSON list of prompts, one per variation, each used as `prompt` would be (after the "
        "template's). Default: `prompt` for every variation.",
    )
