"""``/v1/templates/scenes``: the curated background scene templates."""

from __future__ import annotations

from fastapi import APIRouter

from deployments.http.schemas import SceneTemplates
from pipelines.background.scene_templates import CATEGORIES, scene_templates


def scene_template_router() -> APIRouter:
    # Built once here so a broken YAML file fails at startup rather than on the first request.
    body = {
        "categories": list(CATEGORIES),
        "templates": [template.model_dump() for template in scene_templates()],
    }
    router = APIRouter(tags=["templates"])

    @router.get("/v1/templates/scenes", summary="The background scenes", responses={200: {"model": SceneTemplates}})
    async def list_scene_templates() -> dict:
        return body

    return router
