"""A tiny motion LoRA library for the tiny Wan experts, in the two file layouts real Wan2.2 LoRAs use.

- ``tiny-orbit``: one diffusers/PEFT file (``transformer.<module>.lora_A/B.weight``, written by diffusers'
  ``save_lora_weights`` with PEFT's ``lora_alpha``/``r`` in its header) loaded into both experts;
  self-attention and feed-forward layers, rank 4, alpha 8.
- ``tiny-dolly``: a file per expert in the ComfyUI/Kohya layout (``diffusion_model.blocks.0.self_attn.q.
  lora_down.weight``, ``lora_up``, ``.alpha``, one ``.diff_b``), the one diffusers converts; self- and
  cross-attention, rank 2 for the high-noise expert and 3 for the low-noise one.

Random up-projections (not PEFT's zeros), so each LoRA visibly changes what its expert computes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

TINY_WAN_MOTION_LORAS = "tiny-wan-motion-loras"
MANIFEST = "manifest.yaml"

PEFT_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ffn.net.0.proj", "ffn.net.2")
# original Wan names of the ComfyUI layout and the diffusers module each stands for
COMFY_TARGETS = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
}


def _linear_shapes() -> dict[str, tuple[int, int]]:
    from pipelines.tiny.wan import tiny_wan_expert

    expert = tiny_wan_expert()
    return {
        name: (module.out_features, module.in_features)
        for name, module in expert.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def _blocks(shapes: dict[str, tuple[int, int]]) -> list[int]:
    return sorted({int(name.split(".")[1]) for name in shapes if name.startswith("blocks.")})


def peft_lora_tensors(generator: torch.Generator, rank: int = 4, std: float = 0.2) -> dict[str, torch.Tensor]:
    """diffusers/PEFT keys for the tiny experts (``transformer.`` prefix, as ``save_lora_weights`` writes)."""
    shapes = _linear_shapes()
    tensors = {}
    for block in _blocks(shapes):
        for target in PEFT_TARGETS:
            out_features, in_features = shapes[f"blocks.{block}.{target}"]
            prefix = f"transformer.blocks.{block}.{target}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, in_features, generator=generator) * std
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_features, rank, generator=generator) * std
    return tensors


def comfy_lora_tensors(
    generator: torch.Generator, rank: int, alpha: float, std: float = 0.2, with_bias: bool = True
) -> dict[str, torch.Tensor]:
    """ComfyUI/Kohya keys (``diffusion_model.`` prefix, original Wan names, ``lora_down``/``lora_up``/``alpha``)."""
    shapes = _linear_shapes()
    tensors = {}
    for block in _blocks(shapes):
        for original, target in COMFY_TARGETS.items():
            out_features, in_features = shapes[f"blocks.{block}.{target}"]
            prefix = f"diffusion_model.blocks.{block}.{original}"
            tensors[f"{prefix}.lora_down.weight"] = torch.randn(rank, in_features, generator=generator) * std
            tensors[f"{prefix}.lora_up.weight"] = torch.randn(out_features, rank, generator=generator) * std
            tensors[f"{prefix}.alpha"] = torch.tensor(float(alpha))
        if with_bias:
            tensors[f"diffusion_model.blocks.{block}.self_attn.o.diff_b"] = (
                torch.randn(shapes[f"blocks.{block}.attn1.to_out.0"][0], generator=generator) * std * 0.1
            )
    return tensors


def write_peft_lora(path: Path, tensors: dict[str, torch.Tensor], rank: int, alpha: float) -> Path:
    """Write ``tensors`` the way diffusers' ``save_lora_weights`` does, PEFT's config in the header."""
    from diffusers import WanImageToVideoPipeline
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(PEFT_TARGETS))
    layers = {key.removeprefix("transformer."): value for key, value in tensors.items()}
    WanImageToVideoPipeline.save_lora_weights(
        path.parent,
        transformer_lora_layers=layers,
        weight_name=path.name,
        transformer_lora_adapter_metadata=config.to_dict(),
    )
    return path


def write_comfy_lora(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    return path


def build_tiny_motion_loras(out_dir: Path, seed: int = 0) -> Path:
    """Two LoRAs and their manifest in ``out_dir`` (seeded: two builds are identical)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed + 1300)
    write_peft_lora(out_dir / "tiny-orbit.safetensors", peft_lora_tensors(generator, rank=4), rank=4, alpha=8)
    write_comfy_lora(out_dir / "tiny-dolly_high_noise.safetensors", comfy_lora_tensors(generator, rank=2, alpha=1.0))
    write_comfy_lora(out_dir / "tiny-dolly_low_noise.safetensors", comfy_lora_tensors(generator, rank=3, alpha=6.0))
    manifest = {
        "loras": [
            {
                "id": "tiny-orbit",
                "name": "Tiny orbit (stand-in)",
                "description": "Random weights in the diffusers/PEFT layout, one file for both experts. Renders noise.",
                "license": "apache-2.0",
                "trigger_words": ["orbit"],
                "file": "tiny-orbit.safetensors",
                "default_strength": {"high_noise": 1.0, "low_noise": 0.75},
            },
            {
                "id": "tiny-dolly",
                "name": "Tiny dolly zoom (stand-in)",
                "description": "Random weights in the ComfyUI/Kohya layout, a file per expert. Renders noise.",
                "license": "apache-2.0",
                "trigger_words": ["dolly zoom", "push"],
                "files": {
                    "high_noise": "tiny-dolly_high_noise.safetensors",
                    "low_noise": "tiny-dolly_low_noise.safetensors",
                },
                "default_strength": 1.0,
            },
        ]
    }
    (out_dir / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return out_dir
