"""A tiny random-weight OpenCLIP model, built offline for the image analyzer.

Same model class (``open_clip.CLIP``: a ViT image tower and a transformer text tower), the same
tokenizer (open_clip's BPE vocabulary ships inside the package) and the same on-disk layout as an
open_clip checkpoint folder on the Hugging Face hub, so the analyzer reads it through the loader used
in production. ``out_dir`` receives:

- ``open_clip_config.json``: ``{"model_cfg": ..., "preprocess_cfg": ...}``, what open_clip's
  ``local-dir:`` schema reads;
- ``tiny-open-clip.json``: the bare model config, the format ``open_clip.add_model_config`` registers
  (under the file's stem), for loading the weights file with ``pretrained=<file>``;
- ``open_clip_model.safetensors``: the seeded random weights.

Random weights make the class scores meaningless; the tiny model exercises loading, preprocessing,
tokenisation, the cached text embeddings and the softmax, in a fraction of a second.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

TINY_CLIP = "tiny-open-clip"
CONFIG_FILE = "open_clip_config.json"
BARE_CONFIG_FILE = f"{TINY_CLIP}.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

# Every tower is a few thousand times smaller than ViT-B-32's, but the token vocabulary must stay at the
# BPE tokenizer's 49,408 entries and the context at 77 tokens so the production tokenizer fits it.
TINY_MODEL_CFG: dict = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
# OpenAI CLIP's normalisation, written out so the folder does not depend on open_clip's defaults.
TINY_PREPROCESS_CFG: dict = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def build_tiny_clip(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny model's configs and seeded weights into ``out_dir``; the same seed gives the same bytes."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # fork_rng: building must not disturb the random stream of whoever called us.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**copy.deepcopy(TINY_MODEL_CFG))
    # clone + contiguous: safetensors refuses views and shared storage.
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    # One metadata key only: safetensors writes its metadata map in no fixed order, which would break
    # byte-identical builds.
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    hub_config = {"model_cfg": TINY_MODEL_CFG, "preprocess_cfg": TINY_PREPROCESS_CFG}
    (out_dir / CONFIG_FILE).write_text(json.dumps(hub_config, indent=2, sort_keys=True) + "\n")
    (out_dir / BARE_CONFIG_FILE).write_text(json.dumps(TINY_MODEL_CFG, indent=2, sort_keys=True) + "\n")
    return out_dir
