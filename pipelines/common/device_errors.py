"""Telling a failed GPU from a failed request, without importing torch (the serving layer uses this).

After an illegal memory access, a device-side assert or a CUDA out-of-memory error the CUDA context of the
process is often unusable, and every later job on that replica would fail the same way: the replica must
be replaced and the job retried elsewhere, not failed for the caller.
"""

from __future__ import annotations

# torch raises these (torch.OutOfMemoryError, torch.AcceleratorError); matched by name so this module needs
# no torch import, and so a subclass from another accelerator backend counts too.
DEVICE_ERROR_CLASSES = frozenset({"OutOfMemoryError", "AcceleratorError"})
# Runtime errors whose text says the device itself failed (cuBLAS/cuDNN/NCCL status codes, CUDA errors).
DEVICE_ERROR_MARKERS = (
    "cuda error",
    "cuda out of memory",
    "illegal memory access",
    "device-side assert",
    "cublas_status",
    "cudnn_status",
    "cudnn error",
    "nccl error",
    "unspecified launch failure",
)


def is_device_failure(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the accelerator failed, not the request."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if any(cls.__name__ in DEVICE_ERROR_CLASSES for cls in type(error).__mro__):
            return True
        if isinstance(error, RuntimeError) and any(marker in str(error).lower() for marker in DEVICE_ERROR_MARKERS):
            return True
        error = error.__cause__ or error.__context__
    return False
