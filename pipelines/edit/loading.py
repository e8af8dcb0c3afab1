"""Loading a Wan VACE pipeline for serving, with the image-to-video pipeline's recipe.

Weights come from a diffusers ``WanVACEPipeline`` folder (and optionally an experts folder); then
``pipelines.video.loading.configure_pipeline`` runs the same steps as for image-to-video: LoRA fused at
its per-expert scales and unloaded, quantisation layer by layer on the way to the device, attention
backend, regional compile, VAE tiling. Options a device cannot run are refused before weights are read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipelines.common.devices import DTYPES, resolve_device
from pipelines.common.errors import ModelNotFoundError
from pipelines.edit.config import EditModelConfig
from pipelines.video.loading import EXPERTS, check_runtime_options, configure_pipeline

log = logging.getLogger(__name__)


def load_vace_pipeline(config: EditModelConfig):
    from diffusers import AutoencoderKLWan, WanVACEPipeline, WanVACETransformer3DModel

    device = resolve_device(config.device)
    check_runtime_options(config, device)
    path = _require(Path(config.path), "model_index.json", "path")
    dtype = DTYPES[config.dtype]
    overrides: dict = {"vae": AutoencoderKLWan.from_pretrained(path, subfolder="vae", dtype=DTYPES[config.vae_dtype])}
    if config.experts_path:
        folder = Path(config.experts_path)
        for sub in EXPERTS:
            if (folder / sub / "config.json").exists():
                overrides[sub] = WanVACETransformer3DModel.from_pretrained(folder, subfolder=sub, dtype=dtype)
        if "transformer" not in overrides:
            _require(folder / "transformer", "config.json", "experts_path")
    pipe = WanVACEPipeline.from_pretrained(path, dtype=dtype, **overrides)
    if config.flow_shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=config.flow_shift)
    configure_pipeline(pipe, config, device)
    log.info("VACE pipeline from %s (%s experts)", path, 2 if pipe.transformer_2 is not None else 1)
    return pipe


def _require(folder: Path, marker: str, setting: str) -> Path:
    if not (folder / marker).exists():
        raise ModelNotFoundError(
            f"no checkpoint at {folder} (looked for {marker}); populate it ahead of time, for example "
            f"`hf download <model id> --local-dir {folder}`, or fix `{setting}` in the config"
        )
    return folder
