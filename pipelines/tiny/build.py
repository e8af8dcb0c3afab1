"""Tiny random-weight models with the production architectures, built offline.

The service, its tests and a new user's first run all use these: the same diffusers/transformers
classes as the real checkpoints, saved in the same folder layout, read back by the same loaders.
Building is seeded, so two builds produce identical weights, and takes a few seconds on a CPU.

    python -m pipelines.tiny --out .cache/models
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipelines.tiny.clip import TINY_CLIP, build_tiny_clip
from pipelines.tiny.qwen import TINY_QWEN, build_tiny_qwen
from pipelines.tiny.sdxl import TINY_SDXL, build_tiny_sdxl
from pipelines.tiny.segmentation import TINY_BIREFNET, TINY_U2NET, build_tiny_birefnet, build_tiny_u2net
from pipelines.tiny.wan import TINY_WAN_I2V, TINY_WAN_LORA, build_wan_i2v, build_wan_lora
from pipelines.tiny.wan_loras import TINY_WAN_MOTION_LORAS, build_tiny_motion_loras
from pipelines.tiny.wan_vace import TINY_WAN_VACE, build_wan_vace

BUILD_MARKER = "vividflow-tiny.json"
BUILDER_VERSION = 2  # 2: one-block Wan experts, a Wan VAE without residual blocks


_BUILDERS = {
    TINY_WAN_I2V: build_wan_i2v,
    TINY_WAN_LORA: build_wan_lora,
    TINY_WAN_VACE: build_wan_vace,
    TINY_WAN_MOTION_LORAS: build_tiny_motion_loras,
    TINY_QWEN: build_tiny_qwen,
    TINY_CLIP: build_tiny_clip,
    TINY_SDXL: build_tiny_sdxl,
    TINY_U2NET: build_tiny_u2net,
    TINY_BIREFNET: build_tiny_birefnet,
}


def ensure_tiny_model(name: str, target: Path, seed: int = 0) -> Path:
    """Return ``target``, building tiny model ``name`` there first if it is missing or outdated.

    Builds go to a temporary folder that is renamed into place, so replicas racing to build the same
    model never read a half-written folder.
    """
    target = Path(target)
    marker = target / BUILD_MARKER
    if marker.exists() and json.loads(marker.read_text()).get("version") == BUILDER_VERSION:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _BUILDERS[name](staging, seed=seed)
        (staging / BUILD_MARKER).write_text(json.dumps({"version": BUILDER_VERSION, "seed": seed}))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / BUILD_MARKER).exists():  # another process won the race only if it finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the tiny offline models the local profile runs on.")
    parser.add_argument("--out", type=Path, default=Path(".cache/models"), help="folder to build into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    for name in _BUILDERS:
        if args.force:
            shutil.rmtree(args.out / name, ignore_errors=True)
        print(f"{name}: {ensure_tiny_model(name, args.out / name, seed=args.seed)}")


if __name__ == "__main__":
    main()
