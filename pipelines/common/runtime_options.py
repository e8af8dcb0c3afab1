"""Speed options shared by the diffusion pipelines: diffusers' attention backend and regional ``torch.compile``.

The names and the config-time rules need no torch (configs are read by the HTTP layer); the checks
against the device and the functions that apply an option import torch and diffusers when called.
Every option a device cannot run is refused with :class:`UnsupportedHardwareError` before any weights
are read, saying what to change.
"""

from __future__ import annotations

import logging
import shutil

from pipelines.common.errors import UnsupportedHardwareError

log = logging.getLogger(__name__)

# diffusers 0.42's attention dispatcher backends (``AttentionBackendName``) that a replica may select.
# Left out: the ``*_hub`` backends, which download kernels from the Hugging Face Hub at run time (replicas
# run offline), and the NPU and XLA ones (no such hardware here). tests check this list against diffusers.
ATTENTION_BACKENDS = (
    "native",
    "_native_math",
    "_native_efficient",
    "_native_flash",
    "_native_cudnn",
    "flex",
    "flash",
    "flash_varlen",
    "_flash_3",
    "_flash_varlen_3",
    "sage",
    "sage_varlen",
    "_sage_qk_int8_pv_fp8_cuda",
    "_sage_qk_int8_pv_fp8_cuda_sm90",
    "_sage_qk_int8_pv_fp16_cuda",
    "_sage_qk_int8_pv_fp16_triton",
    "xformers",
)
# Backends whose kernels take only bfloat16/float16 queries, keys and values.
HALF_PRECISION_ATTENTION = frozenset(
    {
        "_native_flash",
        "_native_cudnn",
        "flash",
        "flash_varlen",
        "_flash_3",
        "_flash_varlen_3",
        "sage",
        "sage_varlen",
        "_sage_qk_int8_pv_fp8_cuda",
        "_sage_qk_int8_pv_fp8_cuda_sm90",
        "_sage_qk_int8_pv_fp16_cuda",
        "_sage_qk_int8_pv_fp16_triton",
    }
)
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


# ---------------------------------------------------------------- config-time rules (no torch)
def normalise_attention_backend(value: str | None) -> str | None:
    """The backend name in diffusers' spelling, or ValueError (a pydantic field validator calls this)."""
    if value is None:
        return None
    name = value.strip().lower()
    if name.endswith("_hub"):
        raise ValueError(
            f"attention_backend {value!r} downloads its kernel from the Hugging Face Hub at run time, which "
            "replicas cannot do; install the kernel package in the image and use its local backend instead"
        )
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention_backend {value!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
    return name


def check_option_combination(attention_backend: str | None, dtype: str, compile: str, compile_mode: str) -> None:
    """ValueError for combinations no device can run (a pydantic model validator calls this)."""
    if attention_backend in HALF_PRECISION_ATTENTION and dtype == "float32":
        raise ValueError(f"attention_backend {attention_backend!r} needs dtype bfloat16 or float16, not float32")
    if compile == "none" and compile_mode != "default":
        raise ValueError("compile_mode only applies with compile: regional")


# ---------------------------------------------------------------- device checks (before loading)
def check_attention_backend(name: str, device) -> None:
    import torch

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


def check_compile(compile: str, compile_mode: str, device) -> None:
    what = f"compile: {compile}"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise UnsupportedHardwareError(f"{what} needs Triton for this GPU; install it or set compile: none")
        return
    if compile_mode == "reduce-overhead":
        raise UnsupportedHardwareError(
            f"compile_mode: reduce-overhead records CUDA graphs and needs a CUDA GPU; this replica runs on "
            f"{device.type}. Use compile_mode: default."
        )
    if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        raise UnsupportedHardwareError(f"{what} on {device.type} needs a C++ compiler (g++) for TorchInductor")


# ---------------------------------------------------------------- applying them (after loading)
def set_models_attention_backend(models, name: str) -> None:
    """Route the attention of every model in ``models`` through diffusers' backend ``name``.

    diffusers also makes the last backend set the default of the whole process; that default is put back,
    so other models in the same process keep theirs (each model's processors hold their own choice).
    """
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    previous = _AttentionBackendRegistry._active_backend
    try:
        for model in models:
            model.set_attention_backend(name)
    except RuntimeError as exc:
        raise UnsupportedHardwareError(f"attention_backend {name!r} cannot run in this image: {exc}") from None
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)
    log.info("attention backend %s", name)


def compile_repeated_blocks(models, compile_mode: str) -> None:
    """Regional compilation: ``torch.compile`` on each of a model's repeated blocks (its ``_repeated_blocks``)
    rather than the whole model: blocks of one class share a code object, so Dynamo traces it once per input
    shape and every block reuses the compiled graph with its own weights."""
    mode = None if compile_mode == "default" else compile_mode
    for model in models:
        model.compile_repeated_blocks(fullgraph=True, mode=mode)
