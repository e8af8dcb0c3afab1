"""Motion LoRA libraries for tests: the tiny shipped library, copied, and made-up bad files beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_LIBRARY = REPO / ".cache" / "models" / "tiny-wan-motion-loras"
TINY_FILES = ("tiny-orbit.safetensors", "tiny-dolly_high_noise.safetensors", "tiny-dolly_low_noise.safetensors")


def tiny_library() -> Path:
    from pipelines.tiny.build import ensure_tiny_model
    from pipelines.tiny.wan_loras import TINY_WAN_MOTION_LORAS

    return ensure_tiny_model(TINY_WAN_MOTION_LORAS, TINY_LIBRARY)


def library_copy(folder: Path, extra_entries: list[dict] | None = None) -> Path:
    """The tiny library's files and manifest in ``folder``, with ``extra_entries`` appended to the manifest."""
    source = tiny_library()
    folder.mkdir(parents=True, exist_ok=True)
    for name in TINY_FILES:
        shutil.copy(source / name, folder / name)
    manifest = yaml.safe_load((source / "manifest.yaml").read_text())
    manifest["loras"].extend(extra_entries or [])
    write_manifest(folder, manifest["loras"])
    return folder


def write_manifest(folder: Path, entries: list[dict]) -> None:
    (folder / "manifest.yaml").write_text(yaml.safe_dump({"loras": entries}, sort_keys=False))


def entry(lora_id: str, **fields) -> dict:
    return {"id": lora_id, "name": lora_id, **fields}
