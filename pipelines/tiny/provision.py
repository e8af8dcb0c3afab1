"""Build the tiny models a config names (its ``tiny_model`` fields) before the production loader reads it.

Production loaders only read checkpoints; they never build anything. The serving layer (each replica at
start) and tests call :func:`provision_tiny_models` first, so a config that names a tiny model finds it
in place, and a production config, which names none, is passed through untouched.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.background.clip_analysis import AnalyzerConfig
from pipelines.background.sdxl import BackgroundModelConfig
from pipelines.background.segmentation.chain import BIREFNET_FILE, U2NET_FILE, SegmentationConfig
from pipelines.common.errors import ModelNotFoundError
from pipelines.edit.config import EditModelConfig
from pipelines.prompts.expansion import ExpanderConfig
from pipelines.tiny.build import BUILD_MARKER, ensure_tiny_model
from pipelines.tiny.clip import TINY_CLIP
from pipelines.tiny.qwen import TINY_QWEN
from pipelines.tiny.sdxl import TINY_SDXL
from pipelines.tiny.wan import TINY_WAN_I2V
from pipelines.tiny.wan_loras import TINY_WAN_MOTION_LORAS
from pipelines.tiny.wan_vace import TINY_WAN_VACE
from pipelines.video.config import VideoModelConfig

ModelConfig = (
    EditModelConfig | VideoModelConfig | BackgroundModelConfig | AnalyzerConfig | ExpanderConfig | SegmentationConfig
)


def provision_tiny_models(config: ModelConfig) -> None:
    """Build each tiny model ``config`` names into its configured folder, if it is missing or outdated."""
    if isinstance(config, EditModelConfig):  # before VideoModelConfig: it extends it
        _build(config.tiny_model, TINY_WAN_VACE, config.path, "video editing")
    elif isinstance(config, VideoModelConfig):
        _build(config.tiny_model, TINY_WAN_I2V, config.path, "video generation")
        if config.loras is not None:
            _build(config.loras.tiny_model, TINY_WAN_MOTION_LORAS, config.loras.path, "motion LoRAs")
    elif isinstance(config, BackgroundModelConfig):
        _build(config.tiny_model, TINY_SDXL, config.path, "backgrounds")
    elif isinstance(config, AnalyzerConfig):
        _build(config.tiny_model, TINY_CLIP, config.checkpoint, "image analysis")
    elif isinstance(config, ExpanderConfig):
        _build(config.tiny_model, TINY_QWEN, config.path, "prompt expansion")
    elif isinstance(config, SegmentationConfig):
        for tiny, path, filename in (
            (config.birefnet_tiny_model, config.birefnet_path, BIREFNET_FILE),
            (config.u2net_tiny_model, config.u2net_path, U2NET_FILE),
        ):
            folder = Path(path).expanduser() if path else None
            # Never build over a folder someone filled by hand: only a missing file or an earlier build is replaced.
            if tiny and folder and (not (folder / filename).exists() or (folder / BUILD_MARKER).exists()):
                ensure_tiny_model(tiny, folder)
    else:
        raise TypeError(f"no tiny models for {type(config).__name__}")


def _build(name: str | None, expected: str, path: str, task: str) -> None:
    if not name:
        return
    if name != expected:
        raise ModelNotFoundError(
            f"unknown tiny model {name!r} for {task}; the one built here is {expected!r}", field="tiny_model"
        )
    ensure_tiny_model(name, Path(path))
