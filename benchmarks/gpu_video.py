"""Image-to-video benchmark: VividFlow's recipe against the fastest configuration the service offers.

Full size (needs one CUDA GPU, Hopper for FP8): both Wan2.2-I2V-A14B experts (14.3 B parameters each),
the UMT5-XXL text encoder and the Wan VAE are built with random weights directly in GPU memory (the
architectures of the real checkpoints, no download, no host copy), a random rank-128 LoRA stands in for the
4-step LoRA, and each variant goes through the project's own code: ``configure_pipeline`` (LoRA fuse,
quantisation, attention backend, compile, VAE options: the same function the loader calls) and
``WanImageToVideo`` (the production denoise loop), then ``export_mp4``. Random weights draw noise, but
every matrix product, attention and convolution is the real one at the real size.

Variants, each a ``VideoModelConfig``:
  baseline    VividFlow: bf16 experts, LoRA fused at 3.0/1.0, FP8 dynamic (torchao) in eager mode,
              INT8 text encoder, VAE tiling + slicing, default attention
  ours        the fastest combination of the options below
  <ablation>  the baseline with one option changed, so each option's gain is known on its own

Every variant renders 832x480 at 49 and 81 frames, 4 steps, guidance 1 (one forward per step); after the
warm-up run(s) per size, the median of the timed runs is reported per stage (text encode, image encode,
each denoising step with its expert, VAE decode, MP4 export), end to end, with the peak GPU memory.

    python benchmarks/gpu_video.py --json results/gpu_video.json                    # everything (long)
    python benchmarks/gpu_video.py --variants baseline,ours --json results/a.json   # the headline only
    python benchmarks/gpu_video.py --variants compile,attention_cudnn --frames 49 --json results/b.json
    python benchmarks/gpu_video.py --cold-start-only --json results/cold.json       # time-to-ready
    python benchmarks/gpu_video.py --merge results/a.json results/b.json            # one report from several
    python benchmarks/gpu_video.py --tiny                                           # CPU smoke test (CI)

``--tiny`` runs the same code on the tiny offline model on the CPU, with 9 frames, 1 warm-up and 3 runs.
Its numbers exercise the benchmark, they say nothing about performance.
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
    materialize_random,
    merge,
    parse_overrides,
    render,
    summarise,
    summarise_runs,
    synthetic_photo,
    write_json,
)

# Wan2.2-I2V-A14B, one expert (diffusers WanTransformer3DModel config): 14.29 B parameters.
WAN_EXPERT = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 36,  # 16 noise latent + 4 mask + 16 image latent
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "rope_max_seq_len": 1024,
}
# google/umt5-xxl, encoder only (transformers UMT5Config): 5.68 B parameters with the tied embedding.
UMT5_XXL = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "pad_token_id": 0,
    "eos_token_id": 1,
}
# The Wan2.1 VAE is diffusers' AutoencoderKLWan with its default arguments (base_dim 96, z_dim 16).
BOUNDARY_RATIO = 0.9
FLOW_SHIFT = 5.0
LORA_TARGETS = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "ffn.net.0.proj",
    "ffn.net.2",
)

PROMPT = "the subject turns the head slowly and smiles, hair moves gently in the wind, soft light, camera push in"
WIDTH, HEIGHT, STEPS, FPS = 832, 480, 4, 16

BASELINE = {
    "dtype": "bfloat16",
    "vae_dtype": "float32",
    "quantize_experts": "fp8_dynamic",
    "quantize_text_encoder": "int8_weight_only",
    "vae_tiling": True,
    "vae_slicing": True,
    "compile": "none",
    "attention_backend": None,
}
# Each applied alone on top of the baseline.
ABLATIONS = {
    "compile": {"compile": "regional"},
    "cuda_graphs": {"compile": "regional", "compile_mode": "reduce-overhead"},
    "attention_cudnn": {"attention_backend": "_native_cudnn"},
    "attention_flash3": {"attention_backend": "_flash_3"},
    "attention_sage": {"attention_backend": "sage"},
    "vae_untiled": {"vae_tiling": False, "vae_slicing": False},
    "vae_bf16": {"vae_dtype": "bfloat16"},
    "text_encoder_fp8": {"quantize_text_encoder": "fp8_weight_only"},
}
OURS = {
    "compile": "regional",
    "attention_backend": "_native_cudnn",
    "vae_tiling": False,
    "vae_slicing": False,
    "vae_dtype": "bfloat16",
    "quantize_text_encoder": "fp8_weight_only",
}
# What --tiny changes so the baseline and ours can run on a CPU at all (listed in the report).
CPU_SUBSTITUTES = {
    ("quantize_experts", "fp8_dynamic"): (
        "fp8_weight_only",
        "FP8 matmuls need compute capability 8.9; FP8 weight-only keeps the FP8 weight format",
    ),
    ("attention_backend", "_native_cudnn"): (None, "cuDNN attention needs a CUDA GPU"),
    ("compile_mode", "reduce-overhead"): ("default", "CUDA graphs need a CUDA GPU"),
}


# ---------------------------------------------------------------- configs
def variant_configs(names: list[str], ours_overrides: dict, cpu: bool) -> list[dict]:
    """``[{name, role, overrides, settings, substitutions}]`` for the requested variants, baseline first."""
    baseline, base_subs = _substituted(BASELINE, cpu)
    ours_settings, ours_subs = _substituted({**BASELINE, **OURS, **ours_overrides}, cpu)
    out = []
    for name in names:
        if name == "baseline":
            out.append(_variant(name, "baseline", {}, baseline, base_subs))
        elif name == "ours":
            out.append(_variant(name, "ours", {**OURS, **ours_overrides}, ours_settings, ours_subs))
        else:  # an ablation keeps its own option even where it cannot run, to be reported as refused
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


def video_config(settings: dict, *, path: str, device: str, lora_dir: Path | None, prequantized: Path | None = None):
    from pipelines.video.config import LoraFuseConfig, VideoModelConfig

    lora = None
    if lora_dir is not None:
        lora = LoraFuseConfig(path=str(lora_dir), weight_name=LORA_FILE, scale_high_noise=3.0, scale_low_noise=1.0)
    extra = {"prequantized_path": str(prequantized)} if prequantized else {}
    return VideoModelConfig(path=path, device=device, lora=lora, **settings, **extra)


LORA_FILE = "pytorch_lora_weights.safetensors"


# ---------------------------------------------------------------- random full-size build
def random_expert(device, dtype, seed: int, config: dict | None = None):
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights(include_buffers=False):
        expert = WanTransformer3DModel(**(config or WAN_EXPERT))
    materialize_random(expert, device, dtype, keep_fp32=set(expert._keep_in_fp32_modules), seed=seed)
    return expert


def random_text_encoder(device, dtype, seed: int, config: dict | None = None):
    import torch
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    with init_empty_weights(include_buffers=False):
        encoder = UMT5EncoderModel(UMT5Config(**(config or UMT5_XXL)))
    encoder.tie_weights()  # the encoder's token embedding is the shared one, as in the checkpoint
    # transformers keeps T5's `wo` in float32 for float16 only (checked on 5.23)
    keep = set(encoder._keep_in_fp32_modules or ()) if dtype == torch.float16 else set()
    materialize_random(encoder, device, dtype, keep_fp32=keep, seed=seed)
    return encoder


def random_wan_pipeline(
    device, dtype, vae_dtype, *, seed: int = 0, expert_config=None, text_config=None, vae_config=None
):
    """Both experts, UMT5-XXL and the Wan VAE, random, in GPU memory: a WanImageToVideoPipeline.

    The ``*_config`` arguments replace the full-size architectures (tests build a small one on the CPU).
    """
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline
    from transformers import AutoTokenizer

    from pipelines.tiny.build import TINY_WAN_I2V, ensure_tiny_model

    # Only the tokenizer comes from the tiny model: prompts are padded to 512 tokens either way.
    tokenizer = AutoTokenizer.from_pretrained(
        ensure_tiny_model(TINY_WAN_I2V, _tiny_root() / TINY_WAN_I2V) / "tokenizer"
    )
    torch.manual_seed(seed)
    with torch.device(device):
        vae = AutoencoderKLWan(**(vae_config or {})).eval()
    vae.to(vae_dtype)
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT
    )
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=random_text_encoder(device, dtype, seed + 1, text_config),
        vae=vae,
        scheduler=scheduler,
        transformer=random_expert(device, dtype, seed + 2, expert_config),
        transformer_2=random_expert(device, dtype, seed + 3, expert_config),
        boundary_ratio=BOUNDARY_RATIO,
    )


def write_random_lora(folder: Path, *, rank: int, device, expert_config: dict | None = None, seed: int = 0) -> Path:
    """A diffusers-format LoRA over attention and FFN of every block, standing in for the 4-step LoRA."""
    import torch
    from safetensors.torch import save_file

    config = expert_config or WAN_EXPERT
    inner = config["num_attention_heads"] * config["attention_head_dim"]
    shapes = {name: (inner, inner) for name in LORA_TARGETS if name.startswith("attn")}
    shapes["ffn.net.0.proj"] = (inner, config["ffn_dim"])
    shapes["ffn.net.2"] = (config["ffn_dim"], inner)
    generator = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for block in range(config["num_layers"]):
        for name, (fan_in, fan_out) in shapes.items():
            key = f"transformer.blocks.{block}.{name}"
            down = torch.empty(rank, fan_in, device=device, dtype=torch.bfloat16).normal_(
                0, fan_in**-0.5, generator=generator
            )
            up = torch.empty(fan_out, rank, device=device, dtype=torch.bfloat16).normal_(
                0, 0.01 / rank**0.5, generator=generator
            )
            tensors[f"{key}.lora_A.weight"] = down.cpu()
            tensors[f"{key}.lora_B.weight"] = up.cpu()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / LORA_FILE, metadata={"format": "pt"})
    return folder


def _tiny_root() -> Path:
    return Path(os.environ.get("VIVIDFLOW_MODELS", Path(__file__).resolve().parents[1] / ".cache" / "models"))


# ---------------------------------------------------------------- measuring
def build_video(variant: dict, args, device, lora_dir: Path | None):
    """The variant's WanImageToVideo, and the seconds it took to be ready."""
    import torch

    from pipelines.common.devices import DTYPES
    from pipelines.video.loading import check_runtime_options, configure_pipeline
    from pipelines.video.wan_i2v import WanImageToVideo

    if args.tiny:
        config = video_config(variant["settings"], path=str(args.tiny_path), device="cpu", lora_dir=lora_dir)
        check_runtime_options(config, device)
        started = time.perf_counter()
        video = WanImageToVideo.from_config(config)
        return video, time.perf_counter() - started
    config = video_config(variant["settings"], path="<random weights>", device="cuda", lora_dir=lora_dir)
    check_runtime_options(config, device)  # refuse before spending a minute building
    torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    pipe = random_wan_pipeline(device, DTYPES[config.dtype], DTYPES[config.vae_dtype], seed=args.seed)
    configure_pipeline(pipe, config, device)
    torch.cuda.synchronize(device)
    return WanImageToVideo(pipe, max_sequence_length=config.max_sequence_length), time.perf_counter() - started


