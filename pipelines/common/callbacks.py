"""The two hooks every long-running pipeline call takes: progress out, cancellation in."""

from __future__ import annotations

from collections.abc import Callable

# Called after each unit of work (a denoising step) with (done, total).
ProgressCallback = Callable[[int, int], None]
# Polled between units of work; True stops the call with JobCancelledError.
CancelCheck = Callable[[], bool]
