"""The image-to-video pipeline on the tiny offline Wan2.2 model: real diffusers classes, random weights."""

import copy

import numpy as np
import pytest

from pipelines.common.errors import JobCancelledError, ModelNotFoundError, UnsupportedHardwareError
from pipelines.video.config import VideoModelConfig
from pipelines.video.plan import output_size
from pipelines.video.request import VideoRequest
from pipelines.video.wan_i2v import WanImageToVideo
from tests.images import gradient_image

pytestmark = pytest.mark.slow

INPUT_SIZES = {
    "square": (512, 512),
    "4:3": (640, 480),
    "16:9": (1280, 720),
    "21:9": (1260, 540),
    "9:16": (360, 640),
    "1:3": (200, 600),
    "tiny": (20, 16),
    "huge": (4000, 3000),
}


@pytest.fixture(scope="module")
def renders(wan_pipeline):
    """Render each case once; several tests read the same videos."""
    cache = {}

    def render(size=(640, 480), seed=1, duration_s=0.5, **kwargs):
        key = (size, seed, duration_s, tuple(sorted(kwargs.items())))
        if key not in cache:
            request = VideoRequest(image=gradient_image(*size), seed=seed, duration_s=duration_s, **kwargs)
            cache[key] = wan_pipeline(request)
        return cache[key]

    return render


@pytest.mark.parametrize("name", INPUT_SIZES)
def test_frames_fps_and_size_follow_the_rules(renders, name):
    width, height = INPUT_SIZES[name]
    result = renders(size=(width, height))
    _, out_w, out_h = output_size(width, height)
    assert result.frames.shape == (9, out_h, out_w, 3)
    assert result.frames.dtype == np.uint8
    assert result.fps == 16


def test_longer_duration_has_more_frames(renders):
    assert renders(duration_s=1.0).frames.shape[0] == 17


def test_same_seed_gives_identical_frames(renders, wan_pipeline):
    first = renders(seed=5)
    again = wan_pipeline(VideoRequest(image=gradient_image(640, 480), seed=5, duration_s=0.5))
    assert np.array_equal(first.frames, again.frames)


def test_different_seeds_give_different_frames(renders):
    assert not np.array_equal(renders(seed=5).frames, renders(seed=6).frames)


def test_experts_switch_at_the_boundary(wan_pipeline):
    for steps in (4, 8, 12):
        request = VideoRequest(image=gradient_image(64, 48), seed=0, duration_s=0.5, steps=steps)
        result = wan_pipeline(request)
        scheduler = copy.deepcopy(wan_pipeline.pipe.scheduler)
        scheduler.set_timesteps(steps)
        boundary = 0.9 * scheduler.config.num_train_timesteps
        expected = ["high_noise" if t >= boundary else "low_noise" for t in scheduler.timesteps]
        assert result.experts_per_step == expected
        assert "high_noise" in expected and "low_noise" in expected
        # the high-noise expert always runs first, then hands over once
        assert expected == sorted(expected)


def test_progress_is_reported_every_step_monotonic_and_complete(wan_pipeline):
    seen = []
    wan_pipeline(
        VideoRequest(image=gradient_image(64, 48), duration_s=0.5, steps=6),
        progress=lambda step, total: seen.append((step, total)),
    )
    assert seen == [(step, 6) for step in range(1, 7)]


def test_cancel_stops_at_the_next_step(wan_pipeline):
    seen = []
    cancel_after = 2
    with pytest.raises(JobCancelledError):
        wan_pipeline(
            VideoRequest(image=gradient_image(64, 48), duration_s=0.5, steps=8),
            progress=lambda step, total: seen.append(step),
            should_cancel=lambda: len(seen) >= cancel_after,
        )
    assert seen == [1, 2]


def test_guidance_above_one_runs_the_unconditional_branch(renders):
    guided = renders(seed=9, guidance_scale=3.5, guidance_scale_2=3.5)
    plain = renders(seed=9)
    assert guided.frames.shape == plain.frames.shape
    assert not np.array_equal(guided.frames, plain.frames)


