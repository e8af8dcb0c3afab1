"""The only place Ray options are applied: typed config in, ``serve.Application`` out."""

from __future__ import annotations

from ray import serve

from deployments.config import AppConfig, DeploymentOptions
from deployments.image_analyzer import ImageAnalyzerDeployment
from deployments.ingress import Ingress
from deployments.prompt_expander import PromptExpanderDeployment
from deployments.video_generator import VideoGenerator


def ray_options(options: DeploymentOptions) -> dict:
    actor_options: dict = {"num_cpus": options.num_cpus, "num_gpus": options.num_gpus}
    if options.memory_gb:
        actor_options["memory"] = int(options.memory_gb * 1024**3)
    if options.env:
        actor_options["runtime_env"] = {"env_vars": dict(options.env)}
    ray = {
        "ray_actor_options": actor_options,
        "max_ongoing_requests": options.max_ongoing_requests,
        "max_queued_requests": options.max_queued_requests,
        "health_check_period_s": options.health_check_period_s,
        "health_check_timeout_s": options.health_check_timeout_s,
        "graceful_shutdown_timeout_s": options.graceful_shutdown_timeout_s,
    }
    if options.autoscaling is not None:
        ray["autoscaling_config"] = options.autoscaling.model_dump(exclude_none=True)
    else:
        ray["num_replicas"] = options.num_replicas
    return ray


def build_application(config: AppConfig) -> serve.Application:
    video = serve.deployment(
        VideoGenerator, name="VideoGenerator", **ray_options(config.video_generator.deployment)
    ).bind(config.video_generator, config.job_store)
    expander = None
    if config.prompt_expander is not None:
        expander = serve.deployment(
            PromptExpanderDeployment, name="PromptExpander", **ray_options(config.prompt_expander.deployment)
        ).bind(config.prompt_expander.model)
    analyzer = None
    if config.image_analyzer is not None:
        analyzer = serve.deployment(
            ImageAnalyzerDeployment, name="ImageAnalyzer", **ray_options(config.image_analyzer.deployment)
        ).bind(config.image_analyzer.model)
    ingress = serve.deployment(Ingress, name="Ingress", **ray_options(config.ingress.deployment))
    return ingress.bind(config.ingress, config.job_store, video, expander, analyzer)