def measure(video, args, device, workdir: Path) -> dict:
    from pipelines.video.request import VideoRequest

    image = synthetic_photo(WIDTH, HEIGHT, seed=args.seed)
    results = {}
    for frames in args.frames:
        request = VideoRequest(image=image, prompt=PROMPT, duration_s=(frames - 1) / FPS, steps=STEPS, seed=args.seed)
        warmup = [one_run(video, request, frames, device, workdir)[0]["end_to_end"] for _ in range(args.warmup)]
        samples, peaks = [], []
        for _ in range(args.runs):
            stages, peak = one_run(video, request, frames, device, workdir)
            samples.append(stages)
            peaks.append(peak)
        results[str(frames)] = {
            "warmup_end_to_end_s": warmup,
            "stages": summarise_runs(samples),
            "peak_gpu_mem_gib": summarise(peaks) if peaks[0] is not None else None,
        }
        _progress(f"    {frames} frames: end to end {results[str(frames)]['stages']['end_to_end']['median']:.3f} s")
    return results


def one_run(video, request, frames: int, device, workdir: Path) -> tuple[dict, float | None]:
    import torch

    from pipelines.common.media import export_mp4

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    result = video(request)
    export_s = export_mp4(result.frames, workdir / "bench.mp4", fps=result.fps)
    end_to_end = time.perf_counter() - started
    if result.frames.shape != (frames, HEIGHT, WIDTH, 3):
        raise RuntimeError(f"expected {frames}x{HEIGHT}x{WIDTH} frames, got {result.frames.shape}")
    stages = {"text_encode": result.timings_s["text_encode"], "image_encode": result.timings_s["image_encode"]}
    for index, (expert, seconds) in enumerate(zip(result.experts_per_step, result.step_timings_s, strict=True)):
        stages[f"step_{index + 1}_{expert}"] = seconds
    stages.update(vae_decode=result.timings_s["vae_decode"], mp4_export=export_s, end_to_end=end_to_end)
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return stages, peak


