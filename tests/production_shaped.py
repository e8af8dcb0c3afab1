"""A "production-shaped" Serve config: configs/production.yaml with tiny models, for one-machine rehearsals.

Everything that decides where and how replicas are scheduled is kept as production has it: the set of
deployments, their GPU fractions, replica counts, ``max_ongoing_requests``, health-check and shutdown settings,
the job-queue settings, the proxy location and the request timeout. What cannot exist on a CI machine is
swapped out: the checkpoints (the tiny random-weight models of configs/local.yaml, on CPU), the job store's
Redis host (a local server, or SQLite), the results volume (a temporary folder), the HTTP bind address
(loopback) and the CPU reservations (scaled down so that every replica fits on 2 cores).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from deployments.config import AppConfig, load_app_config

REPO = Path(__file__).resolve().parents[1]
TINY_WAN = "tiny-wan2.2-i2v"
# Production reserves 4 CPUs per video replica and 0.5-1 per other replica; here 2 cores hold them all.
VIDEO_NUM_CPUS = 0.25
OTHER_NUM_CPUS = 0.1
# Keys of a model section that name a file or folder (relative ones are resolved against the repository).
_PATH_KEYS = ("path", "checkpoint", "config_path")


def load_profile(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())


def app_args(document: dict[str, Any]) -> dict[str, Any]:
    return document["applications"][0]["args"]


def deployment_sections(args: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{section name: its deployment options}`` for every deployment the args configure."""
    return {
        name: section["deployment"]
        for name, section in args.items()
        if isinstance(section, dict) and isinstance(section.get("deployment"), dict)
    }


def _tiny_model_from_local(name: str, local_args: dict[str, Any]) -> dict[str, Any]:
    if name not in local_args or "model" not in local_args[name]:
        raise KeyError(f"configs/local.yaml has no tiny `{name}.model` to stand in for production's")
    model = copy.deepcopy(local_args[name]["model"])
    for key in _PATH_KEYS:
        value = model.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            model[key] = str((REPO / value).resolve())
    return model


def production_shaped(
    *, http_port: int, results_dir: Path, redis_url: str | None = None, sqlite_path: Path | None = None
) -> dict[str, Any]:
    """The production Serve config document, rewritten to run on this machine (see the module docstring).

    Give ``redis_url`` to keep production's Redis job store (pointed at a local server), or ``sqlite_path``.
    The result is validated into an ``AppConfig`` before it is returned.
    """
    if (redis_url is None) == (sqlite_path is None):
        raise ValueError("give exactly one of redis_url and sqlite_path")
    document = copy.deepcopy(load_profile("production"))
    local_args = app_args(load_profile("local"))
    document["http_options"].update(host="127.0.0.1", port=http_port)
    args = app_args(document)

    if redis_url is not None:
        args["job_store"].update(backend="redis", redis_url=redis_url, results_dir=str(results_dir))
    else:
        args["job_store"] = {"backend": "sqlite", "sqlite_path": str(sqlite_path), "results_dir": str(results_dir)}

    video_model = args["video_generator"]["model"]
    for key in ("experts_path", "lora"):
        video_model.pop(key, None)
    video_model.update(
        path=str(REPO / ".cache" / "models" / TINY_WAN),
        tiny_model=TINY_WAN,
        device="cpu",
        dtype="float32",
        vae_dtype="float32",
        quantize_experts="none",
        quantize_text_encoder="none",
        vae_tiling=False,
    )
    # every other model deployment (prompt expander, image analyzer, ...) takes the local profile's tiny model
    for name, section in args.items():
        if name != "video_generator" and isinstance(section, dict) and "model" in section:
            section["model"] = _tiny_model_from_local(name, local_args)

    # The secrets production mounts from a Kubernetes Secret do not exist here: the webhook secret goes next to
    # the results (created on first start), and API keys are off, because the rehearsal is about placement
    # and the job path (tests/test_auth.py covers the keys).
    ingress = args.setdefault("ingress", {})
    ingress.setdefault("webhooks", {})["signing_secret_file"] = str(Path(results_dir).parent / "webhook-secret")
    ingress["auth"] = {"mode": "off"}
    for name, options in deployment_sections(args).items():
        options["num_cpus"] = VIDEO_NUM_CPUS if name == "video_generator" else OTHER_NUM_CPUS
    video_env = args["video_generator"]["deployment"].setdefault("env", {})
    video_env["OMP_NUM_THREADS"] = "2"  # Ray pins fractional-CPU replicas to one thread; the VAE wants both cores
    validate(document)
    return document


def validate(document: dict[str, Any]) -> AppConfig:
    return load_app_config(app_args(document))
