"""Background synthesis with Stable Diffusion XL base and the DPM-Solver++ multistep sampler.

The request, its validation and the size rule need no torch (the HTTP layer imports them); torch and
diffusers are imported when a model is loaded. Generation goes through diffusers' own pipeline call,
split into three timed stages: the prompts are encoded first, the call denoises to latents with a
step-end callback that reports progress and stops the run when asked, and the VAE decode runs last
in the VAE's own dtype.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import Field, field_validator, model_validator

from pipelines.background.scene_templates import BASE_NEGATIVE_PROMPT
from pipelines.common.callbacks import CancelCheck, ProgressCallback
from pipelines.common.config import StrictModel, tiny_model_field
from pipelines.common.errors import InvalidInputError, JobCancelledError, ModelNotFoundError
from pipelines.common.runtime_options import check_option_combination, normalise_attention_backend
from pipelines.common.stage_clock import StageClock
from pipelines.common.text import check_text

log = logging.getLogger(__name__)


# 4 rather than SDXL base's usual floor of ~10: the tiny test model and quick previews need few steps, and
# `path` may point at a step-distilled SDXL (Lightning, Hyper-SD) that is meant to run 4-8 steps.
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 4, 50, 25
MIN_GUIDANCE, MAX_GUIDANCE, DEFAULT_GUIDANCE = 1.0, 20.0, 7.5
DEFAULT_SEED = 42
MAX_SEED = 2**63 - 1

# SDXL is trained on ~1 megapixel buckets: above 1024 it repeats objects, below ~512 it turns to mush.
MAX_SIDE = 1024
MIN_LONG_SIDE = 512
MIN_SHORT_SIDE = 256
SIZE_MULTIPLE = 8  # the VAE downsamples 8x
MAX_INPUT_SIDE = 65_536

SDXL_BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"


def background_size(width: int, height: int) -> tuple[int, int]:
    """The size a background for a ``width`` x ``height`` input is rendered at.

    Keeps the input's aspect. The long side is the input's, clamped to [512, 1024]: small inputs are
    rendered larger because SDXL cannot draw a scene in a few hundred pixels, and the compositor scales
    the background to the subject's frame anyway. The long side grows further (up to 1024) when the short
    side would otherwise fall below 256; only aspects beyond 4:1 then lose their exact ratio. Both sides
    are multiples of 8.
    """
    _check_side("width", width)
    _check_side("height", height)
    long_in, short_in = max(width, height), min(width, height)
    aspect = long_in / short_in
    long_out = min(MAX_SIDE, max(long_in, MIN_LONG_SIDE, MIN_SHORT_SIDE * aspect))
    short_out = max(MIN_SHORT_SIDE, _round_to_multiple(long_out / aspect))
    long_out = _round_to_multiple(long_out)
    return (long_out, short_out) if width >= height else (short_out, long_out)


def _round_to_multiple(value: float) -> int:
    return max(SIZE_MULTIPLE, int(math.floor(value / SIZE_MULTIPLE + 0.5)) * SIZE_MULTIPLE)


def _check_side(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INPUT_SIDE:
        raise InvalidInputError(f"{name} must be a whole number of pixels from 1 to {MAX_INPUT_SIDE}", field=name)


class BackgroundModelConfig(StrictModel):
    path: str = Field(description="Diffusers folder of an SDXL base pipeline (model_index.json at its root).")
    tiny_model: str | None = tiny_model_field("path")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float16", description="UNet and text encoders; the VAE runs in `vae_dtype`."
    )
    vae_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32",
        description="SDXL's stock VAE overflows in float16; a float16 request is upcast unless the VAE's config "
        "says it is safe (force_upcast false, as in the fp16-fix VAE).",
    )
    variant: str | None = Field(default=None, description="Weight file variant to load, e.g. 'fp16'.")
    vae_tiling: bool = Field(default=False, description="Decode in tiles: less memory, slower, rarely needed.")
    allow_tf32: bool = True
    # The video model's speed options, with the same names, rules and checks (pipelines.common.runtime_options).
    attention_backend: str | None = Field(
        default=None,
        description="diffusers attention backend for the UNet (e.g. '_native_cudnn', 'flash', '_flash_3', 'sage'); "
        "null keeps the default (PyTorch scaled_dot_product_attention). Checked against the device and the "
        "installed kernels when the model loads.",
    )
    compile: Literal["none", "regional"] = Field(
        default="none",
        description="'regional': torch.compile each of the UNet's transformer blocks (blocks of one shape share a "
        "compiled graph). The first background of each new size pays the compilation.",
    )
    compile_mode: Literal["default", "max-autotune-no-cudagraphs", "reduce-overhead"] = Field(
        default="default",
        description="torch.compile mode for `compile: regional`; 'reduce-overhead' adds CUDA graphs (GPU only).",
    )

    @field_validator("attention_backend")
    @classmethod
    def _known_attention_backend(cls, value: str | None) -> str | None:
        return normalise_attention_backend(value)

    @model_validator(mode="after")
    def _consistent(self) -> BackgroundModelConfig:
        check_option_combination(self.attention_backend, self.dtype, self.compile, self.compile_mode)
        return self


@dataclass(frozen=True)
class BackgroundRequest:
    """One background: ``width`` x ``height`` is the input image's size; see :func:`background_size`."""

    prompt: str
    width: int
    height: int
    negative_prompt: str = BASE_NEGATIVE_PROMPT
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        validate_background_params(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            seed=self.seed,
        )
        _check_side("width", self.width)
        _check_side("height", self.height)

    @property
    def output_size(self) -> tuple[int, int]:
        return background_size(self.width, self.height)


