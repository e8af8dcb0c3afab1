"""Typed options of the image-to-video pipeline: where the weights are and how to run them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines.common.config import StrictModel, tiny_model_field
from pipelines.common.runtime_options import (  # noqa: F401  (ATTENTION_BACKENDS etc. re-exported for tests)
    ATTENTION_BACKENDS,
    HALF_PRECISION_ATTENTION,
    check_option_combination,
    normalise_attention_backend,
)


class LoraFuseConfig(StrictModel):
    """A LoRA loaded into both experts, fused at a per-expert scale, then unloaded (VividFlow's recipe)."""

    path: str = Field(description="Folder or Hugging Face cache id holding the LoRA file.")
    weight_name: str | None = Field(default=None, description="File name inside `path`.")
    scale_high_noise: float = Field(default=3.0, ge=0.0, description="Fuse scale for `transformer`.")
    scale_low_noise: float = Field(default=1.0, ge=0.0, description="Fuse scale for `transformer_2`.")


class MotionLoraLibraryConfig(StrictModel):
    """The motion LoRA library: a read-only folder with a manifest, applied per job beside the base weights."""

    path: str = Field(description="Folder holding the manifest and the LoRA files (production: on the model volume).")
    manifest: str = Field(default="manifest.yaml", description="The manifest's file name inside `path`.")
    tiny_model: str | None = tiny_model_field("path")
    max_adapters: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Adapters kept loaded per replica (on its device), least recently used evicted first; a job "
        "whose LoRA is held starts without reading a file.",
    )


class VideoModelConfig(StrictModel):
    path: str = Field(description="Diffusers folder of a Wan2.2 I2V pipeline (model_index.json at its root).")
    experts_path: str | None = Field(
        default=None,
        description="Optional folder with `transformer/` and `transformer_2/` that replace the pipeline's experts.",
    )
    tiny_model: str | None = tiny_model_field("path")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="bfloat16", description="Experts and text encoder; the VAE runs in `vae_dtype`."
    )
    vae_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora: LoraFuseConfig | None = None
    loras: MotionLoraLibraryConfig | None = Field(
        default=None,
        description="Per-job motion LoRAs (`lora`, `lora_strength` on video jobs), run unmerged beside the fused, "
        "possibly quantised, experts; null: jobs cannot ask for one.",
    )
    quantize_experts: Literal["none", "fp8_dynamic", "fp8_weight_only", "int8_weight_only"] = "none"
    quantize_text_encoder: Literal["none", "int8_weight_only", "fp8_weight_only"] = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    flow_shift: float | None = Field(default=None, gt=0, description="Override the scheduler's flow shift.")
    max_sequence_length: int = Field(default=512, ge=8, le=512)
    allow_tf32: bool = True
    compile: Literal["none", "regional"] = Field(
        default="none",
        description="'regional': torch.compile each transformer block of both experts (the blocks share one "
        "compiled graph, so compiling takes about as long as one block). The first render of each new video "
        "size pays the compilation; later ones run the compiled kernels.",
    )
    compile_mode: Literal["default", "max-autotune-no-cudagraphs", "reduce-overhead"] = Field(
        default="default",
        description="torch.compile mode for `compile: regional`; 'reduce-overhead' adds CUDA graphs (GPU only).",
    )
    attention_backend: str | None = Field(
        default=None,
        description="diffusers attention backend for both experts (e.g. '_native_cudnn', 'flash', '_flash_3', "
        "'sage'); null keeps the default (PyTorch scaled_dot_product_attention). Checked against the device "
        "and the installed kernels when the model loads.",
    )
    prequantized_path: str | None = Field(
        default=None,
        description="Folder written by `python -m pipelines.video.prepare_checkpoint`: experts with the LoRA already "
        "fused (and quantised where torchao can serialise it). Replaces `experts_path`; `lora` and "
        "`quantize_experts` must match what the folder was prepared with, and the LoRA files are not read.",
    )

    @field_validator("attention_backend")
    @classmethod
    def _known_attention_backend(cls, value: str | None) -> str | None:
        return normalise_attention_backend(value)

    @model_validator(mode="after")
    def _consistent(self) -> VideoModelConfig:
        if self.prequantized_path is not None and self.experts_path is not None:
            raise ValueError("set either prequantized_path or experts_path: the prepared folder holds the experts")
        check_option_combination(self.attention_backend, self.dtype, self.compile, self.compile_mode)
        return self


class VideoLimits(StrictModel):
    """What a video job may ask for (``ingress.videos:`` in the app config); the ingress applies it."""

    max_duration_s: float = Field(
        default=30.0,
        ge=0.5,
        le=60.0,
        description="Longest video accepted, in seconds; above 5 s a video renders as chained segments of at "
        "most 5 s (its cost grows with the number of segments).",
    )
