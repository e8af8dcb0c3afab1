"""Background synthesis on the tiny offline SDXL: real diffusers classes and folder layout, random weights."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from pipelines.background.sdxl import (
    MAX_SIDE,
    BackgroundModelConfig,
    BackgroundRequest,
    SdxlBackground,
    background_size,
)
from pipelines.common.errors import InvalidInputError, JobCancelledError, ModelNotFoundError
from pipelines.tiny.sdxl import build_tiny_sdxl

PROMPT = "beach sunset, soft light"


@pytest.fixture(scope="module")
def tiny_sdxl_path(tmp_path_factory):
    return build_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="module")
def background(tiny_sdxl_path):
    return SdxlBackground.from_config(BackgroundModelConfig(path=str(tiny_sdxl_path), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def renders(background):
    """Render each case once; several tests read the same images."""
    cache = {}

    def render(size=(200, 150), seed=1, **kwargs):
        key = (size, seed, tuple(sorted(kwargs.items())))
        if key not in cache:
            kwargs.setdefault("steps", 4)
            request = BackgroundRequest(prompt=PROMPT, width=size[0], height=size[1], seed=seed, **kwargs)
            cache[key] = background(request)
        return cache[key]

    return render


def _config(path, **kwargs) -> BackgroundModelConfig:
    return BackgroundModelConfig(**{"path": str(path), "device": "cpu", "dtype": "float32", **kwargs})


def test_folder_is_a_real_sdxl_pipeline(tiny_sdxl_path):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_path)
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert type(pipe.text_encoder) is CLIPTextModel and type(pipe.text_encoder_2) is CLIPTextModelWithProjection
    assert isinstance(pipe.tokenizer, CLIPTokenizer) and isinstance(pipe.tokenizer_2, CLIPTokenizer)
    assert pipe.vae_scale_factor == 8
    # known words stay whole; unknown ones fall back to byte pieces instead of <unk>
    assert pipe.tokenizer.tokenize("sunset zebra") == ["sunset</w>", "z", "e", "b", "r", "a</w>"]


def test_build_is_deterministic(tiny_sdxl_path, tmp_path):
    again = build_tiny_sdxl(tmp_path / "again")

    def digests(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}

    assert digests(again) == digests(tiny_sdxl_path)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((640, 480), (640, 480)),  # in range: kept
        ((4000, 3000), (1024, 768)),  # huge: long side capped
        ((1920, 1080), (1024, 576)),
        ((1080, 1920), (576, 1024)),  # portrait
        ((300, 300), (512, 512)),  # small square: raised to the long-side floor
        ((200, 150), (512, 384)),
        ((300, 100), (768, 256)),  # 3:1 keeps its ratio by growing the long side
        ((1000, 10), (1024, 256)),  # beyond 4:1 the short side floor wins
    ],
)
def test_background_size_rule(size, expected):
    assert background_size(*size) == expected


@pytest.mark.parametrize("size", [(640, 480), (4000, 3000), (333, 777), (1023, 1021), (17, 16), (5000, 1300), (1, 3)])
def test_background_size_invariants(size):
    width, height = background_size(*size)
    assert width % 8 == 0 and height % 8 == 0
    assert max(width, height) <= MAX_SIDE and min(width, height) >= 256
    assert (width >= height) == (size[0] >= size[1])
    aspect = size[0] / size[1]
    if max(size) / min(size) <= 4:  # within that range the ratio survives up to rounding each side by 4 px
        assert abs(width / height - aspect) / aspect <= 8 / min(width, height)


@pytest.mark.parametrize("size", [(200, 150), (300, 400)])
def test_output_follows_background_size(renders, size):
    result = renders(size=size)
    assert result.image.mode == "RGB"
    assert result.image.size == background_size(*size)
    assert result.seed == 1 and result.steps == 4
    assert set(result.timings_s) == {"text_encode", "denoise", "vae_decode"}
    assert all(value >= 0 for value in result.timings_s.values())


def test_same_seed_gives_identical_pixels(renders, background):
    again = background(BackgroundRequest(prompt=PROMPT, width=200, height=150, seed=5, steps=4))
    assert np.array_equal(np.asarray(renders(seed=5).image), np.asarray(again.image))


def test_different_seeds_give_different_pixels(renders):
    assert not np.array_equal(np.asarray(renders(seed=5).image), np.asarray(renders(seed=6).image))


def test_guidance_off_and_empty_negative_prompt_render(renders):
    plain = renders(seed=5, guidance_scale=1.0, negative_prompt="")
    assert plain.image.size == (512, 384)
    assert not np.array_equal(np.asarray(plain.image), np.asarray(renders(seed=5).image))


def test_progress_is_reported_every_step_monotonic_and_complete(background):
    seen = []
    background(
        BackgroundRequest(prompt=PROMPT, width=64, height=64, steps=6),
        progress=lambda step, total: seen.append((step, total)),
    )
    assert seen == [(step, 6) for step in range(1, 7)]


def test_cancel_stops_at_the_next_step(background):
    seen = []
    with pytest.raises(JobCancelledError):
        background(
            BackgroundRequest(prompt=PROMPT, width=64, height=64, steps=8),
            progress=lambda step, total: seen.append(step),
            should_cancel=lambda: len(seen) >= 2,
        )
    assert seen == [1, 2]


def test_cancel_before_start_reports_nothing(background):
    seen = []
    with pytest.raises(JobCancelledError):
        background(
            BackgroundRequest(prompt=PROMPT, width=64, height=64, steps=4),
            progress=lambda step, total: seen.append(step),
            should_cancel=lambda: True,
        )
    assert seen == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"negative_prompt": None}, "negative_prompt"),
        ({"steps": 3}, "steps"),
        ({"steps": 51}, "steps"),
        ({"steps": 4.0}, "steps"),
        ({"guidance_scale": 0.5}, "guidance_scale"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"guidance_scale": 20.5}, "guidance_scale"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"width": 0}, "width"),
        ({"height": 512.0}, "height"),
    ],
)
def test_validation_errors_name_their_field(kwargs, field):
    params = {"prompt": PROMPT, "width": 512, "height": 512, **kwargs}
    with pytest.raises(InvalidInputError) as raised:
        BackgroundRequest(**params)
    assert raised.value.field == field


def test_defaults_follow_the_reference_recipe():
    request = BackgroundRequest(prompt=PROMPT, width=640, height=480)
    assert (request.steps, request.guidance_scale) == (25, 7.5)
    assert "watermark" in request.negative_prompt


def test_missing_checkpoint_names_the_path_and_how_to_populate(tmp_path):
    with pytest.raises(ModelNotFoundError) as raised:
        SdxlBackground.from_config(_config(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in raised.value.message and "hf download" in raised.value.message


def test_missing_variant_is_reported(tiny_sdxl_path):
    with pytest.raises(ModelNotFoundError) as raised:
        SdxlBackground.from_config(_config(tiny_sdxl_path, variant="fp16"))
    assert raised.value.field == "variant"


def test_other_schedulers_are_swapped_for_dpm_solver_and_fp16_vae_is_upcast(tiny_sdxl_path, tmp_path):
    import torch
    from diffusers import DPMSolverMultistepScheduler

    # SDXL base ships an Euler scheduler; the loader must still sample with DPM-Solver.
    copy = shutil.copytree(tiny_sdxl_path, tmp_path / "euler")
    config_file = copy / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config["_class_name"] = "EulerDiscreteScheduler"
    config_file.write_text(json.dumps(config))
    pipe = SdxlBackground.from_config(_config(copy, vae_dtype="float16")).pipe
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.vae.dtype == torch.float32  # the VAE's config says it overflows in float16


def test_bfloat16_unet_with_float32_vae_decodes(tiny_sdxl_path):
    import torch

    # Production mixes dtypes (half-precision UNet, float32 VAE); the latents must be cast for the decode.
    background = SdxlBackground.from_config(_config(tiny_sdxl_path, dtype="bfloat16", vae_dtype="float32"))
    assert background.pipe.unet.dtype == torch.bfloat16 and background.pipe.vae.dtype == torch.float32
    result = background(BackgroundRequest(prompt=PROMPT, width=64, height=64, steps=4))
    assert result.image.size == (512, 512) and np.asarray(result.image).std() > 0


def test_tiny_model_is_built_when_missing(tmp_path):
    from pipelines.tiny.provision import provision_tiny_models
    from pipelines.tiny.sdxl import TINY_SDXL

    target = tmp_path / TINY_SDXL
    provision_tiny_models(_config(target, tiny_model=TINY_SDXL))
    background = SdxlBackground.from_config(_config(target, tiny_model=TINY_SDXL))
    assert (target / "model_index.json").exists()
    assert background(BackgroundRequest(prompt=PROMPT, width=64, height=64, steps=4)).image.size == (512, 512)
