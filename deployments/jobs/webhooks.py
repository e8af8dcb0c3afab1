"""Delivering a job's final state to its ``webhook_url``: signed, retried with backoff, at least once.

The job store is the outbox: a job created with a webhook stays on the store's delivery list until its final
state was delivered (a 2xx answer) or given up on (``retry_for_s`` after the job ended, or a target that is no
longer allowed). Any ingress replica may deliver; the store leases each delivery to one of them at a time.
Every attempt for a job carries the same ``webhook-id`` and the same body, so a receiver that saw an attempt
whose answer got lost can drop the repeat.

Signatures follow the Standard Webhooks scheme (HMAC-SHA256 over ``id.timestamp.body``, ``v1,<base64>``),
made with its reference library, so receivers can verify with any of its implementations.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from deployments.config import WebhookConfig
from deployments.jobs.store import Job, JobStore, iso_utc
from deployments.jobs.webhook_targets import WebhookTargetError, check_webhook_url

log = logging.getLogger(__name__)
SECRET_PREFIX = "whsec_"
USER_AGENT = "VividFlow-Serve-Webhooks/1"


def load_signing_secret(path: str | Path) -> str:
    """The secret in ``path``; a new random one is written there (mode 0600) when the file does not exist."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
        try:  # O_EXCL: two replicas starting together end up with the same secret, the first one's
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(handle, "w") as file:
                file.write(secret + "\n")
            log.info("wrote a new webhook signing secret to %s", path)
    secret = path.read_text().strip()
    try:
        if (
            not secret.startswith(SECRET_PREFIX)
            or len(base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)) < 16
        ):
            raise ValueError
    except ValueError:
        raise ValueError(f"{path} must hold `{SECRET_PREFIX}` followed by at least 16 bytes in base64") from None
    return secret


def message_id(job: Job) -> str:
    # A job has exactly one final state, so one id per job is stable across retries and replicas.
    return f"msg_{job.id}"


def payload(job: Job) -> str:
    """The body: the job object without its (changing) delivery state, so every attempt sends the same bytes."""
    body = job.public()
    body.pop("webhook", None)
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def signed_headers(secret: str, msg_id: str, body: str, timestamp: float) -> dict[str, str]:
    moment = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class WebhookSender:
    def __init__(
        self,
        store: JobStore,
        config: WebhookConfig,
        secret: str,
        *,
        client: httpx.AsyncClient | None = None,
        resolve=socket.getaddrinfo,
    ):
        self.resolve = resolve
        self.store = store
        self.config = config
        self.secret = secret
        # Redirects are not followed: a 3xx could point anywhere, past the target check.
        self.client = client or httpx.AsyncClient(follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        await self.client.aclose()

    def next_delay_s(self, attempts: int) -> float:
        return min(self.config.max_backoff_s, self.config.backoff_s * 2 ** max(attempts - 1, 0))

    async def deliver_due(self, now: float | None = None) -> int:
        """Try every delivery that is due; returns how many were attempted."""
        now = time.time() if now is None else now
        lease_s = self.config.timeout_s * 2 + 5
        jobs = await asyncio.to_thread(self.store.take_due_webhooks, now, lease_s)
        for job in jobs:
            await self.deliver(job)
        return len(jobs)

    async def deliver(self, job: Job) -> dict:
        state = dict(job.webhook or {})
        state["id"] = message_id(job)
        url = state["url"]
        status_code, error = None, None
        try:
            await asyncio.to_thread(check_webhook_url, url, self.config.allowed_hosts, resolve=self.resolve)
        except WebhookTargetError as exc:
            return await self._record(job, state, None, f"target refused: {exc.message}", give_up=True)
        body = payload(job)
        headers = signed_headers(self.secret, state["id"], body, time.time())
        try:
            response = await self.client.post(url, content=body, headers=headers, timeout=self.config.timeout_s)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return await self._record(job, state, status_code, error, give_up=False)

    async def _record(self, job: Job, state: dict, status_code: int | None, error: str | None, *, give_up: bool):
        now = time.time()
        state["attempts"] = int(state.get("attempts") or 0) + 1
        state["last_attempt_at"] = iso_utc(now)
        state["last_status_code"] = status_code
        state["last_error"] = error
        due: float | None = None
        if error is None:
            state["status"] = "delivered"
            state["delivered_at"] = iso_utc(now)
        elif give_up or now + self.next_delay_s(state["attempts"]) > (job.finished_at or now) + self.config.retry_for_s:
            state["status"] = "failed"
            log.warning("job %s: webhook delivery given up after %d attempt(s): %s", job.id, state["attempts"], error)
        else:
            state["status"] = "pending"
            due = now + self.next_delay_s(state["attempts"])
        await asyncio.to_thread(self.store.update_webhook, job.id, state, due)
        return state