def run_variant(variant: dict, args, device, workdir: Path, lora_dir: Path | None) -> dict:
    import torch

    from pipelines.common.errors import UnsupportedHardwareError

    record = {**variant, "status": "ok", "error": None, "load_s": None, "load_peak_gpu_mem_gib": None, "results": {}}
    _progress(f"variant {variant['name']}: {variant['overrides'] or 'VividFlow recipe'}")
    video = None
    try:
        video, record["load_s"] = build_video(variant, args, device, lora_dir)
        if device.type == "cuda":  # the load peak: bf16 experts before quantisation, the LoRA while fusing
            record["load_peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        _progress(f"    ready in {record['load_s']:.1f} s")
        record["results"] = measure(video, args, device, workdir)
    except UnsupportedHardwareError as exc:
        record.update(status="refused", error=describe_error(exc))
    except Exception as exc:  # an OOM or a compile failure in one variant must not lose the others
        record.update(status="failed", error=describe_error(exc))
    if record["error"]:
        _progress(f"    {record['status']}: {record['error']}")
    del video
    free_memory()
    return record


# ---------------------------------------------------------------- cold start
def cold_start(args, device, workdir: Path, lora_dir: Path, settings: dict) -> dict:
    """Time to ready: fuse-and-quantise at start against loading a prepared folder."""
    if args.tiny:
        from pipelines.tiny.wan import tiny_wan_expert

        # The full-size routine too, on the tiny expert, so the CPU smoke test runs its code.
        tiny_config = {k: v for k, v in tiny_wan_expert().config.items() if not k.startswith("_")}
        return {
            "pipeline": _cold_start_pipeline(args, workdir, lora_dir, settings),
            "expert": cold_start_expert(args, device, workdir, lora_dir, settings, tiny_config),
        }
    return {"pipeline": None, "expert": cold_start_expert(args, device, workdir, lora_dir, settings)}


def _cold_start_pipeline(args, workdir: Path, lora_dir: Path, settings: dict) -> dict:
    """Tiny model, whole pipeline, through WanImageToVideo.from_config both ways."""
    from pipelines.video.prepare_checkpoint import prepare_checkpoint
    from pipelines.video.wan_i2v import WanImageToVideo

    config = video_config(settings, path=str(args.tiny_path), device="cpu", lora_dir=lora_dir)
    prepared_dir = workdir / "prepared"
    started = time.perf_counter()
    marker = prepare_checkpoint(config, prepared_dir, force=True)
    prepare_s = time.perf_counter() - started
    prepared = config.model_copy(update={"prequantized_path": str(prepared_dir)})
    at_start, from_folder = [], []
    for _ in range(args.cold_start_repeats):
        for target, cfg in ((at_start, config), (from_folder, prepared)):
            started = time.perf_counter()
            video = WanImageToVideo.from_config(cfg)
            target.append(time.perf_counter() - started)
            del video
            free_memory()
    return {
        "scope": "whole pipeline (tiny model): experts, text encoder, VAE",
        "settings": {"quantize_experts": config.quantize_experts, "lora": True},
        "storage": marker["experts_storage"],
        "note": marker["note"],
        "prepare_s": prepare_s,
        "fuse_and_quantise_at_start_s": summarise(at_start),
        "from_prepared_folder_s": summarise(from_folder),
        "page_cache": "warm (files just written)",
    }


def cold_start_expert(args, device, workdir: Path, lora_dir: Path, settings: dict, expert_config: dict | None = None):
    """One full-size expert: read bf16 + fuse LoRA + quantise, against reading the prepared (quantised) one.

    The whole pipeline does not fit the device machine's disk in bf16 (2 x 28.6 GB experts + 11 GB text
    encoder); the two experts are the same size and load the same way, and the text encoder and VAE load
    identically on both paths, so the difference between the paths is twice this expert's.
    """
    import torch
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

    from pipelines.common.devices import DTYPES
    from pipelines.video.loading import fuse_lora, quantize_module
    from pipelines.video.prepare_checkpoint import save_torchao_expert, torchao_round_trip
    from pipelines.video.prepared_experts import load_torchao_expert

    config = video_config(settings, path="<random weights>", device=device.type, lora_dir=lora_dir)
    dtype = DTYPES[config.dtype]
    expert_config = expert_config or WAN_EXPERT
    need = 1.1 * 3 * _parameter_count(expert_config)  # bytes: the bf16 source, the prepared copy (<= 1 B/param)
    free = shutil.disk_usage(workdir).free
    if free < need:
        return {"status": "skipped", "error": f"needs {need / GIB:.0f} GiB free under {workdir}, has {free / GIB:.0f}"}
    storable, reason = torchao_round_trip(config.quantize_experts, device, dtype)
    source, prepared = workdir / "source", workdir / "prepared"
    _progress("cold start: writing one random bf16 expert")
    expert = random_expert(device, dtype, args.seed + 2, expert_config)
    expert.save_pretrained(source / "transformer", safe_serialization=True)
    del expert
    free_memory()
    evicted = _evict_from_page_cache(source)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def read_fuse_quantise():
        started = time.perf_counter()
        loaded = WanTransformer3DModel.from_pretrained(source, subfolder="transformer", dtype=dtype)
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True)
        shell = WanImageToVideoPipeline(
            tokenizer=None, text_encoder=None, vae=None, scheduler=scheduler, transformer=loaded, transformer_2=None
        )
        fuse_lora(shell, config)
        loaded.to(device)
        if config.quantize_experts != "none":
            quantize_module(loaded, config.quantize_experts, device)
        sync()
        return loaded, time.perf_counter() - started

    _progress("cold start: fuse and quantise at start")
    at_start = []
    for repeat in range(args.cold_start_repeats):
        loaded, seconds = read_fuse_quantise()
        at_start.append(seconds)
        if repeat == args.cold_start_repeats - 1:
            started = time.perf_counter()
            if storable:
                save_torchao_expert(loaded, prepared / "transformer")
            else:
                loaded.save_pretrained(prepared / "transformer", safe_serialization=True)
            save_s = time.perf_counter() - started
        del loaded
        free_memory()
        _evict_from_page_cache(source)
    _evict_from_page_cache(prepared)
    _progress("cold start: from the prepared expert")
    from_folder = []
    for _ in range(args.cold_start_repeats):
        started = time.perf_counter()
        if storable:
            loaded = load_torchao_expert(prepared / "transformer", device)
        else:
            loaded = WanTransformer3DModel.from_pretrained(prepared, subfolder="transformer", dtype=dtype).to(device)
            quantize_module(loaded, config.quantize_experts, device)
        sync()
        from_folder.append(time.perf_counter() - started)
        del loaded
        free_memory()
        _evict_from_page_cache(prepared)
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(prepared, ignore_errors=True)
    return {
        "status": "ok",
        "scope": "one expert (the other is the same size); text encoder and VAE load identically on both paths",
        "settings": {"quantize_experts": config.quantize_experts, "lora_rank": args.lora_rank},
        "storage": "torchao" if storable else f"diffusers, quantised at load ({reason})",
        "save_prepared_s": save_s,
        "fuse_and_quantise_at_start_s": summarise(at_start),
        "from_prepared_folder_s": summarise(from_folder),
        "page_cache": "evicted before each read (posix_fadvise)" if evicted else "could not be evicted: warm",
    }


