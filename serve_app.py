"""Typed application builder: ``serve run configs/local.yaml`` imports ``serve_app:build_app``.

The YAML's ``args`` become an :class:`AppConfig` (unknown keys rejected) before anything starts;
relative paths are resolved against the directory ``serve run`` was started from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployments.builder import build_application
from deployments.config import AppConfig, load_app_config


def build_app(args: dict[str, Any]):
    config: AppConfig = load_app_config(args).with_absolute_paths(Path.cwd())
    return build_application(config)
