from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """The tiny models live in the repo's cache (built by scripts/setup.sh), rebuilt here if missing."""
    from pipelines.tiny.build import TINY_WAN_I2V, ensure_tiny_model

    root = REPO / ".cache" / "models"
    ensure_tiny_model(TINY_WAN_I2V, root / TINY_WAN_I2V)
    return root


@pytest.fixture(scope="session")
def tiny_wan_path(tiny_models_dir: Path) -> Path:
    from pipelines.tiny.build import TINY_WAN_I2V

    return tiny_models_dir / TINY_WAN_I2V


@pytest.fixture(scope="session")
def video_model_config(tiny_wan_path: Path):
    from pipelines.video.config import VideoModelConfig

    return VideoModelConfig(path=str(tiny_wan_path), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def wan_pipeline(video_model_config):
    from pipelines.video.wan_i2v import WanImageToVideo

    return WanImageToVideo.from_config(video_model_config)
