"""Typed application config: the YAML's ``args`` are validated into these before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.background.clip_analysis import AnalyzerConfig
from pipelines.background.sdxl import BackgroundModelConfig
from pipelines.background.segmentation.chain import SegmentationConfig
from pipelines.common.config import StrictModel
from pipelines.edit.config import EditLimits, EditModelConfig
from pipelines.prompts.expansion import ExpanderConfig
from pipelines.video.config import VideoLimits, VideoModelConfig


class JobStoreConfig(StrictModel):
    backend: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="Where job records live: one SQLite file (one machine) or Redis (clusters)."
    )
    sqlite_path: str = Field(default="var/jobs.sqlite3", description="SQLite file (local profile).")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis server of the `redis` backend (redis:// or rediss://)."
    )
    results_dir: str = Field(default="var/results", description="Folder for finished MP4/PNG files.")


class JobQueueConfig(StrictModel):
    """How model replicas pull jobs and how lost workers are detected."""

    poll_interval_s: float = Field(default=0.25, gt=0, le=10, description="Idle workers look for new jobs this often.")
    heartbeat_interval_s: float = Field(default=5.0, gt=0, description="A running job's worker reports this often.")
    lease_s: float = Field(
        default=60.0, gt=0, description="A running job whose worker was silent this long is re-queued or failed."
    )
    max_attempts: int = Field(default=2, ge=1, le=10, description="Claims per job before it fails as worker_lost.")
    reap_interval_s: float = Field(default=10.0, gt=0, description="How often ingress and workers look for them.")
    max_queued_jobs: int = Field(
        default=200, ge=1, description="Per kind; beyond it new jobs get 429 with Retry-After instead of waiting."
    )
    retry_after_s: int = Field(default=30, ge=1, description="Retry-After sent with 429.")
    store_retry_window_s: float = Field(
        default=30.0,
        ge=0,
        description="A running job retries each job-store call this long (with backoff) before it fails as "
        "store_unavailable: a store failover must not throw a render away.",
    )
    retention_s: float = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="An ended job's record, input and result are deleted this long after it ended (the job "
        "object's `expires_at`); queued and running jobs never expire.",
    )
    idempotency_ttl_s: float = Field(
        default=24 * 3600,
        ge=24 * 3600,
        description="How long an `Idempotency-Key` keeps returning the job it created (at least 24 h).",
    )
    sweep_interval_s: float = Field(
        default=300.0, gt=0, description="How often the ingress deletes expired jobs and orphaned files."
    )
    orphan_grace_s: float = Field(
        default=3600.0,
        gt=0,
        description="A file in the results folder with no job record is deleted once it is this old (younger "
        "ones may belong to a submission still being stored).",
    )


class AutoscalingConfig(StrictModel):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=1.0, gt=0)
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)
    scale_on: Literal["requests", "queued_jobs"] = Field(
        default="requests",
        description="`queued_jobs` for job-pulling deployments (VideoGenerator, BackgroundGenerator): one replica "
        "per `target_ongoing_requests` queued or running jobs of their kind.",
    )


class DeploymentOptions(StrictModel):
    """Ray options of one deployment; applied only in ``deployments.builder``."""

    num_replicas: int = Field(default=1, ge=1, description="Ignored when `autoscaling` is set.")
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0, le=8)
    gpu_memory_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Cap on the CUDA memory this replica's PyTorch allocates, as a fraction of each GPU it sees "
        "(`torch.cuda.set_per_process_memory_fraction`). Unset: its `num_gpus` share (at most 1). Fractional "
        "GPUs only place replicas; this keeps each inside its share.",
    )
    memory_gb: float | None = Field(default=None, gt=0, description="Ray memory reservation per replica.")
    max_ongoing_requests: int = Field(default=1, ge=1)
    max_queued_requests: int = Field(default=-1, ge=-1, description="-1: unbounded.")
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0)
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the replicas.")

    @model_validator(mode="after")
    def _memory_within_gpu_share(self) -> DeploymentOptions:
        if self.gpu_memory_fraction is None:
            return self
        if self.num_gpus == 0:
            raise ValueError("gpu_memory_fraction needs num_gpus > 0: a replica without a GPU share sees no GPU")
        if self.gpu_memory_fraction > self.num_gpus:
            raise ValueError(
                f"gpu_memory_fraction {self.gpu_memory_fraction} is more than this replica's GPU share "
                f"(num_gpus {self.num_gpus}): replicas packed onto one GPU by their shares would run out together"
            )
        return self

    @property
    def cuda_memory_fraction(self) -> float | None:
        """The cap a replica applies to itself: the configured fraction, else its GPU share; None without a GPU."""
        if self.gpu_memory_fraction is not None:
            return self.gpu_memory_fraction
        return min(self.num_gpus, 1.0) if self.num_gpus > 0 else None


class ExportConfig(StrictModel):
    crf: int = Field(default=18, ge=0, le=51, description="x264 quality: lower is better and larger.")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"


class VideoGeneratorConfig(StrictModel):
    model: VideoModelConfig
    export: ExportConfig = ExportConfig()
    deployment: DeploymentOptions = DeploymentOptions(num_gpus=1.0, max_ongoing_requests=1)


class VideoEditorConfig(StrictModel):
    """The `VideoEditor` deployment: text-driven edits of uploaded videos with Wan VACE (`edit` jobs)."""

    model: EditModelConfig
    export: ExportConfig = ExportConfig()
    deployment: DeploymentOptions = DeploymentOptions(num_gpus=1.0, max_ongoing_requests=1)


class PromptExpanderConfig(StrictModel):
    model: ExpanderConfig
    deployment: DeploymentOptions = DeploymentOptions(num_gpus=0.2, max_ongoing_requests=4)


class ImageAnalyzerConfig(StrictModel):
    model: AnalyzerConfig
    deployment: DeploymentOptions = DeploymentOptions(num_gpus=0.1, max_ongoing_requests=8)


class SegmenterConfig(StrictModel):
    model: SegmentationConfig = SegmentationConfig()
    deployment: DeploymentOptions = DeploymentOptions(num_gpus=0.2, max_ongoing_requests=4)


class BackgroundGeneratorConfig(StrictModel):
    model: BackgroundModelConfig
    blend_space: Literal["srgb", "linear"] = Field(
        default="srgb",
        description="Space the subject is blended onto the new background in: `srgb`, where segmentation "
        "models and matting datasets define alpha (linear light would make hair and fur edges paler); "
        "`linear` for mattes defined in linear light.",
    )
    working_megapixels: float | None = Field(
        default=4.0,
        ge=0.25,
        description="Foreground colour estimation of a larger photo's soft edges runs on a copy of this many "
        "megapixels and is corrected per pixel at full size; the composite is always full size. null: estimate "
        "at full size. The matte's working size is the segmenter's `working_megapixels`.",
    )
    deployment: DeploymentOptions = DeploymentOptions(num_gpus=0.5, max_ongoing_requests=1)


class WebhookConfig(StrictModel):
    """Where and how job webhooks (`webhook_url`) are delivered: signed, retried, only to allowed hosts."""

    enabled: bool = Field(default=True, description="Off: `webhook_url` is refused with 400.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names, IP addresses or networks (CIDR) a webhook may target although they are "
        "loopback, private, link-local or otherwise not public; they may also use plain `http`. Everything else "
        "must be a public address over `https`.",
    )
    signing_secret_file: str = Field(
        default="var/webhook-secret",
        description="File holding the signing secret (`whsec_` + base64, the Standard Webhooks form). Created "
        "with a random secret when missing; in clusters, a mounted Kubernetes Secret.",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=60, description="One delivery attempt's time limit.")
    retry_for_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Failed deliveries are retried with backoff for this long after the "
        "job ended, then marked `failed`.",
    )
    backoff_s: float = Field(default=5.0, gt=0, description="Wait after the first failed attempt; doubles each time.")
    max_backoff_s: float = Field(default=3600.0, gt=0, description="The longest wait between two attempts.")
    poll_interval_s: float = Field(default=1.0, gt=0, le=60, description="How often the ingress looks for due ones.")


class AuthConfig(StrictModel):
    """Who may call the API (DESIGN §7). Keys are stored as SHA-256 hashes only; they never reach logs."""

    mode: Literal["off", "api_keys"] = Field(
        default="off", description="`off`: one implicit tenant `local`; `api_keys`: `Authorization: Bearer <key>`."
    )
    keys_file: str | None = Field(
        default=None,
        description="`api_keys` mode: a YAML list of `{tenant, key_sha256, role: user|admin}` (a mounted "
        "Kubernetes Secret in clusters). Re-read when it changes, so keys rotate without a restart.",
    )
    metrics: Literal["public", "admin"] = Field(default="admin", description="Who may read `/metrics`.")
    docs: Literal["public", "admin"] = Field(default="public", description="Who may read `/docs` and `/openapi.json`.")

    @model_validator(mode="after")
    def _keys_file_needed(self) -> AuthConfig:
        if self.mode == "api_keys" and not self.keys_file:
            raise ValueError("auth.mode api_keys needs auth.keys_file")
        return self


class TenantLimits(StrictModel):
    max_queued_jobs: int = Field(
        default=50, ge=1, description="Queued jobs one tenant may have at once (all kinds); beyond it 429."
    )
    requests_per_s: float = Field(
        default=10.0,
        gt=0,
        description="Sustained requests per second per tenant (a token bucket shared by every "
        "ingress replica through the job store); beyond it 429 with Retry-After.",
    )
    burst: int = Field(default=40, ge=1, description="Requests a tenant may make at once before the rate applies.")
    max_event_streams: int = Field(default=8, ge=1, description="Open `/events` streams per tenant.")


class CorsConfig(StrictModel):
    allow_origins: list[str] = Field(
        default_factory=list,
        description="Web origins (scheme://host[:port]) whose pages may call the API from a browser. Empty: no "
        "CORS headers at all, so pages on other sites cannot read answers (the default).",
    )


class IngressConfig(StrictModel):
    max_upload_mb: float = Field(default=50.0, gt=0, le=200)
    max_image_megapixels: float = Field(default=40.0, gt=0, le=100)
    prompt_expansion_timeout_s: float = Field(
        default=15.0, gt=0, description="After this, a video job keeps the original prompt."
    )
    webhooks: WebhookConfig = WebhookConfig()
    videos: VideoLimits = Field(default=VideoLimits(), description="Limits on the videos `POST /v1/videos` accepts.")
    auth: AuthConfig = AuthConfig()
    limits: TenantLimits = Field(default_factory=TenantLimits, description="Per tenant, unless overridden below.")
    tenant_limits: dict[str, TenantLimits] = Field(
        default_factory=dict, description="Per-tenant overrides of `limits`, by tenant id."
    )
    cors: CorsConfig = CorsConfig()
    event_stream_max_s: float = Field(
        default=900.0,
        gt=0,
        description="An `/events` stream ends after this long with a `retry:` hint; clients "
        "reconnect (EventSource does so by itself).",
    )
    deployment: DeploymentOptions = DeploymentOptions(num_cpus=0.25, max_ongoing_requests=100)

    def limits_for(self, tenant: str) -> TenantLimits:
        return self.tenant_limits.get(tenant, self.limits)


class AppConfig(StrictModel):
    job_store: JobStoreConfig = JobStoreConfig()
    jobs: JobQueueConfig = JobQueueConfig()
    ingress: IngressConfig = IngressConfig()
    video_generator: VideoGeneratorConfig
    prompt_expander: PromptExpanderConfig | None = Field(
        default=None, description="Optional: without it, `expand_prompt` answers with the original prompt."
    )
    image_analyzer: ImageAnalyzerConfig | None = Field(
        default=None, description="Optional: without it, `POST /v1/analyze` answers 503."
    )
    segmenter: SegmenterConfig | None = Field(
        default=None, description="Needed by the mask preview and by `background_generator`."
    )
    background_generator: BackgroundGeneratorConfig | None = Field(
        default=None, description="Optional: without it, `POST /v1/backgrounds` answers 503."
    )
    video_editor: VideoEditorConfig | None = Field(
        default=None, description="Optional: without it, `POST /v1/edits` answers 503."
    )
    edits: EditLimits = Field(default=EditLimits(), description="Limits on the videos `POST /v1/edits` accepts.")

    @model_validator(mode="after")
    def _backgrounds_need_segmentation(self) -> AppConfig:
        if self.background_generator is not None and self.segmenter is None:
            raise ValueError("background_generator needs a segmenter section (the subject matte comes from it)")
        if self.video_editor is not None and self.segmenter is None:
            raise ValueError("video_editor needs a segmenter section (mode=replace masks come from it)")
        return self

    def with_absolute_paths(self, base: Path) -> AppConfig:
        """Resolve relative paths against ``base`` once, before replicas start elsewhere."""

        def absolute(value: str | None) -> str | None:
            if value is None or Path(value).is_absolute():
                return value
            return str((base / value).resolve())

        model = self.video_generator.model
        model = model.model_copy(
            update={
                "path": absolute(model.path),
                "experts_path": absolute(model.experts_path),
                "lora": model.lora.model_copy(update={"path": absolute(model.lora.path)}) if model.lora else None,
                "loras": model.loras.model_copy(update={"path": absolute(model.loras.path)}) if model.loras else None,
            }
        )
        webhooks = self.ingress.webhooks
        webhooks = webhooks.model_copy(update={"signing_secret_file": absolute(webhooks.signing_secret_file)})
        auth = self.ingress.auth.model_copy(update={"keys_file": absolute(self.ingress.auth.keys_file)})
        ingress = self.ingress.model_copy(update={"webhooks": webhooks, "auth": auth})
        store = self.job_store.model_copy(
            update={
                "sqlite_path": absolute(self.job_store.sqlite_path),
                "results_dir": absolute(self.job_store.results_dir),
            }
        )
        video = self.video_generator.model_copy(update={"model": model})
        expander = self.prompt_expander
        if expander is not None:
            expander_model = expander.model.model_copy(update={"path": absolute(expander.model.path)})
            expander = expander.model_copy(update={"model": expander_model})
        analyzer = self.image_analyzer
        if analyzer is not None:
            analyzer_model = analyzer.model.model_copy(
                update={
                    "checkpoint": absolute(analyzer.model.checkpoint),
                    "config_path": absolute(analyzer.model.config_path),
                }
            )
            analyzer = analyzer.model_copy(update={"model": analyzer_model})
        background = self.background_generator
        if background is not None:
            background_model = background.model.model_copy(update={"path": absolute(background.model.path)})
            background = background.model_copy(update={"model": background_model})
        editor = self.video_editor
        if editor is not None:
            edit_model = editor.model.model_copy(
                update={
                    "path": absolute(editor.model.path),
                    "experts_path": absolute(editor.model.experts_path),
                    "lora": editor.model.lora.model_copy(update={"path": absolute(editor.model.lora.path)})
                    if editor.model.lora
                    else None,
                }
            )
            editor = editor.model_copy(update={"model": edit_model})
        segmenter = self.segmenter
        if segmenter is not None:
            segmenter = segmenter.model_copy(update={"model": segmenter.model.with_absolute_paths(absolute)})
        return self.model_copy(
            update={
                "job_store": store,
                "ingress": ingress,
                "video_generator": video,
                "prompt_expander": expander,
                "image_analyzer": analyzer,
                "background_generator": background,
                "video_editor": editor,
                "segmenter": segmenter,
            }
        )


def load_app_config(args: dict[str, Any]) -> AppConfig:
    return AppConfig.model_validate(args)
