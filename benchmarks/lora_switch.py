"""Motion LoRAs: memory per adapter, switch time and step overhead, per quantisation mode (issue #13).

    .venv/bin/python benchmarks/lora_switch.py                       # tiny experts on the CPU
    .venv/bin/python benchmarks/lora_switch.py --modes none,fp8_dynamic --device cuda   # on a GPU

For each ``quantize_experts`` mode the device can run it measures, on the same experts:

- ``bytes``: what one LoRA adds on the device (its A and B matrices in the experts' dtype);
- ``switch_cold_s`` (read the file, check it, move it; the LRU does not hold it) and ``switch_warm_s``
  (held: hooks registered only), medians;
- ``step_base_s`` / ``step_lora_s``: one expert forward without and with the LoRA's hooks;
- ``peft``: whether PEFT's LoRA layers load over that mode's weights, and whether their output equals the
  hooks' (the answer to "PEFT over torchao where it works").

Tiny experts on a CPU say how the path behaves, not how fast a GPU is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.tiny.build import TINY_WAN_I2V, ensure_tiny_model  # noqa: E402
from pipelines.tiny.wan_loras import TINY_WAN_MOTION_LORAS  # noqa: E402
from pipelines.video.config import MotionLoraLibraryConfig, VideoModelConfig  # noqa: E402
from pipelines.video.loading import load_wan_pipeline, quantize_module  # noqa: E402
from pipelines.video.lora_adapters import MotionLoras  # noqa: E402

MODES = ("none", "int8_weight_only", "fp8_weight_only", "fp8_dynamic")


def _inputs(device, dtype, frames: int, height: int, width: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 36, 1 + (frames - 1) // 4, height // 8, width // 8, generator=generator)
    return {
        "hidden_states": latent.to(device, dtype),
        "timestep": torch.tensor([900.0], device=device),
        "encoder_hidden_states": torch.randn(1, 32, 32, generator=generator).to(device, dtype),
    }


def _timed(fn, runs: int, device) -> float:
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(mode: str, device: torch.device, library: Path, runs: int, size: tuple[int, int, int]) -> dict:
    dtype_name = "float32" if mode == "none" and device.type == "cpu" else "bfloat16"
    model = VideoModelConfig(path=str(ensure_tiny_model(TINY_WAN_I2V, REPO / ".cache/models" / TINY_WAN_I2V)))
    pipe = load_wan_pipeline(model.model_copy(update={"device": "cpu", "dtype": dtype_name}))
    if mode != "none":
        quantize_module(pipe.transformer, mode, device)
    pipe.transformer.to(device)
    pipe.transformer_2.to(device)
    inputs = _inputs(device, pipe.transformer.dtype, *size)
    loras = MotionLoras(pipe, MotionLoraLibraryConfig(path=str(library), max_adapters=1))

    def forward():
        with torch.inference_mode():
            return pipe.transformer(**inputs, return_dict=False)[0]

    forward()  # warm-up
    result: dict = {"mode": mode, "dtype": dtype_name, "device": str(device)}
    cold, warm = [], []
    for _ in range(runs):  # max_adapters 1: alternating LoRAs evicts, so every switch reads its file again
        for lora_id in ("tiny-orbit", "tiny-dolly"):
            with loras.applied([(lora_id, 1.0)]) as switch:
                pass
            cold.append(switch.seconds)
    result["bytes"] = {}
    for lora_id in ("tiny-orbit", "tiny-dolly"):
        with loras.applied([(lora_id, 1.0)]):
            result["bytes"][lora_id] = loras.held_bytes()
    for _ in range(runs):
        with loras.applied([("tiny-dolly", 1.0)]) as switch:
            pass
        warm.append(switch.seconds)
    result["switch_cold_s"], result["switch_warm_s"] = statistics.median(cold), statistics.median(warm)
    with loras.applied([("tiny-orbit", 1.0)]):
        hooked = forward()
    base, hooks = [], []
    for _ in range(runs):  # interleaved, so a busy machine slows both alike
        base.append(_timed(forward, 1, device))
        with loras.applied([("tiny-orbit", 1.0)]):
            hooks.append(_timed(forward, 1, device))
    result["step_base_s"], result["step_lora_s"] = statistics.median(base), statistics.median(hooks)
    result["step_overhead"] = result["step_lora_s"] / result["step_base_s"] - 1
    result["peft"] = _peft(pipe, library, forward, hooked)
    return result


def _peft(pipe, library: Path, forward, hooked) -> dict:
    from diffusers import WanImageToVideoPipeline

    try:
        state, metadata = WanImageToVideoPipeline.lora_state_dict(
            str(library / "tiny-orbit.safetensors"), return_lora_metadata=True
        )
        pipe.transformer.load_lora_adapter(state, adapter_name="peft", prefix="transformer", metadata=metadata)
        layer = type(pipe.transformer.blocks[0].attn1.to_q).__name__
        difference = (forward().float() - hooked.float()).abs().max().item()
        pipe.transformer.delete_adapters("peft")
        return {"loads": True, "layer": layer, "max_abs_difference_to_hooks": difference}
    except Exception as exc:  # what PEFT says is the measurement
        return {"loads": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="9x480x832", help="frames x height x width of the latent's video")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    library = ensure_tiny_model(TINY_WAN_MOTION_LORAS, REPO / ".cache/models" / TINY_WAN_MOTION_LORAS)
    size = tuple(int(n) for n in args.size.split("x"))
    results = []
    for mode in args.modes.split(","):
        try:
            results.append(measure(mode, device, library, args.runs, size))
        except Exception as exc:  # a mode this device cannot run (fp8_dynamic below compute capability 8.9)
            results.append({"mode": mode, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
    for row in results:
        if "error" in row:
            print(f"{row['mode']:>17}: not run: {row['error']}")
            continue
        peft = row["peft"]
        peft_text = (
            f"PEFT {peft['layer']} loads, differs from hooks by {peft['max_abs_difference_to_hooks']:.1e}"
            if peft["loads"]
            else f"PEFT fails: {peft['error']}"
        )
        print(
            f"{row['mode']:>17} ({row['dtype']}): +{row['bytes']['tiny-orbit'] / 1024:.1f} KiB orbit, "
            f"+{row['bytes']['tiny-dolly'] / 1024:.1f} KiB dolly; switch cold {row['switch_cold_s'] * 1e3:.2f} ms, "
            f"warm {row['switch_warm_s'] * 1e3:.3f} ms; step {row['step_base_s'] * 1e3:.1f} -> "
            f"{row['step_lora_s'] * 1e3:.1f} ms ({row['step_overhead']:+.1%}); {peft_text}"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
