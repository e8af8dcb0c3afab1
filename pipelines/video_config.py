"""Typed options of the image-to-video pipeline: where the weights are and how to run them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Config objects reject unknown keys so a typo in YAML fails at start, not silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraFuseConfig(StrictModel):
    """A LoRA loaded into both experts, fused at a per-expert scale, then unloaded (VividFlow's recipe)."""

    path: str = Field(description="Folder or Hugging Face cache id holding the LoRA file.")
    weight_name: str | None = Field(default=None, description="File name inside `path`.")
    scale_high_noise: float = Field(default=3.0, ge=0.0, description="Fuse scale for `transformer`.")
    scale_low_noise: float = Field(default=1.0, ge=0.0, description="Fuse scale for `transformer_2`.")


class VideoModelConfig(StrictModel):
    path: str = Field(description="Diffusers folder of a Wan2.2 I2V pipeline (model_index.json at its root).")
    experts_path: str | None = Field(
        default=None,
        description="Optional folder with `transformer/` and `transformer_2/` that replace the pipeline's experts.",
    )
    tiny_model: str | None = Field(
        default=None, description="Build this tiny offline model into `path`'s parent if it is missing."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="bfloat16", description="Experts and text encoder; the VAE runs in `vae_dtype`."
    )
    vae_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora: LoraFuseConfig | None = None
    quantize_experts: Literal["none", "fp8_dynamic", "fp8_weight_only", "int8_weight_only"] = "none"
    quantize_text_encoder: Literal["none", "int8_weight_only", "fp8_weight_only"] = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    flow_shift: float | None = Field(default=None, gt=0, description="Override the scheduler's flow shift.")
    max_sequence_length: int = Field(default=512, ge=8, le=512)
    allow_tf32: bool = True
