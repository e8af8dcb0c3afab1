"""``/v1/templates/motion``: the motion template library, so clients can offer ids instead of free text."""

from __future__ import annotations

from fastapi import APIRouter

from deployments.http.schemas import MotionTemplates
from pipelines.video.motion_templates import motion_categories


def template_router() -> APIRouter:
    router = APIRouter(tags=["templates"])

    # Plain ``def``: the library is cached after the first call, and FastAPI runs sync routes in its
    # thread pool, so the one-off YAML load never blocks the event loop.
    @router.get("/v1/templates/motion", summary="The motion templates", responses={200: {"model": MotionTemplates}})
    def list_motion_templates() -> dict:
        return {"categories": [category.model_dump(mode="json") for category in motion_categories()]}

    return router
