"""Loading a Wan2.2 I2V pipeline for serving: weights, LoRA fusion, quantisation, VAE memory options.

The order follows what is known to work: load the experts, load the LoRA into both, fuse at the
per-expert scales, unload the adapters, then quantise (LoRA on already-quantised weights fails).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipelines.devices import DTYPES, require_fp8_compute, resolve_device
from pipelines.errors import ModelNotFoundError
from pipelines.video_config import VideoModelConfig

log = logging.getLogger(__name__)


def load_wan_pipeline(config: VideoModelConfig):
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    path = _pipeline_folder(config)
    device = resolve_device(config.device)
    if config.quantize_experts == "fp8_dynamic":
        require_fp8_compute(device, "quantize_experts: fp8_dynamic")
    if config.allow_tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = DTYPES[config.dtype]
    overrides = {}
    if config.experts_path:
        experts = Path(config.experts_path)
        for sub in ("transformer", "transformer_2"):
            _require(experts / sub / "config.json", "experts_path")
            overrides[sub] = WanTransformer3DModel.from_pretrained(experts, subfolder=sub, dtype=dtype)
    from diffusers import AutoencoderKLWan

    overrides["vae"] = AutoencoderKLWan.from_pretrained(path, subfolder="vae", dtype=DTYPES[config.vae_dtype])
    pipe = WanImageToVideoPipeline.from_pretrained(path, dtype=dtype, **overrides)
    if config.flow_shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=config.flow_shift)
    if config.lora is not None:
        fuse_lora(pipe, config)
    pipe.to(device)
    quantize(pipe, config, device)
    if config.vae_tiling:
        pipe.vae.enable_tiling()
    if config.vae_slicing:
        pipe.vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipeline_folder(config: VideoModelConfig) -> Path:
    path = Path(config.path)
    if config.tiny_model:
        from pipelines.tiny_models import ensure_tiny_model

        return ensure_tiny_model(config.tiny_model, path)
    _require(path / "model_index.json", "path")
    return path


def _require(marker: Path, setting: str) -> None:
    if not marker.exists():
        raise ModelNotFoundError(
            f"no checkpoint at {marker.parent} (looked for {marker.name}); populate it ahead of time, "
            f"for example `hf download <model id> --local-dir {marker.parent}`, or fix `{setting}` in the config"
        )


def fuse_lora(pipe, config: VideoModelConfig) -> None:
    lora = config.lora
    source = Path(lora.path)
    if not source.exists():
        raise ModelNotFoundError(f"LoRA folder {source} does not exist; download it ahead of time or fix `lora.path`")
    kwargs = {"weight_name": lora.weight_name} if lora.weight_name else {}
    pipe.load_lora_weights(str(source), adapter_name="fast_high", **kwargs)
    names = ["fast_high"]
    if pipe.transformer_2 is not None:
        pipe.load_lora_weights(str(source), adapter_name="fast_low", load_into_transformer_2=True, **kwargs)
        names.append("fast_low")
    pipe.set_adapters(names, adapter_weights=[1.0] * len(names))
    pipe.fuse_lora(adapter_names=["fast_high"], lora_scale=lora.scale_high_noise, components=["transformer"])
    if pipe.transformer_2 is not None:
        pipe.fuse_lora(adapter_names=["fast_low"], lora_scale=lora.scale_low_noise, components=["transformer_2"])
    pipe.unload_lora_weights()
    log.info("fused LoRA %s at %s/%s", source, lora.scale_high_noise, lora.scale_low_noise)


def quantize(pipe, config: VideoModelConfig, device: torch.device) -> None:
    if config.quantize_experts == "none" and config.quantize_text_encoder == "none":
        return
    from torchao.quantization import quantize_

    if config.quantize_experts != "none":
        for expert in (pipe.transformer, pipe.transformer_2):
            if expert is not None:
                quantize_(expert, _torchao_config(config.quantize_experts, device))
    if config.quantize_text_encoder != "none":
        quantize_(pipe.text_encoder, _torchao_config(config.quantize_text_encoder, device))


def _torchao_config(name: str, device: torch.device):
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int8WeightOnlyConfig,
        PerTensor,
    )

    if name == "fp8_dynamic":
        require_fp8_compute(device, "fp8_dynamic")
        return Float8DynamicActivationFloat8WeightConfig(granularity=PerTensor())
    if name == "fp8_weight_only":
        return Float8WeightOnlyConfig()
    if name == "int8_weight_only":
        return Int8WeightOnlyConfig()
    raise ValueError(f"unknown quantisation {name!r}")