def _parameter_count(config: dict) -> int:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights(include_buffers=False):
        model = WanTransformer3DModel(**config)
    return sum(p.numel() for p in model.parameters())


def _evict_from_page_cache(folder: Path) -> bool:
    """Ask the kernel to drop these files' cached pages, so the next read comes from the disk (best effort)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    try:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                handle = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(handle)
                    os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(handle)
    except OSError:
        return False
    return True


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny offline model on the CPU (smoke test)")
    parser.add_argument("--variants", default=None, help="comma list: baseline, ours, ablation names, or 'all'")
    parser.add_argument("--frames", default=None, help="comma list of frame counts (4k+1); default 49,81 (tiny: 9)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs per size, not timed")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per size (the median is reported)")
    parser.add_argument("--set-ours", action="append", metavar="KEY=VALUE", help="change one option of 'ours'")
    parser.add_argument(
        "--cold-start", action="store_true", help="also measure time-to-ready (on by default in --tiny)"
    )
    parser.add_argument("--cold-start-only", action="store_true", help="only the time-to-ready measurement")
    parser.add_argument("--no-cold-start", action="store_true", help="skip time-to-ready (also in --tiny)")
    parser.add_argument("--cold-start-repeats", type=int, default=None, help="default 3 (tiny), 1 (GPU)")
    parser.add_argument("--lora-rank", type=int, default=128, help="rank of the random LoRA (full size)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (MP4s, LoRA, checkpoints)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None, help="write the full results here")
    parser.add_argument("--merge", type=Path, nargs="+", help="print one report from earlier --json files")
    args = parser.parse_args(argv)
    args.frames = [int(f) for f in (args.frames or ("9" if args.tiny else "49,81")).split(",")]
    for frames in args.frames:
        if frames < 9 or (frames - 1) % 4 or frames > 81:
            parser.error(f"--frames: {frames} is not one of 9, 13, ..., 81")
    default_variants = "baseline,ours" if args.tiny else "all"
    names = (args.variants or default_variants).split(",")
    if names == ["all"]:
        names = ["baseline", "ours", *ABLATIONS]
    unknown = [n for n in names if n not in ("baseline", "ours", *ABLATIONS)]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from baseline, ours, {', '.join(ABLATIONS)}")
    args.variant_names = [] if args.cold_start_only else names
    args.cold_start = (args.cold_start or args.cold_start_only or args.tiny) and not args.no_cold_start
    args.cold_start_repeats = args.cold_start_repeats or (3 if args.tiny else 1)
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

    if args.tiny:
        torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU visible: run with --tiny for the CPU smoke test")
        device = torch.device("cuda")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vividflow-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.tiny:
        from pipelines.tiny.build import TINY_WAN_I2V, TINY_WAN_LORA, ensure_tiny_model

        args.tiny_path = ensure_tiny_model(TINY_WAN_I2V, _tiny_root() / TINY_WAN_I2V)
        lora_dir = ensure_tiny_model(TINY_WAN_LORA, _tiny_root() / TINY_WAN_LORA)
    else:
        _progress(f"writing a random rank-{args.lora_rank} LoRA")
        lora_dir = write_random_lora(workdir / "lora", rank=args.lora_rank, device=device, seed=args.seed)
    variants = variant_configs(args.variant_names, parse_overrides(args.set_ours), cpu=args.tiny)
    report = {
        "title": "Image to video (Wan2.2-I2V-A14B architecture)"
        + (": tiny model on CPU" if args.tiny else ": full size, random weights"),
        "label": "CPU tiny smoke test: checks the benchmark runs; not a performance result" if args.tiny else None,
        "benchmark": "wan-i2v",
        "mode": "tiny-cpu" if args.tiny else "full-gpu",
        "environment": environment(device),
        "settings": {
            "width": WIDTH,
            "height": HEIGHT,
            "frames": args.frames,
            "cases": [str(frames) for frames in args.frames],
            "case_names": {str(frames): f"{frames} frames" for frames in args.frames},
            "description": f"{WIDTH}x{HEIGHT}, {STEPS} steps, guidance 1.0, 16 fps",
            "ready_note": "WanImageToVideo.from_config on the tiny folder (the first variant also pays imports)"
            if args.tiny
            else "random weights built on the GPU, then configure_pipeline: LoRA fuse, quantise, attention, compile",
            "steps": STEPS,
            "guidance_scale": 1.0,
            "warmup": args.warmup,
            "runs": args.runs,
            "seed": args.seed,
            "weights": "tiny offline model" if args.tiny else "random, full size, built on the GPU",
            "lora": "tiny LoRA" if args.tiny else f"random rank {args.lora_rank}, {len(LORA_TARGETS)} layers per block",
        },
        "variants": [],
        "cold_start": None,
    }
    for variant in variants:
        report["variants"].append(run_variant(variant, args, device, workdir, lora_dir))
        write_json(report, args.json)  # keep what is done if a later variant kills the process
    if args.cold_start:
        baseline, _ = _substituted(BASELINE, args.tiny)
        try:
            report["cold_start"] = cold_start(args, device, workdir, lora_dir, baseline)
        except Exception as exc:
            report["cold_start"] = {"expert": {"status": "skipped", "error": describe_error(exc)}}
    report["wall_s"] = time.perf_counter() - started
    write_json(report, args.json)
    print(render(report))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
