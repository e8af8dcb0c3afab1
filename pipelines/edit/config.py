"""Typed options of the video-editing task: the VACE checkpoint, how masks are made, and the input limits."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipelines.common.config import StrictModel
from pipelines.video.config import VideoModelConfig

# A full-size input frame is held once, briefly, while it is cropped and resized; 4K is plenty for 832 px.
DEFAULT_MAX_INPUT_MEGAPIXELS = 8.3


class EditLimits(StrictModel):
    """What an uploaded video may be (``edits:`` in the app config); the ingress and the worker both apply it."""

    max_input_s: float = Field(default=10.0, gt=0, le=30, description="Longest source video accepted, in seconds.")
    max_input_mb: float = Field(default=100.0, gt=0, le=1000, description="Largest source file accepted, in MB.")
    max_input_megapixels: float = Field(
        default=DEFAULT_MAX_INPUT_MEGAPIXELS, gt=0, le=40, description="Largest source frame (width x height)."
    )


class EditModelConfig(VideoModelConfig):
    """A Wan VACE pipeline (``WanVACEPipeline``), loaded and optimised like the image-to-video one.

    The LoRA fuse recipe, quantisation, attention backend and compile options are the image-to-video
    pipeline's own (``pipelines.video.loading.configure_pipeline`` runs them), so one set of knobs applies.
    """

    path: str = Field(
        description="Diffusers folder of a WanVACEPipeline (model_index.json at its root): Wan2.2 VACE-Fun A14B "
        "(two experts, boundary_ratio) or Wan2.1-VACE-14B (one expert)."
    )
    revision: str | None = Field(
        default=None,
        # The Hub resolves only full commit ids: a 7-character short id would fail the download.
        pattern=r"^[0-9a-f]{40}$",
        description="Hub commit (all 40 hex characters) the folder is downloaded at: the populate Job passes it "
        "to `hf download --revision`.",
    )
    mask_dilate_px: int = Field(
        default=16, ge=0, le=128, description="mode=replace: the subject mask grows by this margin (output pixels)."
    )
    mask_smooth_frames: int = Field(
        default=5, ge=1, le=31, description="mode=replace: frames averaged (centred window) so masks do not flicker."
    )
    mask_feather_px: int = Field(
        default=6, ge=0, le=64, description="mode=replace: soft edge inside the dilated mask where old and new blend."
    )
    mask_every_n_frames: int = Field(
        default=1, ge=1, le=8, description="mode=replace: segment every n-th frame; frames between are interpolated."
    )

    @model_validator(mode="after")
    def _no_prepared_experts(self) -> EditModelConfig:
        if self.prequantized_path is not None:
            raise ValueError("prequantized_path holds image-to-video experts; the edit pipeline loads VACE experts")
        if getattr(self, "loras", None) is not None:
            raise ValueError("loras (the motion LoRA library) applies to image-to-video, not to edits")
        return self
