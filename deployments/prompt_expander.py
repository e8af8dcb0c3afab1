"""``PromptExpanderDeployment``: the Ray Serve shim around the resident prompt expander, and the
ingress-side fallback that keeps prompt expansion optional.

A plain class (Ray is applied in ``deployments.builder``) so tests can drive it directly. Expansion is
a nice-to-have: a slow, failing or missing expander must never fail a video request, so the ingress
calls it through :func:`expand_or_fallback`, which always answers with a usable prompt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pipelines.common.errors import InvalidInputError

if TYPE_CHECKING:  # the real import happens in the replica only (it brings torch and transformers)
    from pipelines.prompts.expansion import ExpanderConfig, PromptExpander

log = logging.getLogger(__name__)


class PromptExpanderDeployment:
    def __init__(
        self,
        config: ExpanderConfig,
        *,
        expander: PromptExpander | None = None,
        gpu_memory_fraction: float | None = None,
    ) -> None:
        self.config = config
        if expander is None:
            from pipelines.common.devices import cap_process_gpu_memory
            from pipelines.prompts.expansion import PromptExpander
            from pipelines.tiny.provision import provision_tiny_models

            cap_process_gpu_memory(gpu_memory_fraction)  # DeploymentOptions.cuda_memory_fraction, from the builder
            started = time.perf_counter()
            provision_tiny_models(config)
            expander = PromptExpander.from_config(config)
            log.info("prompt expander ready in %.1f s", time.perf_counter() - started)
        self.expander = expander

    async def expand(self, prompt: str, seed: int = 0) -> dict:
        """Expand one prompt; generation runs in a worker thread so health checks keep answering."""
        result = await asyncio.to_thread(self.expander.expand, prompt, seed)
        return result.to_dict()

    def check_health(self) -> None:
        # The model is loaded in the constructor and has no external dependency: a live replica is healthy.
        return None


def _kept(prompt: str, reason: str, started: float) -> dict:
    return {
        "prompt": prompt,
        "original": prompt,
        "expanded": False,
        "reason": reason,
        "seconds": round(time.perf_counter() - started, 4),
    }


async def expand_or_fallback(
    call: Callable[[str, int], Awaitable[dict]] | None, prompt: str, seed: int, timeout_s: float
) -> dict:
    """Ask the expander, waiting at most ``timeout_s``; otherwise answer with the original prompt.

    ``reason`` says why the original was kept: ``disabled`` (no expander deployed), ``timeout``,
    ``unavailable`` (the call failed: replica down, overloaded, crashed), or the expander's own check
    result. An invalid prompt is the caller's mistake, not an outage, so that error is raised as is.
    """
    started = time.perf_counter()
    if call is None:
        return _kept(prompt, "disabled", started)
    try:
        return await asyncio.wait_for(call(prompt, seed), timeout=timeout_s)
    except TimeoutError:  # asyncio.TimeoutError is this class since Python 3.11
        log.warning("prompt expansion timed out after %.1f s; keeping the original prompt", timeout_s)
        return _kept(prompt, "timeout", started)
    except InvalidInputError:
        raise
    except Exception as exc:
        # str(exc) of a Ray error carries a remote traceback: log the class, keep the details at debug.
        log.warning("prompt expansion unavailable (%s); keeping the original prompt", type(exc).__name__)
        log.debug("prompt expansion failure", exc_info=True)
        return _kept(prompt, "unavailable", started)
