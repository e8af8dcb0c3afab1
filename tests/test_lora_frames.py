"""Motion LoRAs on rendered tiny videos: strength 0, fusing, and A → B → A, on frames (slow: one render each).

Tolerance against fusing: the decoded uint8 frames differ by at most 1 level (float32 on a CPU; measured:
the outputs of the experts differ by ~1e-6 and the VAE turns that into at most a rounding step).
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig
from pipelines.video.request import VideoRequest
from pipelines.video.wan_i2v import WanImageToVideo
from tests.images import gradient_image
from tests.lora_fixtures import tiny_library
from tests.test_lora_adapters import fused

pytestmark = pytest.mark.slow
FRAME_TOLERANCE = 1  # uint8 levels


@pytest.fixture(scope="module")
def video(tiny_wan_path):
    config = VideoModelConfig(
        path=str(tiny_wan_path), device="cpu", dtype="float32", loras=MotionLoraLibraryConfig(path=str(tiny_library()))
    )
    return WanImageToVideo.from_config(config)


@pytest.fixture(scope="module")
def request_():
    return VideoRequest(image=gradient_image(320, 320), seed=11, duration_s=0.5, prompt="orbit")


def test_strength_zero_renders_the_same_frames_as_no_lora(video, request_):
    plain = video(request_).frames
    zero = video(request_, loras=[("tiny-orbit", 0.0)]).frames
    assert np.array_equal(plain, zero)


def test_a_then_b_then_a_renders_a_again_exactly_and_matches_fusing(video, request_):
    first = video(request_, loras=[("tiny-orbit", 1.0)])
    other = video(request_, loras=[("tiny-dolly", 1.0)]).frames
    again = video(request_, loras=[("tiny-orbit", 1.0)]).frames
    assert np.array_equal(first.frames, again)
    assert not np.array_equal(first.frames, other)
    assert "lora_switch" in first.timings_s

    from diffusers import WanImageToVideoPipeline

    file = tiny_library() / "tiny-orbit.safetensors"
    components = dict(video.pipe.components)  # the same components, with the experts replaced by fused copies
    components["transformer"] = fused(video.pipe.transformer, file, 1.0)
    components["transformer_2"] = fused(video.pipe.transformer_2, file, 0.75)  # tiny-orbit's low-noise default
    pipe = WanImageToVideoPipeline(**components, boundary_ratio=video.pipe.config.boundary_ratio)
    reference = WanImageToVideo(pipe)(request_).frames
    difference = np.abs(reference.astype(int) - first.frames.astype(int)).max()
    assert difference <= FRAME_TOLERANCE
