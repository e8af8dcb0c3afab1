"""A tiny random-weight Stable Diffusion XL pipeline, built offline for the background generator.

Same classes and folder layout as ``stabilityai/stable-diffusion-xl-base-1.0``: a UNet with SDXL's
"text_time" added conditioning (pooled text embedding + six size/crop ids), two CLIP text encoders whose
hidden states are concatenated for cross-attention (the second one with a projection for the pooled
embedding), two byte-level BPE CLIP tokenizers, an 8x-downsampling ``AutoencoderKL`` with 4 latent
channels, and the DPM-Solver multistep scheduler the service uses. The tokenizers are written from a small
word list here (no hub), the weights are seeded, so two builds are identical. Random weights draw noise:
the tiny model exercises loading, sizes, seeding, progress and cancellation, not picture quality.

Sizes are chosen so a 512x512, 4-step render with guidance takes about a second on two CPU cores;
the VAE decoder runs at full resolution, so its channels are the smallest GroupNorm allows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

TINY_SDXL = "tiny-sdxl"

# Words the tiny tokenizers know whole (scene and negative-prompt vocabulary); anything else is spelled
# out from the byte alphabet, so no text is ever unknown.
_WORD_LINES = (
    "a an the and of with in on at by soft warm cool golden light lighting sunset sunrise night evening",
    "morning modern office executive studio white coworking conference room beach ocean sea waves sand",
    "forest trees enchanted mountain peaks valley spring garden flowers lake calm cherry blossom city",
    "skyline cafe cozy street european neon rooftop gradient abstract vintage retro watercolor autumn",
    "foliage winter snow summer tropical meadow background blurred bokeh depth field professional",
    "photography detailed high quality people person human face body crowd text letters watermark logo",
    "signature low worst lowres jpeg artifacts deformed distorted duplicate frame border",
)
_WORDS = [word for line in _WORD_LINES for word in line.split()]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_alphabet() -> list[str]:
    """One printable character per byte value, the mapping byte-level BPE tokenizers use.

    Printable Latin-1 bytes stand for themselves; the rest (control characters, space, ...) are moved to
    code points from 256 upwards so every byte has a visible, whitespace-free symbol.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + shifted)
            shifted += 1
    return [symbols[byte] for byte in range(256)]


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-style vocabulary: the byte alphabet, each symbol again as a word ending ("</w>"), the pieces
    merged while learning the known words, then the two special tokens (the real CLIP vocab's order)."""
    alphabet = _byte_alphabet()
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet]
    # A small BPE training run: merge the most frequent adjacent pair until every word is one piece.
    # Learning the merges this way (rather than listing each word's prefixes) keeps their priorities
    # consistent, so the tokenizer reproduces every known word whole.
    words = [[*word[:-1], word[-1] + "</w>"] for word in dict.fromkeys(_WORDS)]
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for pieces in words for pair in zip(pieces, pieces[1:], strict=False))
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))  # ties broken by name: deterministic
        merges.append(best)
        if best[0] + best[1] not in tokens:  # two pairs can spell the same piece ("s"+"un", "su"+"n")
            tokens.append(best[0] + best[1])
        words = [_merge_pair(pieces, best) for pieces in words]
    tokens += [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}, merges


def _merge_pair(pieces: list[str], pair: tuple[str, str]) -> list[str]:
    merged: list[str] = []
    index = 0
    while index < len(pieces):
        if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == pair:
            merged.append(pieces[index] + pieces[index + 1])
            index += 2
        else:
            merged.append(pieces[index])
            index += 1
    return merged


def build_tokenizer(pad_token: str = EOS, max_length: int = 77):
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=max_length,
    )


def _text_config(tokenizer, *, hidden_size: int, act: str, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection_dim} if projection_dim is not None else {}
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=3,  # SDXL reads the penultimate layer, so keep more than one
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act=act,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_tiny_sdxl(out_dir: Path, seed: int = 0) -> Path:
    """Build the tiny SDXL pipeline into ``out_dir`` (diffusers ``save_pretrained`` layout)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    # Like the real checkpoint: the second tokenizer pads with "!" rather than the end token.
    tokenizer, tokenizer_2 = build_tokenizer(), build_tokenizer(pad_token="!")
    hidden_1, hidden_2, pooled_dim = 16, 32, 32
    text_encoder = CLIPTextModel(_text_config(tokenizer, hidden_size=hidden_1, act="quick_gelu")).eval()
    text_encoder_2 = CLIPTextModelWithProjection(
        _text_config(tokenizer_2, hidden_size=hidden_2, act="gelu", projection_dim=pooled_dim)
    ).eval()

    time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=128,  # latent size of SDXL's native 1024x1024
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        transformer_layers_per_block=(1, 1, 1),
        attention_head_dim=(2, 2, 4),  # diffusers' legacy name: the number of heads
        norm_num_groups=8,
        cross_attention_dim=hidden_1 + hidden_2,  # both encoders' hidden states, concatenated
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # six micro-conditioning ids (original size, crop corner, target size) plus the pooled text embedding
        projection_class_embeddings_input_dim=6 * time_embed_dim + pooled_dim,
    ).eval()

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,  # four blocks = three 2x downsamples = SDXL's 8x
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=1024,
        scaling_factor=0.13025,
        force_upcast=True,
    ).eval()

    # SDXL's training noise schedule with the service's sampler.
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
        algorithm_type="dpmsolver++",
        solver_order=2,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
