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
