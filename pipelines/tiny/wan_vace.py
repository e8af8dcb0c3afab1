"""The tiny Wan VACE pipeline: two VACE experts (Wan2.2 VACE-Fun's shape), text encoder, VAE, in diffusers format."""

from __future__ import annotations

from pathlib import Path

import torch

from pipelines.tiny.wan import _tiny_tokenizer

TINY_WAN_VACE = "tiny-wan-vace"
TEXT_DIM = 32


def tiny_vace_expert(text_dim: int = TEXT_DIM):
    """A WanVACETransformer3DModel as in Wan2.2 VACE-Fun A14B (16 latent input channels; 96 control channels:
    16 inactive + 16 reactive latents + 64 for the 8x8 pixel mask), with one block and one VACE block."""
    from diffusers import WanVACETransformer3DModel

    return WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=16,
        out_channels=16,
        text_dim=text_dim,
        freq_dim=32,
        ffn_dim=64,
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=None,
        rope_max_seq_len=1024,
        vace_layers=[0],
        vace_in_channels=96,
    ).eval()


def build_wan_vace(out_dir: Path, seed: int = 0) -> Path:
    """Two tiny VACE experts switched at ``boundary_ratio`` 0.875 (the VACE-Fun conversion's value)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).eval()
    # The same compression as Wan's VAE (8x spatial, 4x temporal, 16 channels) without residual blocks,
    # as in the tiny image-to-video pipeline (pipelines/tiny/wan.py says why).
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=0, temperal_downsample=[False, True, True]
    ).eval()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=5.0
    )
    pipe = WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=tiny_vace_expert(),
        transformer_2=tiny_vace_expert(),
        boundary_ratio=0.875,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
