"""SDXL's speed options (attention backend, regional compile, VAE dtype) on the tiny offline SDXL, on the CPU.

Options a CPU can run are applied, checked on the modules, rendered and compared with the default path;
options it cannot run must be refused before any weights are read.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines.background.sdxl import BackgroundModelConfig, BackgroundRequest, SdxlBackground
from pipelines.common.errors import UnsupportedHardwareError
from pipelines.tiny.sdxl import build_tiny_sdxl

REQUEST = BackgroundRequest(prompt="beach sunset, soft light", width=200, height=150, steps=4, seed=1)


@pytest.fixture(scope="module")
def tiny_sdxl_path(tmp_path_factory):
    return build_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="module")
def default_render(tiny_sdxl_path):
    return np.asarray(SdxlBackground.from_config(_config(tiny_sdxl_path))(REQUEST).image).astype(int)


def _config(path, **kwargs) -> BackgroundModelConfig:
    return BackgroundModelConfig(**{"path": str(path), "device": "cpu", "dtype": "float32", **kwargs})


# ---------------------------------------------------------------- config validation (no model)
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"attention_backend": "flash_attention_9"}, "unknown attention_backend"),
        ({"attention_backend": "flash_hub"}, "Hugging Face Hub"),
        ({"attention_backend": "flash", "dtype": "float32"}, "bfloat16 or float16"),
        ({"compile": "everything"}, "compile"),
        ({"compile_mode": "reduce-overhead"}, "compile: regional"),
    ],
)
def test_inconsistent_options_fail_at_config_time(changes, words):
    with pytest.raises(ValidationError) as raised:
        BackgroundModelConfig(path="/models/sdxl", **changes)
    assert words in str(raised.value)


def test_defaults_keep_the_stock_processors(tiny_sdxl_path):
    config = BackgroundModelConfig(path="/m")
    assert (config.attention_backend, config.compile, config.compile_mode) == (None, "none", "default")
    assert BackgroundModelConfig(path="/m", attention_backend=" _Native_MATH ").attention_backend == "_native_math"
    pipe = SdxlBackground.from_config(_config(tiny_sdxl_path)).pipe
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"attention_backend": "flash", "dtype": "bfloat16"}, "needs a CUDA GPU"),
        ({"attention_backend": "_native_cudnn", "dtype": "float16"}, "needs a CUDA GPU"),
        ({"attention_backend": "xformers"}, "needs a CUDA GPU"),
        ({"compile": "regional", "compile_mode": "reduce-overhead"}, "CUDA graphs"),
    ],
)
def test_gpu_only_options_are_refused_on_cpu_before_loading(tmp_path, changes, words):
    # the path does not exist: the refusal must come before anything is read
    with pytest.raises(UnsupportedHardwareError) as raised:
        SdxlBackground.from_config(_config(tmp_path / "nowhere", **changes))
    assert words in raised.value.message


def test_compile_without_a_cpp_compiler_is_refused(monkeypatch, tmp_path):
    from pipelines.common import runtime_options

    monkeypatch.setattr(runtime_options.shutil, "which", lambda name: None)
    with pytest.raises(UnsupportedHardwareError) as raised:
        SdxlBackground.from_config(_config(tmp_path / "nowhere", compile="regional"))
    assert "C++ compiler" in raised.value.message


# ---------------------------------------------------------------- attention backend
def test_attention_backend_is_set_on_every_unet_processor_and_used(tiny_sdxl_path, default_render, monkeypatch):
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    before = _AttentionBackendRegistry._active_backend
    background = SdxlBackground.from_config(_config(tiny_sdxl_path, attention_backend="_native_math"))
    assert _AttentionBackendRegistry._active_backend == before  # the process default is left as it was
    processors = list(background.pipe.unet.attn_processors.values())
    assert processors and {type(p).__name__ for p in processors} == {"DispatchedAttnProcessor"}
    assert {p._attention_backend for p in processors} == {AttentionBackendName._NATIVE_MATH}
    # the VAE keeps the stock processor (its 512-wide single head is not for the flash kernels)
    assert {type(p).__name__ for p in background.pipe.vae.attn_processors.values()} == {"AttnProcessor2_0"}

    # the chosen kernel really runs: the stock processor would never reach the dispatcher
    calls = []
    kernel = _AttentionBackendRegistry._backends[AttentionBackendName._NATIVE_MATH]

    def counted(**kwargs):
        calls.append(kwargs["query"].shape)
        return kernel(**kwargs)

    monkeypatch.setitem(_AttentionBackendRegistry._backends, AttentionBackendName._NATIVE_MATH, counted)
    image = np.asarray(background(REQUEST).image).astype(int)
    assert len(calls) >= 4 * len(processors)  # every processor, every step (twice with guidance batched)
    assert image.shape == default_render.shape
    assert np.abs(image - default_render).max() <= 2


def test_native_backend_renders_the_same_pixels(tiny_sdxl_path, default_render):
    image = SdxlBackground.from_config(_config(tiny_sdxl_path, attention_backend="native"))(REQUEST).image
    assert np.abs(np.asarray(image).astype(int) - default_render).max() <= 1


# ---------------------------------------------------------------- regional compile
@pytest.mark.slow
def test_regional_compile_compiles_the_transformer_blocks_and_matches_eager(tiny_sdxl_path, default_render):
    background = SdxlBackground.from_config(_config(tiny_sdxl_path, compile="regional"))
    modules = list(background.pipe.unet.modules())
    compiled = [m for m in modules if getattr(m, "_compiled_call_impl", None) is not None]
    blocks = [m for m in modules if type(m).__name__ == "BasicTransformerBlock"]
    assert blocks and compiled == blocks  # exactly the repeated blocks, not the whole UNet
    image = np.asarray(background(REQUEST).image).astype(int)  # the first call compiles
    assert np.abs(image - default_render).max() <= 2


# ---------------------------------------------------------------- VAE dtype
def test_bfloat16_vae_is_honoured(tiny_sdxl_path):
    import torch

    background = SdxlBackground.from_config(_config(tiny_sdxl_path, dtype="bfloat16", vae_dtype="bfloat16"))
    assert background.pipe.vae.dtype == torch.bfloat16 and background.pipe.unet.dtype == torch.bfloat16
    assert np.asarray(background(REQUEST).image).std() > 0


def test_float16_vae_stays_float16_when_its_config_says_it_is_safe(tiny_sdxl_path, tmp_path):
    import torch

    # The fp16-fix VAE ships force_upcast: false; the stock SDXL VAE (the tiny one too) says true.
    copy = shutil.copytree(tiny_sdxl_path, tmp_path / "fp16-fix")
    config_file = copy / "vae" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["force_upcast"] is True
    config_file.write_text(json.dumps({**config, "force_upcast": False}))
    assert SdxlBackground.from_config(_config(copy, vae_dtype="float16")).pipe.vae.dtype == torch.float16
    assert SdxlBackground.from_config(_config(tiny_sdxl_path, vae_dtype="float16")).pipe.vae.dtype == torch.float32
