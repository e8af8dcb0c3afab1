"""``/v1/loras``: the motion LoRA library, and the check of a video job's `lora` / `lora_strength`.

The ingress reads the same manifest and files as the video replicas (``pipelines.video.lora_library``,
no torch), checks each file's keys and shapes against the experts' checkpoint headers, and lists every
entry with its status. The library is read-only here: a changed manifest or file is noticed on the next
look, and ``POST /v1/loras/reload`` reads it at once (an admin key's route when API keys are on).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from deployments.errors import ForbiddenError, ServiceNotReadyError
from deployments.http.errors import error_responses
from deployments.http.services import ApiServices
from deployments.http.tenancy import CallerParam
from pipelines.common.errors import InvalidInputError
from pipelines.video.config import VideoModelConfig
from pipelines.video.lora_library import (
    DEFAULT_STRENGTH,
    LoraCatalog,
    LoraLibrary,
    check_strength,
    expert_layer_tables,
)


class LoraStrengths(BaseModel):
    high_noise: float = Field(description="Scale in the high-noise expert (`transformer`) at `lora_strength` 1.")
    low_noise: float = Field(description="Scale in the low-noise expert (`transformer_2`) at `lora_strength` 1.")


class LoraInfo(BaseModel):
    id: str = Field(description="What `lora` on `POST /v1/videos` names.")
    name: str
    description: str
    license: str
    trigger_words: list[str] = Field(description="Words the LoRA was trained on; put them in the prompt.")
    experts: list[Literal["high_noise", "low_noise"]] = Field(description="The experts it has weights for.")
    default_strength: LoraStrengths
    status: Literal["ready", "unavailable"]
    reason: str | None = Field(description="Why it is unavailable; null when ready.")


class LoraList(BaseModel):
    loras: list[LoraInfo]
    error: str | None = Field(default=None, description="Set when the manifest itself cannot be read.")


def lora_catalog_for(model: VideoModelConfig | None) -> LoraCatalog | None:
    """The ingress's view of the library configured for the video replicas (None: no library)."""
    if model is None or model.loras is None:
        return None
    return LoraCatalog(model.loras, lambda: expert_layer_tables(model))


def lora_router(services: ApiServices) -> APIRouter:
    router = APIRouter(tags=["loras"])

    @router.get("/v1/loras", summary="The motion LoRA library", responses={200: {"model": LoraList}})
    async def list_loras() -> dict:
        if services.loras is None:
            return {"loras": [], "error": None}
        return _listing(await run_in_threadpool(services.loras.current))

    @router.post(
        "/v1/loras/reload",
        summary="Read the LoRA library again now (after adding a file and a manifest entry)",
        responses={200: {"model": LoraList}, **error_responses(403, 503)},
    )
    async def reload_loras(caller: CallerParam) -> dict:
        if services.settings.auth.mode != "off" and caller.role != "admin":
            raise ForbiddenError("reloading the LoRA library needs an admin key")
        if services.loras is None:
            raise ServiceNotReadyError("no LoRA library is configured (video_generator.model.loras)")
        return _listing(await run_in_threadpool(services.loras.reload))

    return router


async def lora_params(services: ApiServices, lora: str | None, strength: float | None) -> dict:
    """The job params for `lora` / `lora_strength` (both recorded, plus the per-expert scales they resolve to);
    a 400 naming the field for an unknown or unavailable LoRA or a strength out of range."""
    if lora is None:
        if strength is not None:
            raise InvalidInputError("lora_strength needs `lora` (a LoRA id from GET /v1/loras)", field="lora_strength")
        return {"lora": None, "lora_strength": None}
    strength = check_strength(DEFAULT_STRENGTH if strength is None else strength)
    if services.loras is None:
        raise InvalidInputError("this service has no LoRA library; send no `lora`", field="lora")
    library = await run_in_threadpool(services.loras.current)
    scales = library.resolve(lora, strength)
    return {"lora": lora, "lora_strength": strength, "lora_scales": scales}


def _listing(library: LoraLibrary) -> dict:
    return {"loras": [entry.public() for entry in library.entries.values()], "error": library.error}