def test_stage_timings_are_recorded(renders):
    timings = renders().timings_s
    assert set(timings) == {"text_encode", "image_encode", "denoise_high_noise", "denoise_low_noise", "vae_decode"}
    assert all(value >= 0 for value in timings.values())


def test_fp8_experts_are_refused_on_cpu_with_a_clear_message(tiny_wan_path):
    config = VideoModelConfig(path=str(tiny_wan_path), device="cpu", dtype="float32", quantize_experts="fp8_dynamic")
    with pytest.raises(UnsupportedHardwareError) as raised:
        WanImageToVideo.from_config(config)
    assert "8.9" in raised.value.message and "cpu" in raised.value.message


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(ModelNotFoundError) as raised:
        WanImageToVideo.from_config(VideoModelConfig(path=str(tmp_path / "nowhere"), device="cpu"))
    assert str(tmp_path / "nowhere") in raised.value.message


def test_int8_text_encoder_and_vae_tiling_still_render(tiny_wan_path):
    config = VideoModelConfig(
        path=str(tiny_wan_path),
        device="cpu",
        dtype="float32",
        quantize_text_encoder="int8_weight_only",
        vae_tiling=True,
        vae_slicing=True,
    )
    pipeline = WanImageToVideo.from_config(config)
    result = pipeline(VideoRequest(image=gradient_image(64, 48), duration_s=0.5, seed=3))
    assert result.frames.shape == (9, 624, 832, 3)
    linear = pipeline.pipe.text_encoder.encoder.block[0].layer[0].SelfAttention.q
    assert "Int8" in type(linear.weight).__name__ or "Affine" in type(linear.weight).__name__


def test_lora_is_fused_at_per_expert_scales_then_unloaded(tiny_wan_path, tiny_models_dir, wan_pipeline):
    from pipelines.tiny.build import TINY_WAN_LORA, ensure_tiny_model
    from pipelines.video.config import LoraFuseConfig

    lora_dir = ensure_tiny_model(TINY_WAN_LORA, tiny_models_dir / TINY_WAN_LORA)
    config = VideoModelConfig(
        path=str(tiny_wan_path),
        device="cpu",
        dtype="float32",
        lora=LoraFuseConfig(path=str(lora_dir), weight_name="pytorch_lora_weights.safetensors"),
    )
    fused = WanImageToVideo.from_config(config).pipe
    base = wan_pipeline.pipe

    def delta(expert_name: str):
        fused_weight = getattr(fused, expert_name).blocks[0].attn1.to_q.weight
        base_weight = getattr(base, expert_name).blocks[0].attn1.to_q.weight
        return fused_weight - base_weight

    high, low = delta("transformer"), delta("transformer_2")
    assert low.abs().max() > 1e-4
    # the same LoRA went into both experts: the fused change is 3x larger in the high-noise one
    assert (high - 3.0 * low).abs().max() < 1e-5
    for expert in (fused.transformer, fused.transformer_2):
        assert not any("lora" in name for name, _ in expert.named_parameters())


@pytest.mark.parametrize(
    ("checks_before_cancel", "where"),
    [(0, "before text encoding"), (1, "after text encoding"), (2, "before step 1"), (6, "before decoding")],
)
def test_cancel_is_checked_between_stages_not_only_between_steps(wan_pipeline, checks_before_cancel, where):
    """A cancel waits at most one stage (an encode, a step or the decode), never the whole render."""
    checks, seen = [], []

    def should_cancel() -> bool:
        checks.append(1)
        return len(checks) > checks_before_cancel

    with pytest.raises(JobCancelledError, match=where):
        wan_pipeline(
            VideoRequest(image=gradient_image(64, 48), duration_s=0.5, steps=4),
            progress=lambda step, total: seen.append(step),
            should_cancel=should_cancel,
        )
    assert len(seen) == max(0, checks_before_cancel - 2)
