"""``/v1/prompts/expand``: optional Qwen prompt expansion with a visible fallback."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from deployments.http.errors import error_responses
from deployments.http.schemas import Expansion
from deployments.http.services import ApiServices
from deployments.prompt_expander import expand_or_fallback
from pipelines.common.text import MAX_PROMPT_CHARS
from pipelines.prompts.expansion import validate_prompt


class ExpandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="The prompt to expand.")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Same prompt and seed, same expansion.")


async def expand_for_request(services: ApiServices, prompt: str, seed: int) -> dict:
    prompt = validate_prompt(prompt)
    return await expand_or_fallback(services.expand_prompt, prompt, seed, services.settings.prompt_expansion_timeout_s)


def prompt_router(services: ApiServices) -> APIRouter:
    router = APIRouter(tags=["prompts"])

    @router.post(
        "/v1/prompts/expand",
        summary="Expand a short prompt into a richer one (or keep it, saying why)",
        responses={200: {"model": Expansion}, **error_responses(400)},
    )
    async def expand(body: ExpandRequest) -> dict:
        return await expand_for_request(services, body.prompt, body.seed)

    return router
