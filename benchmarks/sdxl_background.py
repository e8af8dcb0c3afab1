"""Background benchmark: SDXL base at 1024x1024, 25 steps, guidance 7.5, VividFlow's recipe against ours.

Full size (needs one CUDA GPU): a Stable Diffusion XL base pipeline with the real architecture (UNet
2.57 B parameters, CLIP ViT-L and OpenCLIP bigG text encoders, the SDXL VAE) and random weights is built
on the GPU and written once, in fp16, to a scratch folder; every variant then loads it through the
project's own ``SdxlBackground.from_config`` (the service's loader: dtype, variant, VAE upcast rule, DPM-Solver++)
and renders through ``SdxlBackground`` (text encode, denoise, VAE decode, each timed).

Variants, each a ``BackgroundModelConfig``:
  baseline    VividFlow: fp16 weights (variant fp16), the stock VAE decoding in float32 (its force_upcast)
  ours        the fastest the config offers today: the VAE in bfloat16 (no float16 overflow, half the bytes)
  <ablation>  the baseline with one option changed; options the config does not have yet are listed as
              unavailable, so the table shows what is missing rather than a number from outside the service

    python benchmarks/sdxl_background.py --json results/sdxl.json
    python benchmarks/sdxl_background.py --tiny          # CPU smoke test (CI): tiny SDXL, 512x512, 4 steps

``--tiny`` numbers exercise the benchmark, they say nothing about performance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    GIB,
    describe_error,
    environment,
    free_memory,
    merge,
    parse_overrides,
    render,
    summarise,
    summarise_runs,
    write_json,
)

# stabilityai/stable-diffusion-xl-base-1.0 (diffusers configs).
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),  # diffusers' legacy name: heads per block
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
CLIP_BIGG = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20}
SDXL_VAE = {
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
PROMPT = "modern office interior, large windows, soft natural light, blurred background, professional photography"
STEPS, GUIDANCE, SIZE = 25, 7.5, 1024

BASELINE = {"dtype": "float16", "vae_dtype": "float16", "variant": "fp16", "vae_tiling": False}
ABLATIONS = {
    "vae_bf16": {"vae_dtype": "bfloat16"},
    "vae_tiling": {"vae_tiling": True},
    # The UNet's speed options (pipelines.common.runtime_options, as on the video side).
    "compile": {"compile": "regional"},
    "attention_backend": {"attention_backend": "_native_cudnn"},
}
OURS = {"vae_dtype": "bfloat16"}
CPU_SUBSTITUTES = {
    ("dtype", "float16"): ("float32", "float16 convolutions are slow or missing on CPUs"),
    ("variant", "fp16"): (None, "the tiny model has no fp16 weight files"),
}


def variant_configs(names: list[str], ours_overrides: dict, cpu: bool) -> list[dict]:
    baseline, base_subs = _substituted(BASELINE, cpu)
    ours, ours_subs = _substituted({**BASELINE, **OURS, **ours_overrides}, cpu)
    out = []
    for name in names:
        if name == "baseline":
            out.append(_variant(name, "baseline", {}, baseline, base_subs))
        elif name == "ours":
            out.append(_variant(name, "ours", {**OURS, **ours_overrides}, ours, ours_subs))
        else:
            out.append(_variant(name, "ablation", ABLATIONS[name], {**baseline, **ABLATIONS[name]}, base_subs))
    return out


def _variant(name, role, overrides, settings, substitutions) -> dict:
    return {"name": name, "role": role, "overrides": overrides, "settings": settings, "substitutions": substitutions}


def _substituted(settings: dict, cpu: bool) -> tuple[dict, list[str]]:
    if not cpu:
        return dict(settings), []
    out, notes = dict(settings), []
    for key, value in settings.items():
        if (key, value) in CPU_SUBSTITUTES:
            new, why = CPU_SUBSTITUTES[(key, value)]
            out[key] = new
            notes.append(f"{key}: {value} -> {new} ({why})")
    return out, notes


def random_sdxl_folder(folder: Path, device, *, seed: int = 0, small: dict | None = None) -> Path:
    """Build SDXL base with random weights on ``device`` and save it in fp16 (variant fp16) to ``folder``.

    ``small`` replaces the architectures (keys unet, clip_l, clip_bigg, vae; tests build a small one on the CPU).
    """
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pipelines.tiny.sdxl import build_tokenizer

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = build_tokenizer(), build_tokenizer(pad_token="!")

    def text_config(tokenizer, spec, act, projection):
        return CLIPTextConfig(
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_act=act,
            projection_dim=projection,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **spec,
        )

    spec = {"unet": SDXL_UNET, "clip_l": CLIP_L, "clip_bigg": CLIP_BIGG, "vae": SDXL_VAE, **(small or {})}
    pooled = spec["clip_bigg"]["hidden_size"]
    with torch.device(device):  # default (random) initialisation, directly in GPU memory
        unet = UNet2DConditionModel(**spec["unet"]).to(torch.float16)
        text_encoder = CLIPTextModel(text_config(tokenizer, spec["clip_l"], "quick_gelu", 768)).to(torch.float16)
        text_encoder_2 = CLIPTextModelWithProjection(text_config(tokenizer_2, spec["clip_bigg"], "gelu", pooled)).to(
            torch.float16
        )
        vae = AutoencoderKL(**spec["vae"]).to(torch.float16)
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
    pipe.save_pretrained(folder, safe_serialization=True, variant="fp16")
    del pipe, unet, text_encoder, text_encoder_2, vae
    free_memory()
    return folder


def run_variant(variant: dict, args, device, model_path: Path) -> dict:
    from pipelines.background.sdxl import BackgroundModelConfig, SdxlBackground
    from pipelines.common.errors import UnsupportedHardwareError

    record = {**variant, "status": "ok", "error": None, "load_s": None, "results": {}}
    print(f"variant {variant['name']}: {variant['overrides'] or 'VividFlow recipe'}", file=sys.stderr, flush=True)
    missing = [key for key in variant["settings"] if key not in BackgroundModelConfig.model_fields]
    if missing:
        record.update(
            status="unavailable",
            error=f"BackgroundModelConfig has no {', '.join(missing)} option yet (pipelines/background/sdxl.py)",
        )
        return record
    background = None
    try:
        config = BackgroundModelConfig(path=str(model_path), device=device.type, **variant["settings"])
        started = time.perf_counter()
        background = SdxlBackground.from_config(config)
        record["load_s"] = time.perf_counter() - started
        record["results"] = measure(background, args, device)
    except UnsupportedHardwareError as exc:
        record.update(status="refused", error=describe_error(exc))
    except Exception as exc:  # one variant's failure (OOM, missing kernel) must not lose the others
        record.update(status="failed", error=describe_error(exc))
    del background
    free_memory()
    return record


def measure(background, args, device) -> dict:
    from pipelines.background.sdxl import BackgroundRequest

    request = BackgroundRequest(
        prompt=PROMPT, width=args.size, height=args.size, steps=args.steps, guidance_scale=GUIDANCE, seed=args.seed
    )
    warmup = [one_run(background, request, device, args.size)[0]["end_to_end"] for _ in range(args.warmup)]
    samples, peaks = [], []
    for _ in range(args.runs):
        stages, peak = one_run(background, request, device, args.size)
        samples.append(stages)
        peaks.append(peak)
    case = f"{args.size}x{args.size}"
    return {
        case: {
            "warmup_end_to_end_s": warmup,
            "stages": summarise_runs(samples),
            "peak_gpu_mem_gib": summarise(peaks) if peaks[0] is not None else None,
        }
    }


def one_run(background, request, device, size: int) -> tuple[dict, float | None]:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    result = background(request)
    end_to_end = time.perf_counter() - started
    if result.image.size != (size, size):
        raise RuntimeError(f"expected a {size}x{size} image, got {result.image.size}")
    stages = dict(result.timings_s)
    stages["denoise_per_step"] = stages["denoise"] / result.steps
    stages["end_to_end"] = end_to_end
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return stages, peak


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny offline SDXL on the CPU (smoke test)")
    parser.add_argument("--variants", default=None, help="comma list: baseline, ours, ablation names, or 'all'")
    parser.add_argument("--size", type=int, default=None, help="square side; default 1024 (tiny: 512)")
    parser.add_argument("--steps", type=int, default=None, help="default 25 (tiny: 4)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set-ours", action="append", metavar="KEY=VALUE", help="change one option of 'ours'")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder for the random checkpoint")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--merge", type=Path, nargs="+", help="print one report from earlier --json files")
    args = parser.parse_args(argv)
    args.size = args.size or (512 if args.tiny else SIZE)
    args.steps = args.steps or (4 if args.tiny else STEPS)
    names = (args.variants or ("baseline,ours" if args.tiny else "all")).split(",")
    if names == ["all"]:
        names = ["baseline", "ours", *ABLATIONS]
    unknown = [n for n in names if n not in ("baseline", "ours", *ABLATIONS)]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from baseline, ours, {', '.join(ABLATIONS)}")
    args.variant_names = names
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        report = merge(args.merge)
        print(render(report))
        write_json(report, args.json)
        return report
    import torch

    device = torch.device("cpu") if args.tiny else torch.device("cuda")
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: run with --tiny for the CPU smoke test")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vividflow-sdxl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.tiny:
        from pipelines.tiny.build import ensure_tiny_model
        from pipelines.tiny.sdxl import TINY_SDXL

        root = Path(os.environ.get("VIVIDFLOW_MODELS", Path(__file__).resolve().parents[1] / ".cache" / "models"))
        model_path = ensure_tiny_model(TINY_SDXL, root / TINY_SDXL)
    else:
        print("building a random full-size SDXL checkpoint", file=sys.stderr, flush=True)
        model_path = random_sdxl_folder(workdir / "sdxl-random", device, seed=args.seed)
    case = f"{args.size}x{args.size}"
    report = {
        "title": "Background (SDXL base architecture)"
        + (": tiny model on CPU" if args.tiny else ": full size, random weights"),
        "label": "CPU tiny smoke test: checks the benchmark runs; not a performance result" if args.tiny else None,
        "benchmark": "sdxl-background",
        "mode": "tiny-cpu" if args.tiny else "full-gpu",
        "environment": environment(device),
        "settings": {
            "cases": [case],
            "case_names": {case: f"{case}, {args.steps} steps"},
            "description": f"{case}, {args.steps} steps, guidance {GUIDANCE}, DPM-Solver++",
            "ready_note": "SdxlBackground.from_config from the folder (page cache warm after the first variant)",
            "size": args.size,
            "steps": args.steps,
            "guidance_scale": GUIDANCE,
            "warmup": args.warmup,
            "runs": args.runs,
            "seed": args.seed,
            "weights": "tiny offline model" if args.tiny else "random, full size, loaded from a scratch folder",
        },
        "variants": [],
        "cold_start": None,
    }
    for variant in variant_configs(args.variant_names, parse_overrides(args.set_ours), cpu=args.tiny):
        report["variants"].append(run_variant(variant, args, device, model_path))
        write_json(report, args.json)
    report["wall_s"] = time.perf_counter() - started
    write_json(report, args.json)
    print(render(report))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
