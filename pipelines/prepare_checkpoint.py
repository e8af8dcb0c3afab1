"""Pre-fused, pre-quantised experts for a fast cold start.

A replica that starts from the production recipe loads two bf16 experts, loads the LoRA into both, fuses
it and quantises them: minutes before the first request. This command does that once and writes the
result to a folder; a config with ``prequantized_path`` pointing there loads the experts as they are.

    python -m pipelines.prepare_checkpoint --config configs/production.yaml --out /models/vividflow/wan-prepared

The folder holds ``transformer/`` and ``transformer_2/`` (each with the diffusers ``config.json``) and
``vividflow-prepared.json``, which records what was done. How the experts are stored:

- ``torchao``: quantised weights (torchao tensor subclasses such as ``Float8Tensor`` or ``Int8Tensor``)
  flattened with torchao's safetensors support into ``vividflow-torchao.safetensors``; loading assigns them
  to an empty model, with no LoRA and no quantisation step. Used whenever the installed torchao can write
  and read back the configured quantisation (checked on a small layer before the real work starts).
- ``diffusers``: fused weights in ``config.dtype`` in diffusers' own format. Used with ``quantize_experts:
  none``, and as the fallback where torchao cannot serialise the quantisation; the loader then quantises at
  start (the marker says ``quantize_at_load: true``), which still skips the LoRA.

The text encoder and the VAE still come from the config's ``path``. Quantised folders depend on the torchao
version (major.minor) that wrote them: the loader refuses another one. ``fp8_dynamic`` can only be prepared
on a GPU with compute capability 8.9 or higher, as it can only be run there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from pipelines.devices import DTYPES, require_fp8_compute, resolve_device
from pipelines.errors import ModelNotFoundError
from pipelines.video_config import VideoModelConfig

log = logging.getLogger(__name__)

MARKER = "vividflow-prepared.json"
FORMAT_VERSION = 1
TORCHAO_WEIGHTS = "vividflow-torchao.safetensors"
# torchao's unflattening needs a dotted name for every tensor; top-level parameters (scale_shift_table) have
# none, so every key is saved under this prefix.
_KEY_PREFIX = "expert."


# ---------------------------------------------------------------- writing
def prepare_checkpoint(config: VideoModelConfig, out: Path, *, force: bool = False) -> dict:
    """Load the experts as production does, fuse, quantise, and write them to ``out``. Returns the marker."""
    from pipelines.wan_loading import EXPERTS, load_fused_experts, quantize_module

    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    device = resolve_device(config.device)
    if config.quantize_experts == "fp8_dynamic":
        require_fp8_compute(device, "preparing quantize_experts: fp8_dynamic")
    dtype = DTYPES[config.dtype]
    storage, note = "diffusers", "no quantisation configured: fused weights in diffusers format"
    if config.quantize_experts != "none":
        ok, reason = torchao_round_trip(config.quantize_experts, device, dtype)
        if ok:
            storage, note = "torchao", "fused and quantised weights, serialised with torchao's safetensors support"
        else:
            note = (
                f"torchao {_torchao_version()} could not serialise {config.quantize_experts} ({reason}); "
                "fused weights saved unquantised, quantised at load"
            )
            log.warning(note)

    started = time.perf_counter()
    source = config.model_copy(update={"prequantized_path": None})
    pipe = load_fused_experts(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        experts = []
        for sub in EXPERTS:
            expert = getattr(pipe, sub, None)
            if expert is None:
                continue
            if storage == "torchao":
                expert.to(device)
                quantize_module(expert, config.quantize_experts, device)
                save_torchao_expert(expert, staging / sub)
            else:
                expert.save_pretrained(staging / sub, safe_serialization=True)
            setattr(pipe, sub, None)
            del expert
            if device.type == "cuda":
                torch.cuda.empty_cache()
            experts.append(sub)
        marker = {
            "format": FORMAT_VERSION,
            "experts": experts,
            "experts_storage": storage,
            "quantize_experts": config.quantize_experts,
            "quantize_at_load": storage == "diffusers" and config.quantize_experts != "none",
            "dtype": config.dtype,
            "lora": config.lora.model_dump() if config.lora else None,
            "source": {"path": config.path, "experts_path": config.experts_path},
            "note": note,
            "versions": _versions(),
            "prepared_on": device.type if device.type != "cuda" else torch.cuda.get_device_name(device),
            "prepare_seconds": round(time.perf_counter() - started, 2),
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return marker


def save_torchao_expert(expert, folder: Path) -> None:
    from safetensors.torch import save_file
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    expert.save_config(folder)
    state = {_KEY_PREFIX + name: tensor for name, tensor in expert.state_dict().items()}
    tensors, metadata = flatten_tensor_state_dict(state)
    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    save_file(tensors, folder / TORCHAO_WEIGHTS, metadata=metadata)


def torchao_round_trip(name: str, device: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    """Whether this torchao can write ``name``-quantised weights and read back the same layer."""
    from pipelines.wan_loading import quantize_module

    try:
        from safetensors.torch import load, save
        from torchao.prototype.safetensors.safetensors_support import (
            flatten_tensor_state_dict,
            unflatten_tensor_state_dict,
        )

        layer = torch.nn.Linear(64, 64, dtype=dtype, device=device)
        quantize_module(torch.nn.Sequential(layer), name, device)
        state = {f"{_KEY_PREFIX}{key}": value for key, value in layer.state_dict().items()}
        tensors, metadata = flatten_tensor_state_dict(state)
        blob = save({key: value.contiguous() for key, value in tensors.items()}, metadata=metadata)
        restored, leftover = unflatten_tensor_state_dict(load(blob), metadata)
        if leftover or set(restored) != set(state):
            return False, f"tensors left over after reading back: {sorted(leftover)}"
        probe = torch.randn(4, 64, dtype=dtype, device=device)
        expected = torch.nn.functional.linear(probe, layer.weight, layer.bias)
        got = torch.nn.functional.linear(probe, restored[f"{_KEY_PREFIX}weight"], restored[f"{_KEY_PREFIX}bias"])
        if not torch.equal(expected, got):
            return False, "the layer read back computes something else"
        return True, ""
    except Exception as exc:  # any failure means "fall back", and the marker says why
        return False, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- reading
def read_prepared_marker(config: VideoModelConfig) -> dict:
    """The folder's marker, after checking it matches what ``config`` asks for."""
    folder = Path(config.prequantized_path)
    marker_path = folder / MARKER
    if not marker_path.exists():
        raise ModelNotFoundError(
            f"no prepared checkpoint at {folder} (looked for {MARKER}); write one with "
            f"`python -m pipelines.prepare_checkpoint --config <config> --out {folder}` or fix `prequantized_path`",
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
        wrote, have = marker["versions"].get("torchao"), _torchao_version()
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
    state = {name.removeprefix(_KEY_PREFIX): tensor for name, tensor in state.items()}
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


def _torchao_version() -> str | None:
    try:
        import torchao
    except ImportError:
        return None
    return torchao.__version__


def _major_minor(version: str | None) -> tuple[str, ...] | None:
    return None if version is None else tuple(version.split("+")[0].split(".")[:2])


def _versions() -> dict:
    import diffusers

    return {"torch": torch.__version__, "torchao": _torchao_version(), "diffusers": diffusers.__version__}


def load_video_model_config(path: Path, key: str | None = None) -> VideoModelConfig:
    """A ``VideoModelConfig`` from YAML or JSON: the mapping itself, the value at dotted ``key``, or the
    ``video_generator.model`` of a Serve config's application."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())  # JSON is YAML too
    if key:
        for part in key.split("."):
            data = data[int(part)] if isinstance(data, list) else data[part]
    elif isinstance(data, dict) and "applications" in data:
        models = [
            app.get("args", {}).get("video_generator", {}).get("model")
            for app in data["applications"]
            if isinstance(app, dict)
        ]
        models = [model for model in models if model]
        if len(models) != 1:
            raise ValueError(f"{path}: expected one application with video_generator.model, found {len(models)}")
        data = models[0]
    return VideoModelConfig.model_validate(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write pre-fused, pre-quantised Wan experts for fast cold starts.")
    parser.add_argument("--config", type=Path, required=True, help="YAML/JSON VideoModelConfig or Serve config")
    parser.add_argument("--key", help="dotted path to the model config inside --config")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (set prequantized_path to it)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_video_model_config(args.config, args.key)
    marker = prepare_checkpoint(config, args.out, force=args.force)
    print(json.dumps(marker, indent=2))
    print(f"set `prequantized_path: {args.out}` in the video model config to start from it")


if __name__ == "__main__":
    main()
