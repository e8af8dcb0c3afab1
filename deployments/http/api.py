"""The FastAPI application of the ingress, assembled from per-feature routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from starlette.concurrency import run_in_threadpool

from deployments import metrics
from deployments.errors import ServiceNotReadyError, StorageUnavailableError
from deployments.http.access import install_access_control
from deployments.http.analyze_routes import analyze_router
from deployments.http.background_routes import background_router
from deployments.http.batch_routes import batch_router
from deployments.http.edit_routes import edit_router
from deployments.http.errors import error_responses, install_error_handlers
from deployments.http.event_hub import EventHub
from deployments.http.job_routes import EVENT_POLL_S, job_router
from deployments.http.lora_routes import lora_router
from deployments.http.openapi import install_openapi
from deployments.http.prompt_routes import prompt_router
from deployments.http.scene_routes import scene_template_router
from deployments.http.schemas import Health
from deployments.http.services import ApiServices
from deployments.http.template_routes import template_router
from deployments.http.video_routes import video_router
from deployments.http.web_ui_routes import web_ui_router
from deployments.jobs.reaper import reap_once
from deployments.jobs.sweeper import sweep_once
from deployments.jobs.webhooks import WebhookSender, load_signing_secret

log = logging.getLogger(__name__)
TEXT = {"type": "string"}


def create_api(services: ApiServices) -> FastAPI:
    hub = EventHub(services.store, EVENT_POLL_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = []
        if services.reap_jobs:
            tasks.append(asyncio.create_task(_reap_forever(services)))
            tasks.append(asyncio.create_task(_sweep_forever(services)))
        sender = None
        if services.settings.webhooks.enabled:
            secret = await run_in_threadpool(load_signing_secret, services.settings.webhooks.signing_secret_file)
            sender = WebhookSender(services.store, services.settings.webhooks, secret, resolve=services.resolve_host)
            tasks.append(asyncio.create_task(_deliver_webhooks_forever(sender)))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if sender is not None:
            await sender.close()
        await hub.close()

    # No trailing-slash redirects: Starlette builds their Location from the Host header a caller sent.
    app = FastAPI(
        title="VividFlow Serve",
        version="1",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    install_error_handlers(app)
    install_access_control(app, services)
    install_openapi(app)

    @app.get(
        "/healthz",
        tags=["service"],
        summary="200 when the app can take work",
        responses={200: {"model": Health}, **error_responses(503)},
    )
    async def healthz() -> dict:
        try:
            await run_in_threadpool(services.store.ping)
        except Exception as exc:
            raise ServiceNotReadyError("the job store cannot be reached") from exc
        try:
            await run_in_threadpool(services.results.probe_writable)
        except OSError as exc:
            raise StorageUnavailableError(
                f"the results folder cannot be written ({exc.strerror or exc}); jobs cannot store inputs or results"
            ) from exc
        return {"status": "ok"}

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics of this process (under Ray: Ray's metrics port, see docs/metrics.md)",
        response_class=Response,
        responses={
            200: {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}
        },
    )
    async def prometheus_metrics() -> Response:
        # Outside Ray; inside a cluster the same names are on Ray's metrics port with Serve's tags.
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.prometheus_registry()), media_type=CONTENT_TYPE_LATEST)

    app.include_router(video_router(services))
    app.include_router(batch_router(services))
    app.include_router(job_router(services, hub))
    app.include_router(template_router())
    app.include_router(prompt_router(services))
    app.include_router(background_router(services))
    app.include_router(edit_router(services))
    app.include_router(analyze_router(_analyzer(services), services.max_upload_bytes, services.max_pixels))
    app.include_router(scene_template_router())
    app.include_router(web_ui_router())
    app.include_router(lora_router(services))
    return app


def _analyzer(services: ApiServices):
    async def analyze(image, prompt):
        if services.analyze_image is None:
            raise ServiceNotReadyError("image analysis is not deployed in this configuration (add `image_analyzer`)")
        return await services.analyze_image(image, prompt)

    return analyze


async def _reap_forever(services: ApiServices) -> None:
    """Re-queue or fail jobs whose worker stopped heartbeating, even when no worker of their kind is left."""
    while True:
        await asyncio.sleep(services.queue.reap_interval_s)
        try:
            await run_in_threadpool(reap_once, services.store, services.queue)
            for kind in services.job_kinds:
                metrics.queue_depth(kind, await run_in_threadpool(services.store.queue_depth, kind))
        except Exception:
            log.warning("reaping stale jobs failed; retrying in %.0f s", services.queue.reap_interval_s)


async def _sweep_forever(services: ApiServices) -> None:
    """Delete jobs past their retention, their files, and files no job owns (see deployments.jobs.sweeper)."""
    while True:
        try:
            await run_in_threadpool(sweep_once, services.store, services.results, services.queue)
        except Exception:
            log.warning("the retention sweep failed; retrying in %.0f s", services.queue.sweep_interval_s)
        await asyncio.sleep(services.queue.sweep_interval_s)


async def _deliver_webhooks_forever(sender: WebhookSender) -> None:
    while True:
        try:
            delivered = await sender.deliver_due()
        except Exception:
            log.warning("webhook delivery failed; retrying in %.0f s", sender.config.poll_interval_s)
            delivered = 0
        if not delivered:
            await asyncio.sleep(sender.config.poll_interval_s)
