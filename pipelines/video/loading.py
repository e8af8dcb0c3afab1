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
import shutil
from pathlib import Path

import torch

from pipelines.common.devices import DTYPES, require_fp8_compute, resolve_device
from pipelines.common.errors import ModelNotFoundError, UnsupportedHardwareError
from pipelines.video.config import VideoModelConfig
from pipelines.video.cpu_vae import use_onednn_convolutions
from pipelines.video.prepared_experts import load_prepared_experts, read_prepared_marker

log = logging.getLogger(__name__)

EXPERTS = ("transformer", "transformer_2")

# Attention backends that run on a CPU; every other one needs a CUDA GPU.
CPU_ATTENTION_BACKENDS = frozenset({"native", "_native_math", "flex"})
# Lowest compute capability each GPU attention kernel supports (absent: any CUDA GPU).
ATTENTION_MIN_CAPABILITY = {
    "flash": (8, 0),
    "flash_varlen": (8, 0),
    "_flash_3": (9, 0),
    "_flash_varlen_3": (9, 0),
    "_native_flash": (8, 0),
    "_native_cudnn": (8, 0),
    "sage": (8, 0),
    "sage_varlen": (8, 0),
    "_sage_qk_int8_pv_fp8_cuda": (8, 9),
    "_sage_qk_int8_pv_fp8_cuda_sm90": (9, 0),
    "_sage_qk_int8_pv_fp16_cuda": (8, 0),
    "_sage_qk_int8_pv_fp16_triton": (8, 0),
}


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


def check_attention_backend(name: str, device: torch.device) -> None:
    if device.type != "cuda":
        if name not in CPU_ATTENTION_BACKENDS:
            raise UnsupportedHardwareError(
                f"attention_backend {name!r} needs a CUDA GPU; this replica runs on {device.type}. "
                f"On a CPU use one of {', '.join(sorted(CPU_ATTENTION_BACKENDS))}, or leave it unset."
            )
        return
    needed = ATTENTION_MIN_CAPABILITY.get(name)
    capability = torch.cuda.get_device_capability(device)
    if needed is not None and capability < needed:
        raise UnsupportedHardwareError(
            f"attention_backend {name!r} needs compute capability >= {needed[0]}.{needed[1]}; this GPU has "
            f"{capability[0]}.{capability[1]}. Use '_native_cudnn', 'native' or leave it unset."
        )
    try:
        from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements
    except ImportError:  # the private check moved: set_attention_backend still reports a missing package
        return
    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except (RuntimeError, ValueError) as exc:
        raise UnsupportedHardwareError(f"attention_backend {name!r} cannot run in this image: {exc}") from None


def check_compile(config: VideoModelConfig, device: torch.device) -> None:
    what = f"compile: {config.compile}"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise UnsupportedHardwareError(f"{what} needs Triton for this GPU; install it or set compile: none")
        return
    if config.compile_mode == "reduce-overhead":
        raise UnsupportedHardwareError(
            f"compile_mode: reduce-overhead records CUDA graphs and needs a CUDA GPU; this replica runs on "
            f"{device.type}. Use compile_mode: default."
        )
    if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        raise UnsupportedHardwareError(f"{what} on {device.type} needs a C++ compiler (g++) for TorchInductor")


def set_attention_backend(pipe, name: str) -> None:
    """Route both experts' attention through diffusers' backend ``name``.

    diffusers also makes the last backend set the default of the whole process; that default is put back,
    so other models in the same process keep theirs (the experts' processors hold their own choice).
    """
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    previous = _AttentionBackendRegistry._active_backend
    try:
        for expert in _experts(pipe):
            expert.set_attention_backend(name)
    except RuntimeError as exc:
        raise UnsupportedHardwareError(f"attention_backend {name!r} cannot run in this image: {exc}") from None
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)
    log.info("attention backend %s", name)


def compile_experts(pipe, config: VideoModelConfig) -> None:
    """Regional compilation: ``torch.compile`` on each transformer block rather than the whole model.

    All blocks of both experts share one code object, so Dynamo traces it once per input shape and
    the 80 blocks reuse the compiled graph with their own weights.
    """
    mode = None if config.compile_mode == "default" else config.compile_mode
    for expert in _experts(pipe):
        expert.compile_repeated_blocks(fullgraph=True, mode=mode)
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
