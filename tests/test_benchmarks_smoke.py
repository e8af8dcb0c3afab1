"""The GPU benchmarks' ``--tiny`` mode: the same code on the tiny offline models on the CPU, as CI runs it.

Each benchmark runs as its own process (as a user would start it) with a time limit; the test reads its
JSON report and checks that every stage was measured and has a numeric median.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import gradient_image

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(script: str, tmp_path: Path, timeout_s: int, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--tiny", "--json", str(out), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(out.read_text()), completed.stdout


def _numeric_median(summary: dict) -> bool:
    value = summary["median"]
    return isinstance(value, float) and math.isfinite(value) and value >= 0 and len(summary["runs"]) == 3


def test_video_benchmark_tiny(tmp_path):
    report, text = _run("gpu_video.py", tmp_path, 600)
    assert report["mode"] == "tiny-cpu"
    assert "not a performance result" in text
    assert [v["name"] for v in report["variants"]] == ["baseline", "ours"]
    for variant in report["variants"]:
        assert variant["status"] == "ok", variant["error"]
        stages = variant["results"]["9"]["stages"]
        expected = {"text_encode", "image_encode", "vae_decode", "mp4_export", "end_to_end"}
        assert expected <= set(stages)
        steps = [name for name in stages if name.startswith("step_")]
        assert steps == ["step_1_high_noise", "step_2_high_noise", "step_3_low_noise", "step_4_low_noise"]
        assert all(_numeric_median(summary) for summary in stages.values())
        assert len(variant["results"]["9"]["warmup_end_to_end_s"]) == 1
    # the CPU cannot run FP8 matmuls: the report says what it ran instead
    assert any("fp8_dynamic -> fp8_weight_only" in note for note in report["variants"][0]["substitutions"])
    cold = report["cold_start"]
    for scope in ("pipeline", "expert"):
        assert _numeric_median(cold[scope]["fuse_and_quantise_at_start_s"])
        assert _numeric_median(cold[scope]["from_prepared_folder_s"])
    assert "end_to_end" in text and "Cold start" in text


def test_video_benchmark_reports_refused_options(tmp_path):
    report, text = _run(
        "gpu_video.py",
        tmp_path,
        300,
        "--variants",
        "attention_cudnn,cuda_graphs",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--no-cold-start",
    )
    assert [v["status"] for v in report["variants"]] == ["refused", "refused"]
    assert "needs a CUDA GPU" in report["variants"][0]["error"]
    assert "refused" in text


def test_sdxl_benchmark_tiny(tmp_path):
    report, text = _run("sdxl_background.py", tmp_path, 600)
    assert "not a performance result" in text
    for variant in report["variants"]:
        assert variant["status"] == "ok", variant["error"]
        stages = variant["results"]["512x512"]["stages"]
        assert {"text_encode", "denoise", "denoise_per_step", "vae_decode", "end_to_end"} <= set(stages)
        assert all(_numeric_median(summary) for summary in stages.values())


def test_sdxl_options_the_config_lacks_are_reported_unavailable(tmp_path):
    """A variant naming a setting BackgroundModelConfig does not have is reported, not run (every variant the
    benchmark lists exists today, so a made-up one stands in)."""
    import torch

    from benchmarks.sdxl_background import run_variant

    variant = {"name": "imaginary", "overrides": {"warp_drive": True}, "settings": {"warp_drive": True}}
    record = run_variant(variant, None, torch.device("cpu"), tmp_path / "no-model")
    assert record["status"] == "unavailable" and "no warp_drive option" in record["error"]


def test_split_runs_merge_into_one_report(tmp_path):
    from benchmarks.common import merge, render

    _run(
        "gpu_video.py", tmp_path, 300, "--variants", "attention_sage", "--runs", "1", "--warmup", "0", "--no-cold-start"
    )
    first = tmp_path / "first.json"
    (tmp_path / "report.json").rename(first)
    _run("gpu_video.py", tmp_path, 300, "--variants", "cuda_graphs", "--runs", "1", "--warmup", "0", "--no-cold-start")
    merged = merge([first, tmp_path / "report.json"])
    assert [v["name"] for v in merged["variants"]] == ["attention_sage", "cuda_graphs"]
    assert "CUDA graphs" in render(merged)


# ---------------------------------------------------------------- the full-size build, checked without a GPU
def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_full_size_architectures_have_the_published_sizes():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from benchmarks import gpu_video
    from benchmarks import sdxl_background as sdxl_bench

    with init_empty_weights(include_buffers=False):
        expert = WanTransformer3DModel(**gpu_video.WAN_EXPERT)
        encoder = UMT5EncoderModel(UMT5Config(**gpu_video.UMT5_XXL))
        unet = UNet2DConditionModel(**sdxl_bench.SDXL_UNET)
    encoder.tie_weights()
    assert 14.2e9 < _count(expert) < 14.4e9  # Wan2.2-I2V-A14B: 14.3 B per expert
    assert 5.6e9 < _count(encoder) < 5.8e9  # UMT5-XXL encoder
    assert 2.55e9 < _count(unet) < 2.58e9  # SDXL base UNet


def test_random_weight_build_runs_through_the_production_steps_on_cpu(tmp_path):
    """The GPU build path (random weights, random LoRA, configure_pipeline, WanImageToVideo) at a small size."""
    import torch

    from benchmarks import gpu_video
    from pipelines.tiny.wan import tiny_wan_expert
    from pipelines.video.loading import configure_pipeline
    from pipelines.video.request import VideoRequest
    from pipelines.video.wan_i2v import WanImageToVideo

    cpu = torch.device("cpu")
    expert_config = {k: v for k, v in tiny_wan_expert().config.items() if not k.startswith("_")}
    text_config = {**gpu_video.UMT5_XXL, "vocab_size": 256, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2}
    text_config["num_heads"] = 4
    vae_config = {"base_dim": 3, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
    pipe = gpu_video.random_wan_pipeline(
        cpu, torch.float32, torch.float32, expert_config=expert_config, text_config=text_config, vae_config=vae_config
    )
    assert not any(p.is_meta for p in pipe.transformer.parameters())
    assert pipe.text_encoder.shared.weight is pipe.text_encoder.encoder.embed_tokens.weight
    assert pipe.transformer.blocks[0].attn1.to_q.weight.std() > 0
    lora = gpu_video.write_random_lora(tmp_path / "lora", rank=4, device=cpu, expert_config=expert_config)
    settings = {**gpu_video.BASELINE, "dtype": "float32", "quantize_experts": "int8_weight_only"}
    config = gpu_video.video_config(settings, path="<random weights>", device="cpu", lora_dir=lora)
    before = pipe.transformer_2.blocks[0].ffn.net[2].weight.detach().clone()
    configure_pipeline(pipe, config, cpu)
    after = pipe.transformer_2.blocks[0].ffn.net[2].weight
    assert type(after).__name__ == "Int8Tensor" and not torch.equal(after.dequantize(), before)  # fused, quantised
    result = WanImageToVideo(pipe)(VideoRequest(image=gradient_image(832, 480), duration_s=0.5))
    assert result.frames.shape == (9, 480, 832, 3) and len(result.step_timings_s) == 4


def test_random_sdxl_checkpoint_loads_through_the_service_loader(tmp_path):
    import torch

    from benchmarks import sdxl_background as sdxl_bench
    from pipelines.background.sdxl import BackgroundModelConfig, BackgroundRequest, SdxlBackground

    unet = {
        **sdxl_bench.SDXL_UNET,
        "block_out_channels": (16, 32, 32),
        "layers_per_block": 1,
        "transformer_layers_per_block": (1, 1, 1),
        "attention_head_dim": (2, 2, 4),
        "norm_num_groups": 8,
        "cross_attention_dim": 16 + 32,
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + 32,
    }
    small = {
        "unet": unet,
        "clip_l": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4},
        "clip_bigg": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
        "vae": {**sdxl_bench.SDXL_VAE, "block_out_channels": (4, 4, 8, 8), "layers_per_block": 1, "norm_num_groups": 2},
    }
    folder = sdxl_bench.random_sdxl_folder(tmp_path / "sdxl", torch.device("cpu"), small=small)
    config = BackgroundModelConfig(path=str(folder), device="cpu", dtype="float32", variant="fp16")
    result = SdxlBackground.from_config(config)(BackgroundRequest(prompt="beach", width=512, height=512, steps=4))
    assert result.image.size == (512, 512)


def test_merge_joins_the_sizes_of_one_variant_measured_in_separate_runs(tmp_path):
    from benchmarks.common import merge, render

    def report(frames: int, seconds: float) -> dict:
        stage = {"median": seconds, "min": seconds, "max": seconds, "runs": [seconds] * 3}
        variant = {
            "name": "baseline",
            "role": "baseline",
            "overrides": {},
            "substitutions": [],
            "status": "ok",
            "error": None,
            "load_s": 1.0,
            "results": {str(frames): {"stages": {"end_to_end": stage}, "peak_gpu_mem_gib": None}},
        }
        return {
            "title": "t",
            "environment": {
                "device": "GPU X",
                "date_utc": "d",
                "git": "g",
                "versions": dict.fromkeys(("torch", "diffusers", "transformers", "torchao"), "1"),
            },
            "settings": {
                "cases": [str(frames)],
                "case_names": {str(frames): f"{frames} frames"},
                "description": "x",
                "runs": 3,
                "warmup": 1,
            },
            "variants": [variant],
        }

    paths = []
    for frames, seconds in ((49, 10.0), (81, 20.0)):
        paths.append(tmp_path / f"{frames}.json")
        paths[-1].write_text(json.dumps(report(frames, seconds)))
    merged = merge(paths)
    assert merged["settings"]["cases"] == ["49", "81"]
    assert len(merged["variants"]) == 1 and set(merged["variants"][0]["results"]) == {"49", "81"}
    text = render(merged)
    assert "10.000" in text and "20.000" in text
