"""Typed options of the image-to-video pipeline: where the weights are and how to run them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines.common.config import StrictModel, tiny_model_field

# diffusers 0.42's attention dispatcher backends (``AttentionBackendName``) that a replica may select.
# Left out: the ``*_hub`` backends, which download kernels from the Hugging Face Hub at run time (replicas
# run offline), and the NPU and XLA ones (no such hardware here). tests check this list against diffusers.
ATTENTION_BACKENDS = (
    "native",
    "_native_math",
    "_native_efficient",
    "_native_flash",
    "_native_cudnn",
    "flex",
    "flash",
    "flash_varlen",
    "_flash_3",
    "_flash_varlen_3",
    "sage",
    "sage_varlen",
    "_sage_qk_int8_pv_fp8_cuda",
    "_sage_qk_int8_pv_fp8_cuda_sm90",
    "_sage_qk_int8_pv_fp16_cuda",
    "_sage_qk_int8_pv_fp16_triton",
    "xformers",
)
# Backends whose kernels take only bfloat16/float16 queries, keys and values.
HALF_PRECISION_ATTENTION = frozenset(
    {
        "_native_flash",
        "_native_cudnn",
        "flash",
        "flash_varlen",
        "_flash_3",
        "_flash_varlen_3",
        "sage",
        "sage_varlen",
        "_sage_qk_int8_pv_fp8_cuda",
        "_sage_qk_int8_pv_fp8_cuda_sm90",
        "_sage_qk_int8_pv_fp16_cuda",
        "_sage_qk_int8_pv_fp16_triton",
    }
)


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
    tiny_model: str | None = tiny_model_field("path")
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
        if value is None:
            return None
        name = value.strip().lower()
        if name.endswith("_hub"):
            raise ValueError(
                f"attention_backend {value!r} downloads its kernel from the Hugging Face Hub at run time, which "
                "replicas cannot do; install the kernel package in the image and use its local backend instead"
            )
        if name not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention_backend {value!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> VideoModelConfig:
        if self.prequantized_path is not None and self.experts_path is not None:
            raise ValueError("set either prequantized_path or experts_path: the prepared folder holds the experts")
        if self.attention_backend in HALF_PRECISION_ATTENTION and self.dtype == "float32":
            raise ValueError(
                f"attention_backend {self.attention_backend!r} needs dtype bfloat16 or float16, not float32"
            )
        if self.compile == "none" and self.compile_mode != "default":
            raise ValueError("compile_mode only applies with compile: regional")
        return self
