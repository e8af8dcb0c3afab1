"""Estimate the GPU memory of the Wan2.2-I2V-A14B experts in bf16, FP8 and INT8, and the loader's peak.

An estimate, not a measurement: it builds one expert from the published architecture on the meta device
(no weights, no GPU), counts its parameters, and prices them the way torchao stores them:

- bf16: 2 bytes a parameter.
- ``fp8_dynamic`` (Float8DynamicActivationFloat8WeightConfig, per tensor): each linear weight 1 byte a value
  plus one fp32 scale; everything else (norms, biases, embeddings, modulation tables) stays bf16.
- ``int8_weight_only`` (Int8WeightOnlyConfig): each linear weight 1 byte a value plus one bf16 scale per
  output row; everything else bf16.

Peaks while the production config loads (two experts, the UMT5-XXL text encoder quantised to INT8, the
fp32 VAE): the old order moved the whole bf16 pipeline to the GPU and quantised there (everything in bf16,
plus one quantised layer in flight); the layer-by-layer order holds what is already quantised plus one
bf16 linear layer in flight. Activations and the CUDA context come on top.

    python -m benchmarks.expert_memory_estimate
"""

from __future__ import annotations

import json

import torch

# Wan2.2-I2V-A14B, each expert (transformer/config.json of the Diffusers checkpoint)
WAN22_I2V_EXPERT = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=40,
    attention_head_dim=128,
    in_channels=36,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=13824,
    num_layers=40,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
)
GB = 1e9


def expert_parameters() -> dict:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights(include_buffers=False):
        expert = WanTransformer3DModel(**WAN22_I2V_EXPERT)
    linears = [m for m in expert.modules() if isinstance(m, torch.nn.Linear)]
    linear_weights = sum(m.weight.numel() for m in linears)
    total = sum(p.numel() for p in expert.parameters())
    return {
        "parameters": total,
        "linear_weight_values": linear_weights,
        "linear_layers": len(linears),
        "linear_output_rows": sum(m.out_features for m in linears),
        "largest_linear_values": max(m.weight.numel() for m in linears),
    }


def text_encoder_parameters() -> dict:
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    # UMT5-XXL encoder as Wan ships it (text_encoder/config.json)
    config = UMT5Config(
        d_model=4096, num_layers=24, num_heads=64, d_kv=64, d_ff=10240, vocab_size=256384,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False,
    )  # fmt: skip
    with init_empty_weights(include_buffers=False):
        encoder = UMT5EncoderModel(config)
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    total = sum(p.numel() for p in encoder.parameters())
    if encoder.shared.weight is not encoder.encoder.embed_tokens.weight:
        total -= encoder.shared.weight.numel()  # one tensor in the checkpoint; untied on the meta device only
    return {
        "parameters": total,
        "linear_weight_values": sum(m.weight.numel() for m in linears),
        "linear_layers": len(linears),
        "linear_output_rows": sum(m.out_features for m in linears),
        "largest_linear_values": max(m.weight.numel() for m in linears),
    }


def vae_parameters() -> int:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    with init_empty_weights(include_buffers=False):
        return sum(p.numel() for p in AutoencoderKLWan().parameters())  # the defaults are the Wan2.1 VAE


def priced(counts: dict) -> dict[str, int]:
    """Bytes of one model in bf16 and under each torchao quantisation of its linear weights."""
    other = counts["parameters"] - counts["linear_weight_values"]
    return {
        "bf16": 2 * counts["parameters"],
        "fp8_dynamic": counts["linear_weight_values"] + 4 * counts["linear_layers"] + 2 * other,
        "int8_weight_only": counts["linear_weight_values"] + 2 * counts["linear_output_rows"] + 2 * other,
    }


def estimate() -> dict:
    expert, text = expert_parameters(), text_encoder_parameters()
    per_expert, per_text = priced(expert), priced(text)
    vae = 4 * vae_parameters()  # vae_dtype: float32
    everything_bf16 = 2 * per_expert["bf16"] + per_text["bf16"] + vae
    in_flight = 2 * max(expert["largest_linear_values"], text["largest_linear_values"])
    old, new = {"bf16": everything_bf16}, {"bf16": everything_bf16}
    for name in ("fp8_dynamic", "int8_weight_only"):
        resident = 2 * per_expert[name] + per_text["int8_weight_only"] + vae
        old[name] = everything_bf16 + per_expert[name] // WAN22_I2V_EXPERT["num_layers"]
        new[name] = resident + in_flight
    return {
        "expert": expert,
        "text_encoder": text,
        "bytes_per_expert": per_expert,
        "bytes_text_encoder": per_text,
        "bytes_vae_fp32": vae,
        "peak_old_order": old,
        "peak_layer_by_layer": new,
    }


def main() -> None:
    result = estimate()
    print(json.dumps(result, indent=2))
    for name, size in result["bytes_per_expert"].items():
        old, new = result["peak_old_order"][name] / GB, result["peak_layer_by_layer"][name] / GB
        print(f"experts {name:>16}: {size / GB:6.2f} GB an expert; load peak {old:6.2f} GB before, {new:6.2f} GB now")


if __name__ == "__main__":
    main()
