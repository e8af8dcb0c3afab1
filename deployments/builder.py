"""The only place Ray options are applied: typed config in, ``serve.Application`` out."""

from __future__ import annotations

from ray import serve

from deployments.background_generator import BackgroundGenerator
from deployments.config import AppConfig, DeploymentOptions, JobStoreConfig
from deployments.image_analyzer import ImageAnalyzerDeployment
from deployments.ingress import Ingress
from deployments.prompt_expander import PromptExpanderDeployment
from deployments.segmenter import SegmenterDeployment
from deployments.video_editor import VideoEditor
from deployments.video_generator import VideoGenerator


def ray_options(
    options: DeploymentOptions, *, job_kind: str | None = None, store: JobStoreConfig | None = None
) -> dict:
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
        autoscaling = options.autoscaling.model_dump(exclude_none=True, exclude={"scale_on"})
        if options.autoscaling.scale_on == "queued_jobs":
            if job_kind is None or store is None:
                raise ValueError("scale_on: queued_jobs applies only to VideoGenerator and BackgroundGenerator")
            autoscaling["policy"] = {
                "policy_function": "deployments.autoscaling:QueueDepthPolicy",
                "policy_kwargs": {
                    "job_store": store.model_dump(),
                    "kind": job_kind,
                    "jobs_per_replica": options.autoscaling.target_ongoing_requests,
                },
            }
        ray["autoscaling_config"] = autoscaling
    else:
        ray["num_replicas"] = options.num_replicas
    return ray


def _deployment(cls, name: str, options: DeploymentOptions, **queue):
    return serve.deployment(cls, name=name, **ray_options(options, **queue))


def build_application(config: AppConfig) -> serve.Application:
    store, queue = config.job_store, config.jobs
    workers = {
        "video": _deployment(
            VideoGenerator, "VideoGenerator", config.video_generator.deployment, job_kind="video", store=store
        ).bind(config.video_generator, store, queue)
    }
    expander = analyzer = segmenter = None
    if config.prompt_expander is not None:
        expander = _deployment(PromptExpanderDeployment, "PromptExpander", config.prompt_expander.deployment).bind(
            config.prompt_expander.model, gpu_memory_fraction=config.prompt_expander.deployment.cuda_memory_fraction
        )
    if config.image_analyzer is not None:
        analyzer = _deployment(ImageAnalyzerDeployment, "ImageAnalyzer", config.image_analyzer.deployment).bind(
            config.image_analyzer.model, gpu_memory_fraction=config.image_analyzer.deployment.cuda_memory_fraction
        )
    if config.segmenter is not None:
        segmenter = _deployment(SegmenterDeployment, "Segmenter", config.segmenter.deployment).bind(
            config.segmenter.model, gpu_memory_fraction=config.segmenter.deployment.cuda_memory_fraction
        )
    if config.background_generator is not None:
        workers["background"] = _deployment(
            BackgroundGenerator,
            "BackgroundGenerator",
            config.background_generator.deployment,
            job_kind="background",
            store=store,
        ).bind(config.background_generator, store, queue, segmenter, analyzer)
    if config.video_editor is not None:
        workers["edit"] = _deployment(
            VideoEditor, "VideoEditor", config.video_editor.deployment, job_kind="edit", store=store
        ).bind(config.video_editor, store, queue, segmenter, edits=config.edits)
    ingress = _deployment(Ingress, "Ingress", config.ingress.deployment)
    return ingress.bind(
        config.ingress,
        store,
        queue,
        workers,
        expander,
        analyzer,
        segmenter,
        video_model=config.video_generator.model,
        edits=config.edits,
    )
