"""Reading a LoRA file's layout without torch: the safetensors header, key names, shapes and scales.

The ingress (which has no torch) and the video replica check a file with the same code, so the status
`GET /v1/loras` shows is the verdict the replica reaches before it applies the file.

Two key layouts are read, the ones real Wan2.2 LoRAs come in:

- diffusers/PEFT: ``transformer.<module>.lora_A.weight`` / ``.lora_B.weight`` (what ``save_lora_weights``
  writes), the scale ``lora_alpha / r`` in the ``lora_adapter_metadata`` header entry (1 without it);
- ComfyUI/Kohya (musubi-tuner, Kijai's exports): ``diffusion_model.<original Wan name>.lora_down.weight`` /
  ``.lora_up.weight`` (or ``lora_A``/``lora_B``), ``.alpha`` per module (scale ``alpha / rank``), ``.diff_b``
  as a bias of the up-projection. The original names map to diffusers' the way diffusers 0.42's
  ``_convert_non_diffusers_wan_lora_to_diffusers`` maps them; a test holds the two to the same result.

Only safetensors is read: a pickle file can run code when it is loaded, so it is never opened.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

SAFETENSORS_SUFFIX = ".safetensors"
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a LoRA header lists a few thousand tensors: megabytes, never more
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
PEFT_METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY

# Original Wan module names (inside ``blocks.<i>.``) -> diffusers' names, as diffusers converts them.
_BLOCK_MODULES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_TOP_MODULES = {
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
# part of a key after the module name -> the role of the tensor
_PEFT_PARTS = {"lora_A.weight": "down", "lora_B.weight": "up", "lora_B.bias": "bias"}
_COMFY_PARTS = {
    "lora_down.weight": "down",
    "lora_up.weight": "up",
    "lora_A.weight": "down",
    "lora_B.weight": "up",
    "alpha": "alpha",
    "diff_b": "bias",
}


class LoraFileError(ValueError):
    """The file cannot be used; the message says why, for the library's `unavailable` reason."""


@dataclass(frozen=True)
class TensorInfo:
    key: str
    dtype: str
    shape: tuple[int, ...]


@dataclass
class ModuleLora:
    """One targeted linear layer: which file keys hold its down/up(/bias/alpha) tensors."""

    down: TensorInfo | None = None
    up: TensorInfo | None = None
    bias: TensorInfo | None = None
    alpha: TensorInfo | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def in_features(self) -> int:
        return self.down.shape[1]

    @property
    def out_features(self) -> int:
        return self.up.shape[0]


@dataclass
class LoraLayout:
    """What a file holds, in diffusers' module names; ``scale`` is PEFT's alpha/r (per-module alphas are
    read from the tensors, so they are applied when the tensors are)."""

    layout: str  # "diffusers" or "comfyui"
    modules: dict[str, ModuleLora] = field(default_factory=dict)
    scale: float = 1.0
    ignored: list[str] = field(default_factory=list)  # keys diffusers also drops (norm weight diffs)

    @property
    def parameters(self) -> int:
        total = 0
        for module in self.modules.values():
            for info in (module.down, module.up, module.bias):
                if info is not None:
                    total += math.prod(info.shape)
        return total


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors (name, dtype, shape) and the metadata of a safetensors file, checked against its size."""
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise LoraFileError(f"{path.name} is not a .safetensors file; only safetensors is loaded (never pickle)")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) != 8:
                raise LoraFileError(f"{path.name} is too short to be a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise LoraFileError(f"{path.name} is not a valid safetensors file (header length {length})")
            raw = handle.read(length)
    except FileNotFoundError:
        raise LoraFileError(f"{path.name} does not exist") from None
    except IsADirectoryError:
        raise LoraFileError(f"{path.name} is a folder, not a file") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LoraFileError(f"{path.name} is not a valid safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise LoraFileError(f"{path.name} is not a valid safetensors file (its header is not a table)")
    metadata = header.pop("__metadata__", None) or {}
    data_bytes = size - 8 - length
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(int(n) for n in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise LoraFileError(f"{path.name}: the header entry of {key!r} is malformed") from None
        if not 0 <= start <= end <= data_bytes:
            raise LoraFileError(f"{path.name} is truncated or corrupt: {key!r} lies outside the file")
        tensors[key] = TensorInfo(key, dtype, shape)
    return tensors, metadata if isinstance(metadata, dict) else {}


def read_layout(path: Path) -> LoraLayout:
    """Parse ``path``'s keys into per-module LoRA tensors; raise :class:`LoraFileError` naming what is wrong."""
    tensors, metadata = read_header(path)
    if not tensors:
        raise LoraFileError(f"{Path(path).name} holds no tensors")
    if any(key.startswith("lora_unet_") for key in tensors):
        raise LoraFileError(f"{Path(path).name} uses the musubi `lora_unet_` key layout, which is not supported yet")
    comfy = any(key.startswith("diffusion_model.") for key in tensors)
    layout = LoraLayout("comfyui" if comfy else "diffusers")
    for key, info in tensors.items():
        if info.dtype not in FLOAT_DTYPES:
            raise LoraFileError(f"{Path(path).name}: {key!r} has dtype {info.dtype}; LoRA weights are floating point")
        module, role = _comfy_key(key, layout) if comfy else _peft_key(key)
        if module is None:
            continue
        if role is None:
            raise LoraFileError(f"{Path(path).name}: {key!r} is not a LoRA key this service understands")
        entry = layout.modules.setdefault(module, ModuleLora())
        if getattr(entry, role) is not None:
            raise LoraFileError(f"{Path(path).name}: two tensors for {module} {role}")
        setattr(entry, role, info)
    if not comfy:
        layout.scale = _peft_scale(metadata, Path(path).name)
    for name, entry in layout.modules.items():
        _check_module(Path(path).name, name, entry)
    return layout


