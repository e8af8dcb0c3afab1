"""Which queued job a replica should claim when it holds some motion LoRAs (claim affinity, issue #13).

Pure policy, no store: ``claim_next`` of each store hands it the first few candidates in the order it would
claim them anyway (oldest first, or tenant-fair), and claims the one it returns in the same atomic step.
docs/decisions.md ("Motion LoRAs") says why this is affinity in the claim and not Ray Serve multiplexing.

A candidate needs no adapter load when it has no LoRA or one the replica holds. The first such candidate is
preferred over the head of the queue, but the head is never passed over once it has waited ``max_wait_s``:
with one replica and a stream of jobs for the LoRA it holds, a job for another LoRA still starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_LOOKAHEAD = 8  # candidates a claim reads; beyond this the order of the queue wins
DEFAULT_MAX_WAIT_S = 5.0  # a cold LoRA switch costs ~1-2 s at full size: never make the head wait much longer


@dataclass(frozen=True)
class ClaimCandidate:
    job_id: str
    lora: str | None  # the job's params["lora"]
    queued_at: float  # when it (last) entered the queue


def pick_with_affinity(
    candidates: Sequence[ClaimCandidate], held: frozenset[str], now: float, max_wait_s: float = DEFAULT_MAX_WAIT_S
) -> ClaimCandidate | None:
    """The candidate to claim: ``candidates`` are in the store's claim order; None when there are none."""
    if not candidates:
        return None
    head = candidates[0]
    if now - head.queued_at >= max_wait_s:
        return head
    for candidate in candidates:
        if candidate.lora is None or candidate.lora in held:
            return candidate
    return head
