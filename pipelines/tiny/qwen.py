"""A tiny random-weight Qwen2.5-Instruct look-alike, built offline for the prompt expander.

Same classes and folder layout as ``Qwen/Qwen2.5-0.5B-Instruct`` (``Qwen2ForCausalLM`` in safetensors,
``generation_config.json``, a byte-level BPE ``Qwen2Tokenizer`` with the ChatML special tokens and a
chat template), so the expander loads it through the exact ``from_pretrained`` path used in production.
The tokenizer is trained here on a small built-in corpus; the weights are seeded. Random weights produce
gibberish: the tiny model exercises loading, templating, seeded sampling and the output check.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_QWEN = "tiny-qwen2.5-instruct"
# Same marker and version scheme as ``pipelines.tiny.build`` so either helper accepts the other's build.
BUILD_MARKER = "vividflow-tiny.json"
BUILDER_VERSION = 1

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

# ChatML: every turn is `<|im_start|>role\ncontent<|im_end|>\n`; a conversation without a system turn
# gets a neutral one, and the generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a concise assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# The pre-tokenizer split Qwen2 uses (contractions, letter runs, single digits, punctuation, spaces);
# the ByteLevel step after it then maps every byte to a printable symbol, so no text is ever unknown.
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Written for this project: the kind of text the expander reads and writes, so the merges are useful.
_CORPUS = """
The camera slowly pushes in while a soft breeze lifts strands of her hair.
A gentle orbit around the subject as warm evening light glows on the skin.
The dog runs across the wet sand, waves rolling in behind it at sunset.
Clouds drift over the mountain ridge and long shadows crawl across the valley.
A slow pan follows the cyclist through a quiet street washed in neon light.
Leaves tremble in the wind and sunlight flickers through the branches of old trees.
The product turns on a white pedestal while a thin line of light sweeps across it.
Snow falls softly around the cabin; smoke curls from the chimney into a grey sky.
She looks up, blinks and smiles as the camera tilts down to meet her eyes.
He turns his head toward the window and the curtains sway in a warm draft.
A cat stretches on the sofa, its tail flicking, dust floating in the golden air.
The city skyline glitters at night while traffic streams below in ribbons of light.
Rain runs down the glass and the reflections of street lamps ripple and blur.
A bird spreads its wings and lifts off the branch; the camera follows its climb.
Water cascades over the rocks and mist rises through a shaft of morning sun.
A dramatic low angle as the dancer spins, her dress flaring in slow motion.
Fire crackles in the hearth, sparks rising while the room breathes with soft shadows.
The flowers sway in the meadow as a butterfly drifts from one bloom to the next.
A smooth dolly shot along the shore, the tide pulling back with a silver shimmer.
Cinematic, calm atmosphere, natural motion, subtle parallax and shallow depth of field.
Describe camera movement, subject action and atmosphere in one vivid sentence.
Keep the intent of the request and write fewer than fifty words, with no preamble.
You are a helpful assistant that writes short motion descriptions for video generation.
The portrait subject breathes gently, eyelids lowering, a faint smile forming at the corners.
Golden hour light spills over the field while tall grass ripples in waves of wind.
Hands raise a cup of coffee as steam coils upward in the cool morning air.
The lantern swings slightly and its glow paints moving patterns on the stone wall.
A fox pauses, ears twitching, then trots into the misty forest beyond the trail.
Fog rolls between the buildings and the camera rises above the wet rooftops.
Fabric ripples under a studio fan while the model holds a calm, steady gaze.
""".strip().splitlines()


def build_tokenizer():
    """Train a byte-level BPE tokenizer on the built-in corpus and wrap it as a ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    raw = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        special_tokens=[ENDOFTEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, so any input encodes
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS, trainer=trainer)
    model = json.loads(raw.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(pair) for pair in model["merges"]],
        # The Instruct checkpoint ends an answer with <|im_end|> and pads with <|endoftext|>.
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        extra_special_tokens=[IM_START, IM_END],
        model_max_length=32768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen(out_dir: Path, seed: int = 0) -> Path:
    """Build the tiny model and tokenizer into ``out_dir`` (config.json, generation_config.json,
    model.safetensors, tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    endoftext, im_end = tokenizer.convert_tokens_to_ids([ENDOFTEXT, IM_END])
    # Qwen2.5-0.5B's shape (tied embeddings, grouped-query attention, RMS norm 1e-6, rope theta 1e6),
    # with hidden 32 instead of 896 and 2 layers instead of 24.
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        bos_token_id=endoftext,
        eos_token_id=im_end,
        pad_token_id=endoftext,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext,
        pad_token_id=endoftext,
        eos_token_id=[im_end, endoftext],
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
        repetition_penalty=1.05,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