def validate_background_params(
    *, prompt: str, negative_prompt: str, steps: int, guidance_scale: float, seed: int
) -> None:
    """Raise :class:`InvalidInputError` naming the first field that is out of range."""
    check_text(prompt, "prompt")
    check_text(negative_prompt, "negative_prompt")
    if not prompt.strip():
        raise InvalidInputError("prompt is empty; describe the scene or pick a scene template", field="prompt")
    if isinstance(steps, bool) or not isinstance(steps, int) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise InvalidInputError(
            f"steps must be a whole number from {MIN_STEPS} to {MAX_STEPS}, got {steps}", field="steps"
        )
    finite = isinstance(guidance_scale, (int, float)) and not isinstance(guidance_scale, bool)
    if not finite or not math.isfinite(guidance_scale) or not MIN_GUIDANCE <= guidance_scale <= MAX_GUIDANCE:
        raise InvalidInputError(
            f"guidance_scale must be between {MIN_GUIDANCE} and {MAX_GUIDANCE} (1.0 turns guidance off), "
            f"got {guidance_scale}",
            field="guidance_scale",
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInputError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed}", field="seed")


@dataclass
class BackgroundResult:
    image: Image.Image  # RGB, at background_size(request.width, request.height)
    seed: int
    steps: int
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