def check_against_layers(layout: LoraLayout, layers: dict[str, tuple[int, int]], where: str) -> None:
    """Every targeted module must be a linear layer of the expert, with the (out, in) shape the LoRA assumes."""
    for name, entry in layout.modules.items():
        shape = layers.get(name)
        if shape is None:
            raise LoraFileError(f"{name} is not a linear layer of the {where} expert")
        if shape != (entry.out_features, entry.in_features):
            raise LoraFileError(
                f"{name}: the LoRA is for a {entry.in_features}->{entry.out_features} layer but the {where} "
                f"expert's is {shape[1]}->{shape[0]} (a LoRA for another model size?)"
            )


def expert_layer_shapes(folder: Path) -> dict[str, tuple[int, int]] | None:
    """``{module: (out, in)}`` of an expert's linear layers, read from its safetensors header(s) without torch.

    Every 2-D ``.weight`` of a Wan transformer is a linear layer (its convolution is 5-D, norms 1-D).
    None when the folder holds no plain safetensors checkpoint (not built yet, or a torchao-prepared one).
    """
    folder = Path(folder)
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "diffusion_pytorch_model.safetensors").exists():
        files = ["diffusion_pytorch_model.safetensors"]
    else:
        return None
    layers: dict[str, tuple[int, int]] = {}
    for name in files:
        try:
            tensors, _ = read_header(folder / name)
        except LoraFileError:
            return None
        for key, info in tensors.items():
            if key.endswith(".weight") and len(info.shape) == 2:
                layers[key.removesuffix(".weight")] = (info.shape[0], info.shape[1])
    return layers


def _peft_key(key: str) -> tuple[str | None, str | None]:
    body = key.removeprefix("transformer.")
    for suffix, role in _PEFT_PARTS.items():
        if body.endswith("." + suffix):
            return body[: -len(suffix) - 1], role
    return key, None


def _comfy_key(key: str, layout: LoraLayout) -> tuple[str | None, str | None]:
    body = key.removeprefix("diffusion_model.")
    for suffix, role in _COMFY_PARTS.items():
        if body.endswith("." + suffix):
            original = body[: -len(suffix) - 1]
            module = _diffusers_name(original)
            return (module, role) if module is not None else (key, None)
    if body.endswith((".diff", ".diff_b")) and "norm" in body:
        layout.ignored.append(key)  # zeroed norm diffs in some exports; diffusers drops them too
        return None, None
    return key, None


def _diffusers_name(original: str) -> str | None:
    match = _BLOCK.match(original)
    if match:
        inner = _BLOCK_MODULES.get(match.group(2))
        return f"blocks.{match.group(1)}.{inner}" if inner else None
    return _TOP_MODULES.get(original)


def _peft_scale(metadata: dict[str, str], name: str) -> float:
    raw = metadata.get(PEFT_METADATA_KEY)
    if not raw:
        return 1.0  # diffusers loads such a file with lora_alpha = r
    try:
        config = json.loads(raw)
        rank, alpha = config.get("transformer.r"), config.get("transformer.lora_alpha")
    except (json.JSONDecodeError, AttributeError):
        raise LoraFileError(f"{name}: its {PEFT_METADATA_KEY} header entry is not valid JSON") from None
    if config.get("transformer.use_dora"):
        raise LoraFileError(f"{name} is a DoRA adapter; only plain LoRA is supported")
    if config.get("transformer.rank_pattern") or config.get("transformer.alpha_pattern"):
        raise LoraFileError(f"{name} sets per-module ranks or alphas (rank_pattern/alpha_pattern); not supported")
    if rank is None or alpha is None:
        return 1.0
    if not (isinstance(rank, int) and rank > 0 and isinstance(alpha, (int, float)) and math.isfinite(alpha)):
        raise LoraFileError(f"{name}: r={rank!r}, lora_alpha={alpha!r} in its metadata are not usable")
    return alpha / math.sqrt(rank) if config.get("transformer.use_rslora") else alpha / rank


def _check_module(file: str, name: str, entry: ModuleLora) -> None:
    if entry.down is None or entry.up is None:
        missing = "down (lora_A)" if entry.down is None else "up (lora_B)"
        raise LoraFileError(f"{file}: {name} has no {missing} matrix")
    if len(entry.down.shape) != 2 or len(entry.up.shape) != 2:
        raise LoraFileError(f"{file}: {name}'s LoRA matrices are not 2-D (a convolution LoRA is not supported)")
    if entry.up.shape[1] != entry.down.shape[0] or entry.rank == 0:
        raise LoraFileError(
            f"{file}: {name}'s matrices do not chain: down {list(entry.down.shape)}, up {list(entry.up.shape)}"
        )
    if entry.bias is not None and entry.bias.shape != (entry.out_features,):
        raise LoraFileError(f"{file}: {name}'s bias has shape {list(entry.bias.shape)}, not [{entry.out_features}]")
    if entry.alpha is not None and math.prod(entry.alpha.shape) != 1:
        raise LoraFileError(f"{file}: {name}'s alpha is not a single number")
