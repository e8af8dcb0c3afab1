"""``/v1/prompts/expand``: optional Qwen prompt expansion with a visible fallback."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from deployments.http.services import ApiServices
from deployments.prompt_expander import expand_or_fallback
from pipelines.prompt_expansion import validate_prompt


class ExpandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The prompt to expand (1-2,000 characters).")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Same prompt and seed, same expansion.")


async def expand_for_request(services: ApiServices, prompt: str, seed: int) -> dict:
    prompt = validate_prompt(prompt)
    return await expand_or_fallback(services.expand_prompt, prompt, seed, services.settings.prompt_expansion_timeout_s)


def prompt_router(services: ApiServices) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/prompts/expand")
    async def expand(body: ExpandRequest) -> dict:
        return await expand_for_request(services, body.prompt, body.seed)

    return router
