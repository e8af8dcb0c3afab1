"""The tiny Wan2.2-I2V pipeline and its 4-step LoRA stand-in: real diffusers classes, a millionth of the size."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_WAN_I2V = "tiny-wan2.2-i2v"
TINY_WAN_LORA = "tiny-wan-4step-lora"

# Words the tiny tokenizer knows as whole pieces; everything else falls back to characters.
_WORDS = """
a the and of with in on to slowly gently camera pan zoom tilt orbit push pull wind hair light
smile turn head eyes look water waves clouds sky trees leaves flowers walk run dance spin rotate
product dog cat bird city night sun sunset rain snow smoke fire glow motion cinematic soft
dramatic blur static low quality worst jpeg artifacts
""".split()


def _tiny_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{word}", -2.0 - i * 0.01) for i, word in enumerate(_WORDS)]
    pieces += [(ch, -8.0) for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    pieces += [("\u2581", -6.0)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def tiny_wan_expert(text_dim: int = 32):
    """Same shape of model as a Wan2.2-I2V-A14B expert (36 input channels: noise + mask + image latents,
    RMS norm across heads, cross-attention norm, no image-encoder input), a million times smaller."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=36,
        out_channels=16,
        text_dim=text_dim,
        freq_dim=32,
        ffn_dim=64,
        # One block: attention over a 5-second video's 32,760 tokens dominates a tiny render, and every
        # property the tests check (expert switching, LoRA fusion, quantisation, shapes) holds with one.
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=None,
        rope_max_seq_len=1024,
    ).eval()


def build_wan_lora(out_dir: Path, seed: int = 0) -> Path:
    """A LoRA for the tiny experts in diffusers' format, standing in for the 4-step distillation LoRA.

    Its up-projections are random rather than zero so that fusing it visibly changes the weights.
    """
    from diffusers import WanImageToVideoPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed + 1)
    expert = tiny_wan_expert()
    expert.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    WanImageToVideoPipeline.save_lora_weights(out_dir, transformer_lora_layers=get_peft_model_state_dict(expert))
    return out_dir


def build_wan_i2v(out_dir: Path, seed: int = 0) -> Path:
    """Build a two-expert Wan2.2-I2V-style pipeline (``boundary_ratio`` 0.9) into ``out_dir``."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer()
    text_dim = 32
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=text_dim,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).eval()
    # The same 8x spatial and 4x temporal compression and 16 latent channels as Wan2.2's VAE; no residual
    # blocks, so the CPU spends its time where the real VAE would (the causal convolutions at full
    # resolution, see pipelines/video/cpu_vae.py) rather than in blocks that only add weights: 1 s decodes
    # in 1.9 s instead of 3.5 s on two cores.
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,
        temperal_downsample=[False, True, True],
    ).eval()

    transformer, transformer_2 = tiny_wan_expert(text_dim), tiny_wan_expert(text_dim)
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=5.0
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=0.9,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
