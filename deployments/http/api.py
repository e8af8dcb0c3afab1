"""The FastAPI application of the ingress, assembled from per-feature routers."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from deployments.errors import ServiceNotReadyError
from deployments.http.analyze_routes import analyze_router
from deployments.http.errors import install_error_handlers
from deployments.http.job_routes import job_router
from deployments.http.prompt_routes import prompt_router
from deployments.http.scene_routes import scene_template_router
from deployments.http.services import ApiServices
from deployments.http.template_routes import template_router
from deployments.http.video_routes import video_router


def create_api(services: ApiServices) -> FastAPI:
    app = FastAPI(title="VividFlow Serve", version="1", docs_url="/docs", redoc_url=None)
    install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict:
        try:
            await run_in_threadpool(services.store.ping)
        except Exception as exc:
            raise ServiceNotReadyError("the job store cannot be reached") from exc
        return {"status": "ok"}

    app.include_router(video_router(services))
    app.include_router(job_router(services))
    app.include_router(template_router())
    app.include_router(prompt_router(services))
    app.include_router(analyze_router(_analyzer(services), services.max_upload_bytes, services.max_pixels))
    app.include_router(scene_template_router())
    return app


def _analyzer(services: ApiServices):
    async def analyze(image, prompt):
        if services.analyze_image is None:
            raise ServiceNotReadyError("image analysis is not deployed in this configuration (add `image_analyzer`)")
        return await services.analyze_image(image, prompt)

    return analyze
