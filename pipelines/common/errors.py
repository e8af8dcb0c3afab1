"""The project's exceptions.

Every error a caller can cause or act on is one of these; its ``message`` is written for the caller
and never contains a traceback. The HTTP layer maps the classes to status codes in one table.
"""

from __future__ import annotations


class VividFlowError(Exception):
    """Base class: ``kind`` is the stable machine-readable name, ``message`` the human one."""

    kind = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self):  # keep ``field`` when the error crosses a process boundary (Ray pickles it)
        return (_rebuild_error, (type(self), self.message, self.field))


def _rebuild_error(cls, message, field):
    return cls(message, field=field)


class InvalidInputError(VividFlowError):
    """The request is malformed or a value is out of range."""

    kind = "invalid_input"


class InputTooLargeError(InvalidInputError):
    """The upload or the decoded image exceeds a size limit."""

    kind = "input_too_large"


class UnsupportedHardwareError(VividFlowError):
    """A configured optimisation cannot run on this device (for example FP8 without compute capability 8.9)."""

    kind = "unsupported_hardware"


class ModelNotFoundError(VividFlowError):
    """A configured checkpoint location does not exist or is incomplete."""

    kind = "model_not_found"


class MaskUnusableError(VividFlowError):
    """The matte after composition keeps nothing, or everything: compositing it would be meaningless."""

    kind = "mask_unusable"


class JobCancelledError(VividFlowError):
    """Raised inside a pipeline when the caller asked it to stop; not an error for the job's owner."""

    kind = "cancelled"
