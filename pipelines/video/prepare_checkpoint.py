"""Pre-fused, pre-quantised experts for a fast cold start.

A replica that starts from the production recipe loads two bf16 experts, loads the LoRA into both, fuses
it and quantises them: minutes before the first request. This command does that once and writes the
result to a folder; a config with ``prequantized_path`` pointing there loads the experts as they are.

    python -m pipelines.video.prepare_checkpoint --config configs/production.yaml \
        --out /models/vividflow/wan-prepared

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

from pipelines.common.devices import DTYPES, require_fp8_compute, resolve_device
from pipelines.video.config import VideoModelConfig
from pipelines.video.loading import EXPERTS, load_fused_experts, quantize_module
from pipelines.video.prepared_experts import FORMAT_VERSION, KEY_PREFIX, MARKER, TORCHAO_WEIGHTS, torchao_version

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- writing
def prepare_checkpoint(config: VideoModelConfig, out: Path, *, force: bool = False) -> dict:
    """Load the experts as production does, fuse, quantise, and write them to ``out``. Returns the marker."""
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
                f"torchao {torchao_version()} could not serialise {config.quantize_experts} ({reason}); "
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
                # layer by layer onto the device, so it never holds this expert in full precision
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
    state = {KEY_PREFIX + name: tensor for name, tensor in expert.state_dict().items()}
    tensors, metadata = flatten_tensor_state_dict(state)
    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    save_file(tensors, folder / TORCHAO_WEIGHTS, metadata=metadata)


def torchao_round_trip(name: str, device: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    """Whether this torchao can write ``name``-quantised weights and read back the same layer."""
    try:
        from safetensors.torch import load, save
        from torchao.prototype.safetensors.safetensors_support import (
            flatten_tensor_state_dict,
            unflatten_tensor_state_dict,
        )

        layer = torch.nn.Linear(64, 64, dtype=dtype, device=device)
        quantize_module(torch.nn.Sequential(layer), name, device)
        state = {f"{KEY_PREFIX}{key}": value for key, value in layer.state_dict().items()}
        tensors, metadata = flatten_tensor_state_dict(state)
        blob = save({key: value.contiguous() for key, value in tensors.items()}, metadata=metadata)
        restored, leftover = unflatten_tensor_state_dict(load(blob), metadata)
        if leftover or set(restored) != set(state):
            return False, f"tensors left over after reading back: {sorted(leftover)}"
        probe = torch.randn(4, 64, dtype=dtype, device=device)
        expected = torch.nn.functional.linear(probe, layer.weight, layer.bias)
        got = torch.nn.functional.linear(probe, restored[f"{KEY_PREFIX}weight"], restored[f"{KEY_PREFIX}bias"])
        if not torch.equal(expected, got):
            return False, "the layer read back computes something else"
        return True, ""
    except Exception as exc:  # any failure means "fall back", and the marker says why
        return False, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- helpers
def _versions() -> dict:
    import diffusers

    return {"torch": torch.__version__, "torchao": torchao_version(), "diffusers": diffusers.__version__}


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
