"""The service's named metrics, in one place.

Inside a Ray Serve replica they go through Ray Serve's metrics API (exported on Ray's metrics port
with the deployment/replica tags Serve adds); anywhere else (tests, a Ray-free dev server) they go
to a prometheus_client registry, which ``GET /metrics`` serves. Names are the same either way.
"""

from __future__ import annotations

import contextlib
import threading

# Seconds; videos take from a few seconds (GPU, 0.5 s clip) to many minutes (CPU, tiny model, 5 s clip).
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)

_DEFINITIONS = {
    "vividflow_jobs_submitted_total": ("counter", "Jobs accepted with 202", ("kind",), None),
    "vividflow_jobs_finished_total": ("counter", "Jobs that reached a final state", ("kind", "status"), None),
    "vividflow_jobs_rejected_total": ("counter", "Jobs refused because the queue was full (429)", ("kind",), None),
    "vividflow_queue_depth": ("gauge", "Queued jobs waiting for a worker", ("kind",), None),
    "vividflow_job_latency_seconds": ("histogram", "Created to finished, per job", ("kind", "status"), LATENCY_BUCKETS),
    "vividflow_stage_seconds": ("histogram", "Duration of one pipeline stage", ("kind", "stage"), STAGE_BUCKETS),
    "vividflow_segmentation_stage_total": ("counter", "Which segmentation stage produced the mask", ("stage",), None),
    "vividflow_jobs_reaped_total": ("counter", "Jobs whose worker stopped heartbeating", ("outcome",), None),
}

_lock = threading.Lock()
_metrics: dict[str, object] = {}
_registry = None


def _in_serve_replica() -> bool:
    try:
        from ray.serve import context

        return context._get_internal_replica_context() is not None
    except Exception:
        return False


def prometheus_registry():
    """The registry used outside Ray (created on first use)."""
    global _registry
    if _registry is None:
        from prometheus_client import CollectorRegistry

        _registry = CollectorRegistry()
    return _registry


def _metric(name: str):
    with _lock:
        if name in _metrics:
            return _metrics[name]
        kind, description, tags, buckets = _DEFINITIONS[name]
        if _in_serve_replica():
            from ray.serve import metrics as serve_metrics

            cls = {"counter": serve_metrics.Counter, "gauge": serve_metrics.Gauge, "histogram": serve_metrics.Histogram}
            extra = {"boundaries": list(buckets)} if buckets else {}
            metric = _RayMetric(cls[kind](name, description=description, tag_keys=tags, **extra), kind)
        else:
            import prometheus_client as prom

            cls = {"counter": prom.Counter, "gauge": prom.Gauge, "histogram": prom.Histogram}
            extra = {"buckets": buckets} if buckets else {}
            prom_name = name.removesuffix("_total") if kind == "counter" else name
            metric = _PromMetric(cls[kind](prom_name, description, tags, registry=prometheus_registry(), **extra), kind)
        _metrics[name] = metric
        return metric


class _RayMetric:
    def __init__(self, metric, kind: str) -> None:
        self.metric, self.kind = metric, kind

    def record(self, value: float, tags: dict[str, str]) -> None:
        if self.kind == "counter":
            self.metric.inc(value, tags=tags)
        elif self.kind == "gauge":
            self.metric.set(value, tags=tags)
        else:
            self.metric.observe(value, tags=tags)


class _PromMetric:
    def __init__(self, metric, kind: str) -> None:
        self.metric, self.kind = metric, kind

    def record(self, value: float, tags: dict[str, str]) -> None:
        child = self.metric.labels(**tags)
        if self.kind == "counter":
            child.inc(value)
        elif self.kind == "gauge":
            child.set(value)
        else:
            child.observe(value)


def _record(name: str, value: float, **tags: str) -> None:
    with contextlib.suppress(Exception):  # metrics must never fail a request or a job
        _metric(name).record(value, tags)


def job_submitted(kind: str) -> None:
    _record("vividflow_jobs_submitted_total", 1, kind=kind)


def job_rejected(kind: str) -> None:
    _record("vividflow_jobs_rejected_total", 1, kind=kind)


def job_finished(kind: str, status: str, latency_s: float | None) -> None:
    _record("vividflow_jobs_finished_total", 1, kind=kind, status=status)
    if latency_s is not None:
        _record("vividflow_job_latency_seconds", latency_s, kind=kind, status=status)


def stage_durations(kind: str, timings: dict[str, float]) -> None:
    for stage, seconds in timings.items():
        _record("vividflow_stage_seconds", seconds, kind=kind, stage=stage)


def queue_depth(kind: str, depth: int) -> None:
    _record("vividflow_queue_depth", depth, kind=kind)


def segmentation_stage(stage: str) -> None:
    _record("vividflow_segmentation_stage_total", 1, stage=stage)


def jobs_reaped(outcome: str, count: int = 1) -> None:
    _record("vividflow_jobs_reaped_total", count, outcome=outcome)
