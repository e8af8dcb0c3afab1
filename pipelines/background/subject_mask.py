"""The subject matte a background job keeps: segmentation chain, then the composition controls.

The mask preview endpoint and the final composite both call :func:`subject_mask`, so the preview
is exactly the matte that gets blended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.background.mask_controls import apply_composition
from pipelines.background.segmentation.classic import mask_quality
from pipelines.common.errors import MaskUnusableError


@dataclass
class SubjectMask:
    alpha: np.ndarray  # float32 HxW in [0, 1]
    stage: str  # which segmentation stage produced the matte
    attempts: list[dict]
    quality: dict  # coverage, mean, empty, full, usable

    @property
    def status(self) -> str:
        return "empty" if self.quality["empty"] else "full" if self.quality["full"] else "ok"

    def summary(self) -> dict:
        return {
            "stage": self.stage,
            "status": self.status,
            "coverage": round(self.quality["coverage"], 4),
            "attempts": self.attempts,
        }

    def require_usable(self) -> None:
        if self.status == "empty":
            raise MaskUnusableError(
                f"the subject mask came out empty (stage {self.stage}): nothing of the photo would be kept; "
                "use a photo where the subject stands out from its backdrop, or composition=full",
                field="image",
            )
        if self.status == "full":
            raise MaskUnusableError(
                f"the subject mask covers the whole photo (stage {self.stage}): the new background would not show; "
                "try composition=left, right or full, or focus=person",
                field="image",
            )


def subject_mask(segmenter, image, composition: str, focus: str, feather_px: int) -> SubjectMask:
    """``segmenter.segment(image)`` returns an object with ``alpha``, ``stage`` and ``attempts``."""
    segmented = segmenter.segment(image)
    alpha = apply_composition(segmented.alpha, composition, focus, feather_px)
    return SubjectMask(
        alpha=alpha, stage=segmented.stage, attempts=list(segmented.attempts), quality=mask_quality(alpha)
    )