class SdxlBackground:
    """One loaded SDXL pipeline. Calls are serialised: the scheduler keeps per-run state."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: BackgroundModelConfig) -> SdxlBackground:
        return cls(load_sdxl_pipeline(config))

    def __call__(
        self,
        request: BackgroundRequest,
        progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> BackgroundResult:
        import torch

        with self._lock, torch.inference_mode():
            return self._run(request, progress, should_cancel)

    def _run(self, request: BackgroundRequest, progress, should_cancel) -> BackgroundResult:
        import torch

        pipe = self.pipe
        device = pipe._execution_device
        width, height = background_size(request.width, request.height)
        if should_cancel is not None and should_cancel():
            raise JobCancelledError("cancelled before it started")
        clock = StageClock(device)
        timings: dict[str, float] = {}
        uses_guidance = request.guidance_scale > 1.0
        # An empty negative prompt becomes None so the pipeline uses zero embeddings, as SDXL base expects.
        embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt.strip() or None,
            do_classifier_free_guidance=uses_guidance,
            device=device,
        )
        timings["text_encode"] = clock.lap()

        def on_step_end(pipeline, index: int, timestep, tensors: dict) -> dict:
            step, total = index + 1, pipeline.num_timesteps
            if step == total:
                timings["denoise"] = clock.lap()
            if progress is not None:
                progress(step, total)
            if should_cancel is not None and should_cancel():
                # Raised through diffusers' loop: nothing after this step runs, the decode included.
                raise JobCancelledError(f"cancelled after step {step} of {total}")
            return {}

        latents = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative_embeds,
            pooled_prompt_embeds=pooled,
            negative_pooled_prompt_embeds=negative_pooled,
            width=width,
            height=height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            # A CPU generator draws the same noise for the same seed on every device.
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="latent",
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=[],
        ).images
        image = self._decode(latents)
        timings["vae_decode"] = clock.lap()
        return BackgroundResult(image=image, seed=request.seed, steps=request.steps, timings_s=timings)

    def _decode(self, latents) -> Image.Image:
        import torch

        vae = self.pipe.vae
        config = vae.config
        latents = latents.to(device=vae.device, dtype=vae.dtype)
        # SDXL's VAE has a single scaling factor; newer VAEs also carry per-channel statistics.
        if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
            channels = latents.shape[1]
            mean = torch.tensor(config.latents_mean, device=latents.device, dtype=latents.dtype).view(1, channels, 1, 1)
            std = torch.tensor(config.latents_std, device=latents.device, dtype=latents.dtype).view(1, channels, 1, 1)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        decoded = vae.decode(latents, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(decoded.float(), output_type="pil")[0].convert("RGB")


def load_sdxl_pipeline(config: BackgroundModelConfig):
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionXLPipeline

    from pipelines.common.devices import DTYPES, resolve_device

    device = resolve_device(config.device)
    check_runtime_options(config, device)  # before any weights are read
    path = _pipeline_folder(config)
    if config.allow_tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    variant = {"variant": config.variant} if config.variant else {}
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", dtype=DTYPES[config.vae_dtype], **variant)
    if vae.dtype == torch.float16 and vae.config.force_upcast:
        log.warning("the VAE in %s overflows in float16 (force_upcast); decoding in float32 instead", path)
        vae = vae.to(torch.float32)
    # No invisible watermark: it would make the output depend on whether `invisible-watermark` is installed.
    pipe = StableDiffusionXLPipeline.from_pretrained(
        path, vae=vae, dtype=DTYPES[config.dtype], add_watermarker=False, **variant
    )
    if not isinstance(pipe.scheduler, DPMSolverMultistepScheduler):
        # SDXL base ships Euler; the training schedule (betas, spacing, offset) carries over from its config.
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.to(device)
    apply_runtime_options(pipe, config)
    if config.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_runtime_options(config: BackgroundModelConfig, device) -> None:
    """Refuse, before loading anything, the speed options this device or image cannot run."""
    from pipelines.common.runtime_options import check_attention_backend, check_compile

    if config.attention_backend is not None:
        check_attention_backend(config.attention_backend, device)
    if config.compile != "none":
        check_compile(config.compile, config.compile_mode, device)


def apply_runtime_options(pipe, config: BackgroundModelConfig) -> None:
    """Attention backend, then regional compile, on the UNet (the denoiser is where the time goes).

    The stock SDXL processors ignore the dispatcher, so a backend first swaps in one that uses it
    (:mod:`pipelines.background.sdxl_attention`); with no backend set the stock processors stay.
    """
    from pipelines.background.sdxl_attention import DispatchedAttnProcessor
    from pipelines.common.runtime_options import compile_repeated_blocks, set_models_attention_backend

    if config.attention_backend is not None:
        pipe.unet.set_attn_processor(DispatchedAttnProcessor())
        set_models_attention_backend([pipe.unet], config.attention_backend)
    if config.compile == "regional":
        compile_repeated_blocks([pipe.unet], config.compile_mode)
        log.info("compiled the UNet's transformer blocks (mode %s)", config.compile_mode)


def _pipeline_folder(config: BackgroundModelConfig) -> Path:
    path = Path(config.path)
    if not (path / "model_index.json").exists():
        raise ModelNotFoundError(
            f"no SDXL pipeline at {path} (looked for model_index.json); populate it ahead of time, for example "
            f"`hf download {SDXL_BASE_ID} --local-dir {path}`, or fix `path` in the config",
            field="path",
        )
    if config.variant and not any((path / "unet").glob(f"*.{config.variant}*")):
        raise ModelNotFoundError(
            f"no {config.variant!r} weights in {path / 'unet'}; download that variant or set `variant` to null",
            field="variant",
        )
    return path
