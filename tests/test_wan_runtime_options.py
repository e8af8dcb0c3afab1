"""The video model's speed options (attention backend, regional compile) and the prepared-checkpoint cold start.

Everything runs on the tiny offline Wan2.2 model on the CPU: options a CPU can run are rendered and compared
with the default path; options it cannot run must be refused before any weights are read.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from pipelines.common.errors import ModelNotFoundError, UnsupportedHardwareError
from pipelines.video.config import ATTENTION_BACKENDS, HALF_PRECISION_ATTENTION, LoraFuseConfig, VideoModelConfig
from pipelines.video.request import VideoRequest
from pipelines.video.wan_i2v import WanImageToVideo
from tests.images import gradient_image

LORA_FILE = "pytorch_lora_weights.safetensors"


def _request(seed: int = 3) -> VideoRequest:
    return VideoRequest(image=gradient_image(832, 480), duration_s=0.5, seed=seed)


def _config(path, **kwargs) -> VideoModelConfig:
    return VideoModelConfig(**{"path": str(path), "device": "cpu", "dtype": "float32", **kwargs})


@pytest.fixture(scope="module")
def lora_dir(tiny_models_dir):
    from pipelines.tiny.build import TINY_WAN_LORA, ensure_tiny_model

    return ensure_tiny_model(TINY_WAN_LORA, tiny_models_dir / TINY_WAN_LORA)


@pytest.fixture(scope="module")
def default_render(wan_pipeline):
    return wan_pipeline(_request())


# ---------------------------------------------------------------- config validation (no model)
def test_attention_backend_list_matches_the_installed_diffusers():
    from diffusers.models.attention_dispatch import AttentionBackendName

    installed = {backend.value for backend in AttentionBackendName}
    assert set(ATTENTION_BACKENDS) <= installed
    left_out = installed - set(ATTENTION_BACKENDS)
    assert all(name.endswith("_hub") or name in {"_native_npu", "_native_xla"} for name in left_out)
    assert set(HALF_PRECISION_ATTENTION) <= set(ATTENTION_BACKENDS)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"attention_backend": "flash_attention_9"}, "unknown attention_backend"),
        ({"attention_backend": "flash_hub"}, "Hugging Face Hub"),
        ({"attention_backend": "flash", "dtype": "float32"}, "bfloat16 or float16"),
        ({"compile": "everything"}, "compile"),
        ({"compile_mode": "reduce-overhead"}, "compile: regional"),
        ({"prequantized_path": "/a", "experts_path": "/b"}, "either prequantized_path or experts_path"),
    ],
)
def test_inconsistent_options_fail_at_config_time(changes, words):
    with pytest.raises(ValidationError) as raised:
        VideoModelConfig(path="/models/wan", **changes)
    assert words in str(raised.value)


def test_defaults_keep_the_old_behaviour():
    config = VideoModelConfig(path="/models/wan")
    assert (config.compile, config.compile_mode, config.attention_backend, config.prequantized_path) == (
        "none",
        "default",
        None,
        None,
    )
    assert VideoModelConfig(path="/m", attention_backend=" _Native_CUDNN ").attention_backend == "_native_cudnn"


# ---------------------------------------------------------------- refused on CPU
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"attention_backend": "_native_cudnn", "dtype": "bfloat16"}, "needs a CUDA GPU"),
        ({"attention_backend": "sage", "dtype": "bfloat16"}, "needs a CUDA GPU"),
        ({"compile": "regional", "compile_mode": "reduce-overhead"}, "CUDA graphs"),
        ({"quantize_experts": "fp8_dynamic"}, "8.9"),
    ],
)
def test_gpu_only_options_are_refused_on_cpu_before_loading(tmp_path, changes, words):
    # the path does not exist: a refusal must come before anything is read
    import torch

    from pipelines.video.loading import check_runtime_options, load_wan_pipeline

    config = VideoModelConfig(path=str(tmp_path / "nowhere"), device="cpu", **{"dtype": "float32", **changes})
    with pytest.raises(UnsupportedHardwareError) as raised:
        check_runtime_options(config, torch.device("cpu"))
    assert words in raised.value.message
    with pytest.raises(UnsupportedHardwareError):
        load_wan_pipeline(config)


def test_compile_without_a_cpp_compiler_is_refused(monkeypatch, tmp_path):
    import torch

    from pipelines.video import loading as wan_loading

    monkeypatch.setattr(wan_loading.shutil, "which", lambda name: None)
    with pytest.raises(UnsupportedHardwareError) as raised:
        wan_loading.check_runtime_options(_config(tmp_path, compile="regional"), torch.device("cpu"))
    assert "C++ compiler" in raised.value.message


# ---------------------------------------------------------------- options that run on CPU
@pytest.mark.slow
def test_cpu_attention_backend_renders_the_same_video(tiny_wan_path, default_render):
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    before = _AttentionBackendRegistry._active_backend
    pipeline = WanImageToVideo.from_config(_config(tiny_wan_path, attention_backend="_native_math"))
    # the experts carry the choice; the process-wide default is left as it was
    assert _AttentionBackendRegistry._active_backend == before
    processor = pipeline.pipe.transformer_2.blocks[0].attn1.processor
    assert processor._attention_backend.value == "_native_math"
    result = pipeline(_request())
    assert result.frames.shape == default_render.frames.shape
    assert np.abs(result.frames.astype(int) - default_render.frames).max() <= 2


@pytest.mark.slow
def test_regional_compile_runs_on_cpu_and_matches_eager(tiny_wan_path, default_render):
    pipeline = WanImageToVideo.from_config(_config(tiny_wan_path, compile="regional"))
    for expert in (pipeline.pipe.transformer, pipeline.pipe.transformer_2):
        assert all(block._compiled_call_impl is not None for block in expert.blocks)
    result = pipeline(_request())  # the first call compiles (tens of seconds on two cores)
    assert len(result.step_timings_s) == 4 and all(t > 0 for t in result.step_timings_s)
    assert np.abs(result.frames.astype(int) - default_render.frames).max() <= 2


# ---------------------------------------------------------------- prepared checkpoints
@pytest.fixture()
def private_lora(lora_dir, tmp_path):
    """A copy of the tiny LoRA that a test can delete to prove it is not read."""
    return shutil.copytree(lora_dir, tmp_path / "lora")


def _fuse_lora_must_not_run(*args, **kwargs):
    raise AssertionError("the LoRA was fused although the prepared folder already holds it")


@pytest.mark.slow
def test_prepared_folder_renders_the_same_video_without_the_lora(tiny_wan_path, private_lora, tmp_path, monkeypatch):
    from pipelines.video import loading as wan_loading
    from pipelines.video import prepare_checkpoint as prep

    lora = LoraFuseConfig(path=str(private_lora), weight_name=LORA_FILE)
    config = _config(tiny_wan_path, lora=lora)
    fused_at_start = WanImageToVideo.from_config(config)(_request())

    # the command line, reading the model config out of a Serve config like configs/production.yaml
    serve_config = tmp_path / "serve.yaml"
    args = {"video_generator": {"model": config.model_dump(mode="json", exclude_defaults=True)}}
    serve_config.write_text(yaml.safe_dump({"applications": [{"name": "vividflow", "args": args}]}))
    prep.main(["--config", str(serve_config), "--out", str(tmp_path / "prepared")])
    marker = json.loads((tmp_path / "prepared" / prep.MARKER).read_text())
    assert marker["experts_storage"] == "diffusers" and marker["quantize_at_load"] is False
    assert marker["lora"]["scale_high_noise"] == 3.0

    shutil.rmtree(private_lora)  # nothing may read it any more
    monkeypatch.setattr(wan_loading, "fuse_lora", _fuse_lora_must_not_run)
    prepared = WanImageToVideo.from_config(config.model_copy(update={"prequantized_path": str(tmp_path / "prepared")}))
    result = prepared(_request())
    assert np.array_equal(result.frames, fused_at_start.frames)


@pytest.mark.slow
def test_quantised_experts_are_stored_quantised(tiny_wan_path, private_lora, tmp_path, monkeypatch):
    from pipelines.video import loading as wan_loading
    from pipelines.video.prepare_checkpoint import prepare_checkpoint

    lora = LoraFuseConfig(path=str(private_lora), weight_name=LORA_FILE)
    config = _config(tiny_wan_path, lora=lora, quantize_experts="int8_weight_only")
    at_start = WanImageToVideo.from_config(config)
    expected = at_start(_request())
    marker = prepare_checkpoint(config, tmp_path / "prepared")
    assert marker["experts_storage"] == "torchao" and marker["quantize_at_load"] is False
    assert (tmp_path / "prepared" / "transformer" / "vividflow-torchao.safetensors").exists()

    shutil.rmtree(private_lora)
    monkeypatch.setattr(wan_loading, "fuse_lora", _fuse_lora_must_not_run)
    monkeypatch.setattr(wan_loading, "quantize_module", _no_quantisation_at_load)
    prepared = WanImageToVideo.from_config(config.model_copy(update={"prequantized_path": str(tmp_path / "prepared")}))
    for name in ("transformer", "transformer_2"):
        mine, theirs = getattr(prepared.pipe, name).state_dict(), getattr(at_start.pipe, name).state_dict()
        assert type(mine["blocks.0.attn1.to_q.weight"]).__name__ == "Int8Tensor"
        for key, tensor in theirs.items():
            assert np.array_equal(_plain(mine[key]), _plain(tensor)), key
    result = prepared(_request())
    assert np.abs(result.frames.astype(int) - expected.frames).max() <= 1


def _no_quantisation_at_load(module, name, device):
    raise AssertionError("an expert was quantised again at load")


def _plain(tensor):
    return (tensor.dequantize() if hasattr(tensor, "dequantize") else tensor).float().detach().numpy()


def test_fp8_weight_only_experts_round_trip(tiny_wan_path, lora_dir, tmp_path):
    """The FP8 weight format (torchao's Float8Tensor, also what fp8_dynamic stores) written and read back."""
    import torch

    from pipelines.video.loading import load_fused_experts, quantize_module
    from pipelines.video.prepare_checkpoint import prepare_checkpoint
    from pipelines.video.prepared_experts import load_torchao_expert

    lora = LoraFuseConfig(path=str(lora_dir), weight_name=LORA_FILE)
    config = _config(tiny_wan_path, dtype="bfloat16", lora=lora, quantize_experts="fp8_weight_only")
    assert prepare_checkpoint(config, tmp_path / "prepared")["experts_storage"] == "torchao"
    reference = load_fused_experts(config).transformer_2
    quantize_module(reference, "fp8_weight_only", torch.device("cpu"))
    loaded = load_torchao_expert(tmp_path / "prepared" / "transformer_2", torch.device("cpu"))
    assert type(loaded.blocks[-1].ffn.net[2].weight).__name__ == "Float8Tensor"
    state = loaded.state_dict()
    for key, tensor in reference.state_dict().items():
        assert np.array_equal(_plain(state[key]), _plain(tensor)), key
    assert {str(b.dtype) for b in loaded.buffers()} == {"torch.float32"}  # rotary tables as from_pretrained


def test_unserialisable_quantisation_falls_back_to_quantise_at_load(tiny_wan_path, lora_dir, tmp_path, monkeypatch):
    from pipelines.video import prepare_checkpoint as prep

    monkeypatch.setattr(prep, "torchao_round_trip", lambda *args: (False, "ValueError: Unsupported tensor type"))
    lora = LoraFuseConfig(path=str(lora_dir), weight_name=LORA_FILE)
    config = _config(tiny_wan_path, lora=lora, quantize_experts="int8_weight_only")
    marker = prep.prepare_checkpoint(config, tmp_path / "prepared")
    assert marker["experts_storage"] == "diffusers" and marker["quantize_at_load"] is True
    assert "quantised at load" in marker["note"] and "Unsupported tensor type" in marker["note"]
    pipe = WanImageToVideo.from_config(config.model_copy(update={"prequantized_path": str(tmp_path / "prepared")}))
    assert type(pipe.pipe.transformer.blocks[0].attn1.to_q.weight).__name__ == "Int8Tensor"


def test_a_prepared_folder_that_does_not_match_the_config_is_refused(tiny_wan_path, lora_dir, tmp_path):
    from pipelines.video.prepare_checkpoint import prepare_checkpoint

    lora = LoraFuseConfig(path=str(lora_dir), weight_name=LORA_FILE)
    prepare_checkpoint(_config(tiny_wan_path, lora=lora), tmp_path / "prepared")
    other = lora.model_copy(update={"scale_high_noise": 2.0})
    config = _config(tiny_wan_path, lora=other, prequantized_path=str(tmp_path / "prepared"))
    with pytest.raises(ModelNotFoundError) as raised:
        WanImageToVideo.from_config(config)
    assert "lora" in raised.value.message and "Prepare it again" in raised.value.message
    with pytest.raises(ModelNotFoundError) as raised:
        WanImageToVideo.from_config(_config(tiny_wan_path, prequantized_path=str(tmp_path / "missing")))
    assert "prepare_checkpoint" in raised.value.message
    with pytest.raises(FileExistsError):
        prepare_checkpoint(_config(tiny_wan_path, lora=lora), tmp_path / "prepared")
