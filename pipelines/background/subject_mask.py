"""The subject matte a background job keeps: segmentation chain, then the composition controls.

The mask preview endpoint and the final composite both call :func:`subject_mask`, so the preview
is exactly the matte that gets blended. A photo larger than the segmenter's ``working_megapixels`` is
segmented and composed on a smaller copy and the matte upsampled with edge refinement (see
``working_size``); feathering runs at full size, so ``feather_px`` keeps meaning the photo's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.background.mask_controls import apply_composition, feather, validate_composition
from pipelines.background.segmentation.classic import mask_quality
from pipelines.background.working_size import shrink, upscale_matte, working_scale
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


def subject_mask(
    segmenter, image, composition: str, focus: str, feather_px: int, *, working_megapixels: float | None = None
) -> SubjectMask:
    """``segmenter.segment(image)`` returns an object with ``alpha``, ``stage`` and ``attempts``.

    ``working_megapixels`` defaults to the segmenter's ``config.working_megapixels`` (None: full size).
    """
    from PIL import Image

    if working_megapixels is None:
        working_megapixels = getattr(getattr(segmenter, "config", None), "working_megapixels", None)
    composition, focus, feather_px = validate_composition(composition, focus, feather_px)
    scale = working_scale(*image.size, working_megapixels)
    if scale >= 1.0:
        segmented = segmenter.segment(image)
        alpha = apply_composition(segmented.alpha, composition, focus, feather_px)
    else:
        rgb = np.asarray(image.convert("RGB"))
        segmented = segmenter.segment(Image.fromarray(shrink(rgb, scale)))
        alpha = upscale_matte(apply_composition(segmented.alpha, composition, focus, 0), rgb)
        alpha = np.clip(feather(alpha, feather_px), 0.0, 1.0).astype(np.float32)
    return SubjectMask(
        alpha=alpha, stage=segmented.stage, attempts=list(segmented.attempts), quality=mask_quality(alpha)
    )
