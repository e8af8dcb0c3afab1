"""Video-edit benchmark (Wan VACE): per-stage time and peak memory of 2 s and 5 s edits at 832x480, 4 steps.

Full size (one CUDA GPU): two Wan2.2 VACE-Fun A14B-shaped experts (the Wan2.1-VACE-14B transformer config:
40 blocks, 8 VACE blocks at layers 0, 5, ..., 35, 96 control channels), UMT5-XXL and the Wan VAE, built with
random weights directly in GPU memory (no download), run through the production loop (``WanVaceEditor``)
after ``configure_pipeline`` (the loader's own steps). Both modes: ``style`` (edges control) and ``replace``
(a moving-square mask, composited back outside it). Random weights draw noise; every matrix product,
attention and convolution is the real one at the real size.

    python benchmarks/gpu_edit.py --json results/gpu_edit.json       # full size, needs a GPU
    python benchmarks/gpu_edit.py --tiny                              # the same code path on the CPU (CI)

``--tiny`` uses small stand-in architectures and 96x64 frames: it rehearses the code, its numbers say
nothing about performance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_video import UMT5_XXL, WAN_EXPERT, random_text_encoder  # noqa: E402

VACE_EXPERT = {**WAN_EXPERT, "in_channels": 16, "vace_layers": [0, 5, 10, 15, 20, 25, 30, 35], "vace_in_channels": 96}
TINY_EXPERT = {**VACE_EXPERT, "num_attention_heads": 2, "attention_head_dim": 16, "text_dim": 32, "freq_dim": 32}
TINY_EXPERT |= {"ffn_dim": 64, "num_layers": 2, "vace_layers": [0, 1]}
TINY_TEXT = {**UMT5_XXL, "vocab_size": 512, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4}
TINY_VAE = {"base_dim": 3, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 0}
BOUNDARY_RATIO = 0.875  # the VACE-Fun conversion's model_index.json
SECONDS = (2.0, 5.0)


def random_vace_expert(device, dtype, seed: int, config: dict):
    from accelerate import init_empty_weights
    from diffusers import WanVACETransformer3DModel

    from benchmarks.common import materialize_random

    with init_empty_weights(include_buffers=False):
        expert = WanVACETransformer3DModel(**config)
    materialize_random(expert, device, dtype, keep_fp32=set(expert._keep_in_fp32_modules or ()), seed=seed)
    return expert


def random_vace_pipeline(device, dtype, *, tiny: bool):
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline
    from transformers import AutoTokenizer

    from pipelines.tiny.build import TINY_WAN_I2V, ensure_tiny_model

    root = Path(__file__).resolve().parents[1] / ".cache" / "models"
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model(TINY_WAN_I2V, root / TINY_WAN_I2V) / "tokenizer")
    expert = TINY_EXPERT if tiny else VACE_EXPERT
    with torch.device(device):
        vae = AutoencoderKLWan(**(TINY_VAE if tiny else {})).eval()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=5.0
    )
    return WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=random_text_encoder(device, dtype, 1, TINY_TEXT if tiny else None),
        vae=vae.to(torch.float32),
        scheduler=scheduler,
        transformer=random_vace_expert(device, dtype, 2, expert),
        transformer_2=random_vace_expert(device, dtype, 3, expert),
        boundary_ratio=BOUNDARY_RATIO,
    )


def clip(frames: int, width: int, height: int):
    import numpy as np

    side = height // 3
    video = np.full((frames, height, width, 3), 90, np.uint8)
    masks = np.zeros((frames, height, width), bool)
    for index in range(frames):
        left = int((width - side) * index / max(frames - 1, 1))
        video[index, side : 2 * side, left : left + side] = (235, 150, 40)
        masks[index, side - 8 : 2 * side + 8, max(0, left - 8) : left + side + 8] = True
    return video, masks


def run(args) -> dict:
    import torch

    from pipelines.common.media import export_mp4
    from pipelines.edit.config import EditModelConfig
    from pipelines.edit.request import EditRequest
    from pipelines.edit.video_input import frames_at_16fps
    from pipelines.edit.wan_vace import WanVaceEditor
    from pipelines.video.loading import configure_pipeline

    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    width, height = (96, 64) if args.tiny else (832, 480)
    started = time.perf_counter()
    pipe = random_vace_pipeline(device, dtype, tiny=args.tiny)
    settings = {"path": "random", "device": device.type, "dtype": "float32" if args.tiny else "bfloat16"}
    if not args.tiny:
        settings |= {"quantize_experts": args.quantize, "vae_tiling": True, "vae_slicing": True}
    configure_pipeline(pipe, EditModelConfig(**settings), device)
    editor = WanVaceEditor(pipe)
    results: dict = {"build_s": round(time.perf_counter() - started, 2), "size": [width, height], "runs": []}
    workdir = Path(args.workdir or "/tmp")
    for seconds in (0.5,) if args.tiny else SECONDS:
        frames = frames_at_16fps(seconds)
        video, masks = clip(frames, width, height)
        for mode in ("style", "replace"):
            request = EditRequest(
                frames=video, prompt="a car on a mountain road, van gogh style", mode=mode,
                masks=masks if mode == "replace" else None, steps=4,
            )  # fmt: skip
            editor(request)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            began = time.perf_counter()
            result = editor(request)
            total = time.perf_counter() - began
            export = export_mp4(result.frames, workdir / f"edit-{mode}-{frames}.mp4", fps=16)
            results["runs"].append(
                {
                    "seconds": seconds,
                    "frames": frames,
                    "mode": mode,
                    "stages_s": {name: round(value, 3) for name, value in result.timings_s.items()},
                    "export_s": round(export, 3),
                    "total_s": round(total + export, 3),
                    "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
                }
            )
            print(json.dumps(results["runs"][-1]), flush=True)
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small stand-ins on the CPU (rehearsal)")
    parser.add_argument("--quantize", default="fp8_dynamic", choices=["none", "fp8_dynamic", "int8_weight_only"])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
