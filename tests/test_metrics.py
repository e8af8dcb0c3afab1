"""The service's metrics through the Ray-free path (``GET /metrics``), and the Grafana dashboard's queries.

The prometheus_client registry is process-global and other tests record into it too, so every check
compares a value before and after the action under test instead of assuming it starts at zero.
"""

import json
import re
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deployments import metrics
from tests.api_harness import TEST_QUEUE, api_client, final, wait_for
from tests.images import encode, gradient_image

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
METRICS_DOC = REPO / "docs" / "metrics.md"
PHOTO = encode(gradient_image(320, 240), "JPEG")


def _submit(client, **fields):
    data = {key: str(value) for key, value in fields.items()}
    return client.post("/v1/videos", files={"image": ("p.jpg", PHOTO, "image/jpeg")}, data=data)


def _scrape(client) -> tuple[str, dict]:
    """The exposition text and its samples as {(name, frozenset(labels)): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _registry_value(name: str, **labels) -> float:
    return metrics.prometheus_registry().get_sample_value(name, labels) or 0.0


def _scrape_until(client, predicate, timeout_s: float = 15.0) -> tuple[str, dict]:
    # The worker records a job's metrics just after it writes the final state, so a poll that sees
    # the final state can scrape a moment before the counters move.
    deadline = time.monotonic() + timeout_s
    while True:
        text, samples = _scrape(client)
        if predicate(samples) or time.monotonic() > deadline:
            return text, samples
        time.sleep(0.05)


@pytest.mark.slow
def test_a_video_job_shows_up_in_get_metrics(tmp_path, wan_pipeline, video_model_config):
    with api_client(tmp_path, wan_pipeline, video_model_config) as client:
        _, before = _scrape(client)
        succeeded = {"kind": "video", "status": "succeeded"}
        accepted = _submit(client, duration_s=0.5, seed=3)
        assert accepted.status_code == 202
        done = wait_for(client, accepted.json()["id"], final)
        assert done["status"] == "succeeded", done
        text, after = _scrape_until(
            client,
            lambda samples: (
                _value(samples, "vividflow_jobs_finished_total", **succeeded)
                > _value(before, "vividflow_jobs_finished_total", **succeeded)
            ),
        )

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert 'vividflow_jobs_submitted_total{kind="video"}' in text
    assert _value(after, "vividflow_jobs_submitted_total", kind="video") >= 1
    assert delta("vividflow_jobs_submitted_total", kind="video") == 1
    assert delta("vividflow_jobs_finished_total", kind="video", status="succeeded") == 1
    assert ("vividflow_queue_depth", frozenset({("kind", "video")})) in after

    latency = {"kind": "video", "status": "succeeded"}
    assert delta("vividflow_job_latency_seconds_count", **latency) == 1
    assert delta("vividflow_job_latency_seconds_bucket", **latency, le="+Inf") == 1
    assert delta("vividflow_job_latency_seconds_sum", **latency) > 0
    buckets = sorted(
        float(dict(labels)["le"])
        for name, labels in after
        if name == "vividflow_job_latency_seconds_bucket"
        and dict(labels)["kind"] == "video"
        and dict(labels)["status"] == "succeeded"
    )
    assert buckets == [*map(float, metrics.LATENCY_BUCKETS), float("inf")]

    timings = done["timings_s"]
    assert {"denoise_high_noise", "vae_decode"} <= set(timings)
    for stage, seconds in timings.items():
        labels = {"kind": "video", "stage": stage}
        assert delta("vividflow_stage_seconds_count", **labels) == 1, stage
        assert delta("vividflow_stage_seconds_bucket", **labels, le="+Inf") == 1, stage
        assert delta("vividflow_stage_seconds_sum", **labels) == pytest.approx(seconds, abs=1e-6), stage
    for stage in ("denoise_high_noise", "vae_decode"):
        bucket_bounds = {
            dict(labels)["le"]
            for name, labels in after
            if name == "vividflow_stage_seconds_bucket" and {("kind", "video"), ("stage", stage)} <= labels
        }
        assert bucket_bounds == {str(float(bound)) for bound in metrics.STAGE_BUCKETS} | {"+Inf"}, stage


@pytest.mark.slow
def test_a_429_increments_the_rejected_counter(tmp_path, wan_pipeline, video_model_config):
    queue = TEST_QUEUE.model_copy(update={"max_queued_jobs": 1})
    with api_client(tmp_path, wan_pipeline, video_model_config, queue=queue, start_video_worker=False) as client:
        _, before = _scrape(client)
        assert _submit(client, duration_s=0.5).status_code == 202
        assert _submit(client, duration_s=0.5).status_code == 429
        _, after = _scrape(client)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("vividflow_jobs_rejected_total", kind="video") == 1
    assert delta("vividflow_jobs_submitted_total", kind="video") == 1
    assert _value(after, "vividflow_queue_depth", kind="video") == 1


def test_recording_never_raises():
    submitted = _registry_value("vividflow_jobs_submitted_total", kind="video")
    requeued = _registry_value("vividflow_jobs_reaped_total", outcome="requeued")

    metrics._record("vividflow_jobs_submitted_total", 1, colour="red")  # a tag the metric does not have
    metrics._record("vividflow_jobs_submitted_total", 1)  # a tag missing
    metrics._record("vividflow_no_such_metric_total", 1, kind="video")  # not defined
    metrics.jobs_reaped("requeued", count=-1)  # counters only go up
    metrics.queue_depth("video", "many")  # not a number

    assert _registry_value("vividflow_jobs_submitted_total", kind="video") == submitted
    assert _registry_value("vividflow_jobs_reaped_total", outcome="requeued") == requeued
    exposition = metrics.prometheus_registry().collect()
    assert all("colour" not in sample.labels for family in exposition for sample in family.samples)


def test_a_backend_that_fails_is_swallowed(monkeypatch):
    class Broken:
        def record(self, value, tags):
            raise RuntimeError("the metrics backend is down")

    for name in metrics._DEFINITIONS:
        monkeypatch.setitem(metrics._metrics, name, Broken())
    metrics.job_submitted("video")
    metrics.job_rejected("video")
    metrics.job_finished("video", "succeeded", 1.5)
    metrics.stage_durations("video", {"vae_decode": 0.1})
    metrics.queue_depth("video", 3)
    metrics.segmentation_stage("classic")
    metrics.jobs_reaped("failed")

    def failing_metric(name):
        raise RuntimeError("cannot create metrics here")

    monkeypatch.setattr(metrics, "_metric", failing_metric)
    metrics.job_submitted("video")


def test_every_definition_is_served_under_its_name():
    for name, (kind, description, _, _) in metrics._DEFINITIONS.items():
        metrics._metric(name)  # created without recording anything
        family = name.removesuffix("_total") if kind == "counter" else name
        collected = {f.name: f for f in metrics.prometheus_registry().collect()}
        assert family in collected, name
        assert collected[family].type == kind, name
        assert collected[family].documentation == description, name


# --- the Grafana dashboard -------------------------------------------------------------------------

PROMQL_WORDS = set("by without on ignoring group_left group_right bool and or unless offset le inf nan".split())


def _panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, strings and ranges left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group()
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(word)
    return names


def _exported_names() -> set[str]:
    """What Ray's metrics port exports for each definition: ``ray_`` + the name (+ the histogram series)."""
    names = set()
    for name, (kind, *_rest) in metrics._DEFINITIONS.items():
        series = [f"{name}_bucket", f"{name}_sum", f"{name}_count"] if kind == "histogram" else [name]
        names.update(f"ray_{s}" for s in series)
    return names


