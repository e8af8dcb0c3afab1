"""Device and dtype resolution shared by the pipelines."""

from __future__ import annotations

import torch

from pipelines.common.errors import UnsupportedHardwareError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UnsupportedHardwareError("the config asks for device 'cuda' but no CUDA GPU is visible")
    return torch.device(name)


def require_fp8_compute(device: torch.device, what: str) -> None:
    """FP8 matmuls need Ada/Hopper or newer (compute capability 8.9)."""
    if device.type != "cuda":
        raise UnsupportedHardwareError(
            f"{what} needs a CUDA GPU with compute capability >= 8.9; this replica runs on {device.type}. "
            "Set it to 'none' or 'int8_weight_only' for CPU or older GPUs."
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        raise UnsupportedHardwareError(
            f"{what} needs compute capability >= 8.9; this GPU has {capability[0]}.{capability[1]}. "
            "Use 'int8_weight_only' or 'none' instead."
        )


def cap_process_gpu_memory(fraction: float | None) -> float | None:
    """Cap this process's CUDA memory on every visible GPU to ``fraction`` of that GPU; the fraction applied.

    Ray's fractional ``num_gpus`` only decides where a replica may run: replicas sharing a GPU would otherwise
    take memory until one of them runs out. PyTorch's caching allocator refuses (``OutOfMemoryError``) an
    allocation that would take this process past the cap, so a replica that overreaches fails its own job
    instead of its neighbours'. Only memory PyTorch allocates is capped: the CUDA context itself and
    libraries with their own allocators (onnxruntime) are not.

    A no-op (``None``) without a fraction or without a visible CUDA GPU, so CPU profiles run unchanged.
    """
    if fraction is None or not torch.cuda.is_available():
        return None
    if not 0 < fraction <= 1:
        raise ValueError(f"a GPU memory fraction is in (0, 1], not {fraction}")
    for index in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(fraction, index)
    return fraction
