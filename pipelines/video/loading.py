"""Loading a Wan2.2 I2V pipeline for serving: weights, LoRA fusion, quantisation, run-time options.

The order follows what is known to work: load the experts, load the LoRA into both, fuse at the
per-expert scales, unload the adapters, then quantise (LoRA on already-quantised weights fails).
Quantisation runs while the weights are still in host memory, one linear layer at a time: each layer is
moved to the device and quantised there before the next one moves, and only then does the rest of the
pipeline follow. So the device never holds a full-precision expert: its peak is about the quantised size
(moving two bf16 experts first and quantising them on the GPU peaked at ~69 GB). After that come the
options that change how the experts run, not what they compute: the attention backend and regional
``torch.compile``. A folder written by ``pipelines.video.prepare_checkpoint`` skips the LoRA step (and the
expert quantisation, where torchao could serialise it).

Every option that a device cannot run is refused before any weights are read, with
:class:`UnsupportedHardwareError` saying what to change.
"""

from __future__ import annotations

import logging
import shutil  # noqa: F401  (the compile check looks up a C++ compiler; tests patch shutil.which through here)
from pathlib import Path

import torch

from pipelines.common import runtime_options
from pipelines.common.devices import DTYPES, require_fp8_compute, resolve_device
from pipelines.common.errors import ModelNotFoundError
from pipelines.common.runtime_options import check_attention_backend
from pipelines.video.config import VideoModelConfig
from pipelines.video.cpu_vae import use_onednn_convolutions
from pipelines.video.prepared_experts import load_prepared_experts, read_prepared_marker

log = logging.getLogger(__name__)

EXPERTS = ("transformer", "transformer_2")


def load_wan_pipeline(config: VideoModelConfig):
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    device = resolve_device(config.device)
    check_runtime_options(config, device)
    path = _pipeline_folder(config)
    dtype = DTYPES[config.dtype]
    overrides: dict = {}
    prepared = None
    if config.prequantized_path:
        prepared = read_prepared_marker(config)
        overrides.update(load_prepared_experts(Path(config.prequantized_path), prepared, dtype, device))
    elif config.experts_path:
        overrides.update(_load_experts(Path(config.experts_path), dtype))
    overrides["vae"] = AutoencoderKLWan.from_pretrained(path, subfolder="vae", dtype=DTYPES[config.vae_dtype])
    pipe = WanImageToVideoPipeline.from_pretrained(path, dtype=dtype, **overrides)
    if config.flow_shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=config.flow_shift)
    configure_pipeline(
        pipe,
        config,
        device,
        fuse=prepared is None,
        quantize_experts=prepared is None or prepared["quantize_at_load"],
    )
    return pipe


def load_fused_experts(config: VideoModelConfig):
    """The experts as production loads them, with the LoRA fused, in a pipeline without text encoder or VAE.

    Used by ``pipelines.video.prepare_checkpoint``; the weights stay on the CPU and are not quantised.
    """
    from diffusers import WanImageToVideoPipeline

    path = _pipeline_folder(config)
    dtype = DTYPES[config.dtype]
    overrides = _load_experts(Path(config.experts_path), dtype) if config.experts_path else {}
    pipe = WanImageToVideoPipeline.from_pretrained(
        path, dtype=dtype, text_encoder=None, tokenizer=None, vae=None, **overrides
    )
    if config.lora is not None:
        fuse_lora(pipe, config)
    return pipe


def configure_pipeline(
    pipe, config: VideoModelConfig, device: torch.device, *, fuse: bool = True, quantize_experts: bool = True
) -> None:
    """Everything after the weights are in memory: LoRA fusion, quantisation, device, attention, compile, VAE.

    Quantisation comes before ``pipe.to(device)``: the modules it quantises go to the device layer by layer,
    already quantised (see the module docstring). The benchmark calls this on pipelines it builds from random
    weights, so it runs the same steps.
    """
    check_runtime_options(config, device)
    if config.allow_tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if fuse and config.lora is not None:
        fuse_lora(pipe, config)
    quantize(pipe, config, device, experts=quantize_experts)
    pipe.to(device)
    if device.type == "cpu":
        use_onednn_convolutions(pipe.vae)
    if config.attention_backend is not None:
        set_attention_backend(pipe, config.attention_backend)
    if config.compile == "regional":
        compile_experts(pipe, config)
    if config.vae_tiling:
        pipe.vae.enable_tiling()
    if config.vae_slicing:
        pipe.vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)


def check_runtime_options(config: VideoModelConfig, device: torch.device) -> None:
    """Refuse, before loading anything, the options this device or image cannot run."""
    if config.quantize_experts == "fp8_dynamic":
        require_fp8_compute(device, "quantize_experts: fp8_dynamic")
    if config.attention_backend is not None:
        check_attention_backend(config.attention_backend, device)
    if config.compile != "none":
        check_compile(config, device)


def check_compile(config: VideoModelConfig, device: torch.device) -> None:
    runtime_options.check_compile(config.compile, config.compile_mode, device)


def set_attention_backend(pipe, name: str) -> None:
    """Route both experts' attention through diffusers' backend ``name`` (the process default stays as it was)."""
    runtime_options.set_models_attention_backend(_experts(pipe), name)


def compile_experts(pipe, config: VideoModelConfig) -> None:
    """Regional compilation of both experts: all their blocks share one code object, so Dynamo traces it once
    per input shape and the 80 blocks reuse the compiled graph with their own weights."""
    runtime_options.compile_repeated_blocks(_experts(pipe), config.compile_mode)
    log.info("compiled the experts' transformer blocks (mode %s)", config.compile_mode)


def _experts(pipe) -> list:
    return [expert for expert in (getattr(pipe, name, None) for name in EXPERTS) if expert is not None]


def _load_experts(folder: Path, dtype: torch.dtype) -> dict:
    from diffusers import WanTransformer3DModel

    experts = {}
    for sub in EXPERTS:
        _require(folder / sub / "config.json", "experts_path")
        experts[sub] = WanTransformer3DModel.from_pretrained(folder, subfolder=sub, dtype=dtype)
    return experts


def _pipeline_folder(config: VideoModelConfig) -> Path:
    path = Path(config.path)
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


def quantize(pipe, config: VideoModelConfig, device: torch.device, *, experts: bool = True) -> None:
    if experts and config.quantize_experts != "none":
        for expert in _experts(pipe):
            quantize_module(expert, config.quantize_experts, device)
    if config.quantize_text_encoder != "none" and pipe.text_encoder is not None:
        quantize_module(pipe.text_encoder, config.quantize_text_encoder, device)


def quantize_module(module: torch.nn.Module, name: str, device: torch.device) -> None:
    """Quantise ``module``'s linear layers with torchao, ending with the whole module on ``device``.

    torchao's ``device`` argument moves each linear layer to the device just before quantising it, and the
    remaining (small) parameters after: a module in host memory reaches the device already quantised, with at
    most one full-precision layer there at a time. (FP8 kernels need the GPU, so quantising entirely on the
    CPU first is not an option for ``fp8_dynamic``.)
    """
    from torchao.quantization import quantize_

    quantize_(module, torchao_config(name, device), device=device)


def torchao_config(name: str, device: torch.device):
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