def _ray_serve_metric_patterns() -> list[re.Pattern]:
    """Ray Serve's own metric names, read from the installed Ray's source (f-string fields as wildcards)."""
    import ray.serve

    patterns = set()
    for path in Path(ray.serve.__file__).parent.rglob("*.py"):
        for literal in re.findall(r'f?"(serve_[a-z0-9_{}]+)"', path.read_text(errors="replace")):
            patterns.add(re.sub(r"\\\{[a-z_]+\\\}", "[a-z]+", re.escape(literal)))
    return [re.compile(pattern) for pattern in patterns]


def _is_ray_serve_metric(name: str, patterns: list[re.Pattern]) -> bool:
    if not name.startswith("ray_serve_"):
        return False
    base = re.sub(r"_(total|bucket|sum|count)$", "", name.removeprefix("ray_"))
    return any(p.fullmatch(base) or p.fullmatch(name.removeprefix("ray_")) for p in patterns)


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_dashboard_is_an_importable_grafana_dashboard(dashboard):
    assert dashboard["title"] and dashboard["uid"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel.get("title", "").strip(), panel
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert target["expr"].count("{") == target["expr"].count("}"), target["expr"]


def test_every_query_selects_a_defined_or_ray_serve_metric(dashboard):
    exported, serve_patterns = _exported_names(), _ray_serve_metric_patterns()
    assert serve_patterns, "Ray Serve's metric names were not found in the installed Ray"
    used = set()
    queries = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    for expr in queries:
        names = _metric_names(re.sub(r"label_values\((.*),\s*\w+\)$", r"\1", expr))
        assert names, expr
        for name in names:
            assert name in exported or _is_ray_serve_metric(name, serve_patterns), (name, expr)
        used |= names
    for name, (kind, *_rest) in metrics._DEFINITIONS.items():
        series = f"ray_{name}_bucket" if kind == "histogram" else f"ray_{name}"
        assert series in used, f"no panel shows {name}"


def test_the_dashboard_has_the_latency_and_per_kind_stage_quantiles(dashboard):
    queries = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    latency = [q for q in queries if "vividflow_job_latency_seconds_bucket" in q]
    assert any(q.startswith("histogram_quantile(0.5,") for q in latency)
    assert any(q.startswith("histogram_quantile(0.95,") for q in latency)
    for kind in ("video", "background"):
        stages = [q for q in queries if "vividflow_stage_seconds_bucket" in q and f'kind="{kind}"' in q]
        assert {q.split(",")[0] for q in stages} == {"histogram_quantile(0.5", "histogram_quantile(0.95"}, kind
        assert all("by (stage, le)" in q for q in stages), kind


def test_the_metrics_doc_lists_every_metric_under_both_names():
    doc = METRICS_DOC.read_text()
    for name in metrics._DEFINITIONS:
        assert f"`{name}`" in doc and f"`ray_{name}`" in doc, name
