"""Reading a folder written by ``python -m pipelines.video.prepare_checkpoint``: its marker and its experts.

Apart from the writer so that the loader can read prepared folders without importing the code that loads,
fuses and quantises the experts to write them (which itself uses the loader).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from pipelines.common.errors import ModelNotFoundError
from pipelines.video.config import VideoModelConfig

log = logging.getLogger(__name__)

MARKER = "vividflow-prepared.json"
FORMAT_VERSION = 1
TORCHAO_WEIGHTS = "vividflow-torchao.safetensors"
# torchao's unflattening needs a dotted name for every tensor; top-level parameters (scale_shift_table) have
# none, so every key is saved under this prefix.
KEY_PREFIX = "expert."


def read_prepared_marker(config: VideoModelConfig) -> dict:
    """The folder's marker, after checking it matches what ``config`` asks for."""
    folder = Path(config.prequantized_path)
    marker_path = folder / MARKER
    if not marker_path.exists():
        raise ModelNotFoundError(
            f"no prepared checkpoint at {folder} (looked for {MARKER}); write one with "
            f"`python -m pipelines.video.prepare_checkpoint --config <config> --out {folder}` "
            "or fix `prequantized_path`",
            field="prequantized_path",
        )
    marker = json.loads(marker_path.read_text())
    if marker.get("format") != FORMAT_VERSION:
        raise ModelNotFoundError(
            f"{folder} was prepared in format {marker.get('format')}, this version reads {FORMAT_VERSION}; "
            "prepare it again",
            field="prequantized_path",
        )
    problems = []
    if marker["dtype"] != config.dtype:
        problems.append(f"dtype {marker['dtype']} (config: {config.dtype})")
    if marker["quantize_experts"] != config.quantize_experts:
        problems.append(f"quantize_experts {marker['quantize_experts']} (config: {config.quantize_experts})")
    if _lora_identity(marker["lora"]) != _lora_identity(config.lora.model_dump() if config.lora else None):
        problems.append(f"lora {_lora_identity(marker['lora'])} (config: {_lora_identity(config.lora)})")
    if marker["experts_storage"] == "torchao":
        wrote, have = marker["versions"].get("torchao"), torchao_version()
        if _major_minor(wrote) != _major_minor(have):
            problems.append(f"written by torchao {wrote}, this image has {have}")
    if problems:
        raise ModelNotFoundError(
            f"the prepared checkpoint at {folder} does not match this config: {'; '.join(problems)}. "
            "Prepare it again from this config, or fix the config.",
            field="prequantized_path",
        )
    return marker


def load_prepared_experts(folder: Path, marker: dict, dtype: torch.dtype, device: torch.device) -> dict:
    """The experts from a prepared folder, keyed like the pipeline's components."""
    from diffusers import WanTransformer3DModel

    experts = {}
    for sub in marker["experts"]:
        if not (folder / sub / "config.json").exists():
            raise ModelNotFoundError(
                f"{folder / sub} is missing from the prepared checkpoint", field="prequantized_path"
            )
        if marker["experts_storage"] == "torchao":
            experts[sub] = load_torchao_expert(folder / sub, device)
        else:
            experts[sub] = WanTransformer3DModel.from_pretrained(folder, subfolder=sub, dtype=dtype)
    log.info("loaded prepared experts from %s (%s)", folder, marker["experts_storage"])
    return experts


def load_torchao_expert(folder: Path, device: torch.device):
    """Build the expert with empty weights and assign the stored (quantised) tensors, read onto ``device``."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    from safetensors import safe_open
    from safetensors.torch import load_file
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    weights = folder / TORCHAO_WEIGHTS
    if not weights.exists():
        raise ModelNotFoundError(f"{weights} is missing from the prepared checkpoint", field="prequantized_path")
    # Parameters stay unallocated; buffers (the rotary tables) are built as from_pretrained builds them.
    with init_empty_weights(include_buffers=False):
        expert = WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(folder))
    with safe_open(weights, framework="pt") as handle:
        metadata = handle.metadata()
    state, leftover = unflatten_tensor_state_dict(load_file(weights, device=str(device)), metadata)
    if leftover:
        raise ModelNotFoundError(f"{weights} has tensors no layer reads: {sorted(leftover)[:5]}")
    state = {name.removeprefix(KEY_PREFIX): tensor for name, tensor in state.items()}
    expert.load_state_dict(state, strict=True, assign=True)
    return expert.to(device).eval()


# ---------------------------------------------------------------- helpers
def _lora_identity(lora) -> dict | None:
    """What must match between the folder and the config: the LoRA file and the scales, not the mount point."""
    if lora is None:
        return None
    if not isinstance(lora, dict):
        lora = lora.model_dump()
    return {
        "file": Path(lora["path"]).name + ("/" + lora["weight_name"] if lora.get("weight_name") else ""),
        "scale_high_noise": float(lora["scale_high_noise"]),
        "scale_low_noise": float(lora["scale_low_noise"]),
    }


def torchao_version() -> str | None:
    try:
        import torchao
    except ImportError:
        return None
    return torchao.__version__


def _major_minor(version: str | None) -> tuple[str, ...] | None:
    return None if version is None else tuple(version.split("+")[0].split(".")[:2])
