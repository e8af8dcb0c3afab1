"""API keys (DESIGN §7): who is calling, checked once per request before any route runs.

Keys live in a YAML file as SHA-256 hashes (``{tenant, key_sha256, role}``), never in plain text, so the file
itself (a Kubernetes Secret) does not leak usable keys either. It is re-read when it changes, so a key is
added or revoked without a restart. The key a request carried is hashed and forgotten: it reaches no log, no
job record and no metric label. The caller found is put on the request for the routes
(``deployments.http.tenancy``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import threading
import time
from pathlib import Path

import yaml

from deployments.config import AuthConfig
from deployments.errors import AuthenticationError, ForbiddenError, ServiceOverloadedError
from deployments.http.errors import error_response
from deployments.http.tenancy import Caller
from deployments.jobs.store import JobStore

log = logging.getLogger(__name__)
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_HASH = re.compile(r"^[0-9a-f]{64}$")
RELOAD_CHECK_S = 2.0  # how often the keys file's modification time is looked at

# Open in every mode: the health check, and the web UI's own files (it asks for a key itself).
OPEN_PATHS = frozenset({"/healthz", "/"})
OPEN_PREFIXES = ("/ui/",)
DOCS_PATHS = frozenset({"/docs", "/openapi.json", "/docs/oauth2-redirect"})


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(text: str, source: str = "the keys file") -> dict[str, Caller]:
    """The callers of a keys file by key hash; raises ValueError naming the entry that is wrong."""
    entries = yaml.safe_load(text) or []
    if not isinstance(entries, list):
        raise ValueError(f"{source} must be a YAML list of {{tenant, key_sha256, role}}")
    callers: dict[str, Caller] = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or set(entry) - {"tenant", "key_sha256", "role", "note"}:
            raise ValueError(f"{source}, entry {number}: expected the keys tenant, key_sha256, role (and note)")
        tenant, digest, role = str(entry.get("tenant", "")), str(entry.get("key_sha256", "")), entry.get("role", "user")
        if not TENANT_ID.match(tenant):
            raise ValueError(f"{source}, entry {number}: tenant must match {TENANT_ID.pattern}")
        if not KEY_HASH.match(digest):
            raise ValueError(f"{source}, entry {number}: key_sha256 must be 64 lowercase hex characters")
        if role not in ("user", "admin"):
            raise ValueError(f"{source}, entry {number}: role must be user or admin")
        if digest in callers:
            raise ValueError(f"{source}, entry {number}: the same key is listed twice")
        callers[digest] = Caller(tenant, role)
    return callers


class KeyRing:
    """The keys file, re-read when its modification time changes. A broken edit keeps the last good keys."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._callers: dict[str, Caller] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp and not force:
            return
        try:
            callers = parse_keys(self.path.read_text(), str(self.path))
        except (ValueError, yaml.YAMLError) as exc:
            if force:
                raise
            log.error("the keys file %s is invalid; keeping the previous keys: %s", self.path, exc)
            return
        self._callers, self._stamp = callers, stamp
        log.info("loaded %d API key(s) from %s", len(callers), self.path)

    def lookup(self, key: str) -> Caller | None:
        now = time.monotonic()
        if now - self._checked > RELOAD_CHECK_S:
            with self._lock:
                if now - self._checked > RELOAD_CHECK_S:
                    self._checked = now
                    try:
                        self._reload()
                    except OSError as exc:
                        log.error("the keys file %s cannot be read; keeping the previous keys: %s", self.path, exc)
        digest = key_sha256(key)
        for known, caller in self._callers.items():
            if hmac.compare_digest(known, digest):  # constant time: no timing hints about stored hashes
                return caller
        return None


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError("the Authorization header must be `Bearer <key>`", field="Authorization")
    return value.strip()


class AuthMiddleware:
    """Pure ASGI (streams stay unbuffered): 401 without a known key, 403 for a user on an admin-only path,
    429 once a tenant's request rate passes its token bucket (one bucket per tenant, in the job store, so
    every ingress replica draws on the same one)."""

    def __init__(self, app, config: AuthConfig, keys: KeyRing, store: JobStore, limits_for) -> None:
        self.app, self.config, self.keys = app, config, keys
        self.store, self.limits_for = store, limits_for

    def _needs(self, path: str) -> str | None:
        """None (open), "user" or "admin" for a request path."""
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        if path in DOCS_PATHS:
            return None if self.config.docs == "public" else "admin"
        if path == "/metrics":
            return None if self.config.metrics == "public" else "admin"
        return "user"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        needs = self._needs(scope["path"])
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            caller = self._caller(headers.get("authorization"), needs)
            if caller is not None and needs is not None:
                await self._within_rate(caller)
        except (AuthenticationError, ForbiddenError, ServiceOverloadedError) as exc:
            return await error_response(exc)(scope, receive, send)
        if caller is not None:
            scope.setdefault("state", {})["caller"] = caller
        return await self.app(scope, receive, send)

    async def _within_rate(self, caller: Caller) -> None:
        limits = self.limits_for(caller.tenant)
        try:
            wait = await asyncio.to_thread(
                self.store.take_token, f"tenant:{caller.tenant}", limits.requests_per_s, limits.burst
            )
        except Exception:  # the store is down: the route answers 503 itself; the limit must not turn it into 500
            log.warning("rate limit unavailable (job store unreachable); letting the request through")
            return
        if wait > 0:
            raise ServiceOverloadedError(
                f"too many requests: your tenant may make {limits.requests_per_s:g} per second "
                f"(bursts of {limits.burst}); try again in {math.ceil(wait)} s",
                retry_after_s=max(1, math.ceil(wait)),
            )

    def _caller(self, authorization: str | None, needs: str | None) -> Caller | None:
        key = bearer_key(authorization) if (needs or authorization) else None
        if key is None:
            if needs is None:
                return None
            raise AuthenticationError("this API needs a key: send `Authorization: Bearer <key>`")
        caller = self.keys.lookup(key)
        if caller is None:
            if needs is None:
                return None  # a wrong key on an open path changes nothing
            raise AuthenticationError(
                "the API key is not valid (revoked, mistyped or from another service)", field="Authorization"
            )
        if needs == "admin" and caller.role != "admin":
            raise ForbiddenError("this route is for admin keys only")
        return caller
